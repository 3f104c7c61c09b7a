//! Retrieval-augmented prompts end to end, against moto and the emulator serving the sample
//! Knowledge Base (`infra/knowledge-bases/QUARRYDOCS`, shared by tenant): passages reach
//! the model, sources and citations come back, the tenant's filter holds whatever the
//! request says, policies are enforced, results are cached per tenant and charged on their
//! own ledger line, grounding flags and blocks, and a failed retrieval fails or degrades as
//! the prompt says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{add_tenant, call, chat, fault, options, serve, sse_events, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

const KB: &str = "QUARRYDOCS";
const TITAN: &str = "amazon.titan-embed-text-v2:0";

/// Pushes prompts (each becomes version 1 of its name).
async fn push(stack: &Stack, specs: Vec<Value>) {
    let specs: Vec<quarry_core::prompts::PromptSpec> = specs
        .into_iter()
        .map(|s| serde_json::from_value(s).unwrap())
        .collect();
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    quarry_admin::infra::push_prompts(&ssm, &stack.settings, &specs)
        .await
        .unwrap();
}

/// A RAG prompt: `extra` is merged over a `knowledge_base` on the sample corpus.
fn rag(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "name": name,
        "template": "{{ question }}",
        "tier": "fast",
        "parameters": {"max_tokens": 300, "temperature": 0},
        "variables": {"question": {"type": "string"}},
        "knowledge_base": {"id": KB, "top_k": 4},
    });
    for (k, v) in extra.as_object().unwrap() {
        if k == "knowledge_base" {
            for (kk, vv) in v.as_object().unwrap() {
                spec["knowledge_base"][kk] = vv.clone();
            }
        } else {
            spec[k] = v.clone();
        }
    }
    spec
}

fn uris(body: &Value) -> Vec<String> {
    body["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["uri"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The last request the emulator received for `operation`.
fn last(stack: &Stack, operation: &str) -> Value {
    stack
        .emulator
        .state()
        .recorded(200)
        .into_iter()
        .rfind(|r| r.operation == operation)
        .map(|r| r.body)
        .unwrap_or(Value::Null)
}

async fn ledger(stack: &Stack, tenant: &str, row: &str) -> quarry_aws::ledger::Totals {
    let month = quarry_aws::ledger::Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    stack
        .ledger()
        .get(&quarry_aws::ledger::month_pk(tenant, &month), row)
        .await
        .unwrap()
}

#[tokio::test]
async fn passages_reach_the_model_sources_come_back_and_retrieval_is_cached_and_charged() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let emu = stack.emulator.state();
    let question = "How much does Acme pay per sensor each month?";
    let body = json!({"prompt": "docs-qa", "variables": {"question": question}});

    let r = chat(&s, stack.key("acme"), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = uris(&r.body);
    assert!(got.iter().any(|u| u.ends_with("/pricing.md")), "{}", r.body);
    // Shared by tenant: acme's own documents only.
    assert!(
        got.iter()
            .all(|u| u.ends_with("/pricing.md") || u.ends_with("/security.md")),
        "{got:?}"
    );
    let first = &r.body["sources"][0];
    assert_eq!(first["id"], 1);
    assert!(first["score"].as_f64().unwrap() > 0.0);
    assert_eq!(first["location"]["type"], "S3");
    assert!(first["excerpt"].as_str().unwrap().len() > 20);
    assert_eq!(r.body["retrieval"]["knowledge_base_id"], KB);
    assert_eq!(r.body["retrieval"]["cached"], false);
    assert_eq!(r.body["retrieval"]["context"], "inline");
    // docs-qa flags: scores are reported, the answer is returned.
    assert!(r.body["grounding"]["score"].is_number(), "{}", r.body);
    assert_eq!(r.body["grounding"]["action"], "flag");

    // The passages reached the model, delimited and numbered, before the question.
    let converse = last(&stack, "Converse").to_string();
    assert!(converse.contains("<sources>"), "{converse}");
    assert!(converse.contains("twelve dollars per sensor"), "{converse}");
    assert!(
        !converse.contains("Globex keeps raw sensor readings"),
        "{converse}"
    );
    // The Retrieve call carried the tenant's clause.
    let retrieve = last(&stack, "Retrieve");
    assert_eq!(
        retrieve["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"],
        json!({"equals": {"key": "tenant", "value": "acme"}})
    );
    assert_eq!(
        retrieve["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"],
        4
    );
    assert_eq!(retrieve["retrievalQuery"]["text"], question);

    // The ledger line: the query's embedding at the Knowledge Base's model's price.
    let embedding = ledger(&stack, "acme", &format!("MODEL#{TITAN}")).await;
    assert_eq!(embedding.requests, 1);
    assert!(embedding.input_tokens > 0);
    assert!(embedding.cost_micro > 0);
    assert_eq!(embedding.estimated_requests, 1);

    // Again, with another answer cached or not: the retrieval comes from the cache (no
    // Retrieve call, no second charge).
    let calls = emu.calls(Some("Retrieve"), Some(KB));
    let again = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "docs-qa", "variables": {"question": question}, "cache": "bypass"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["retrieval"]["cached"], true, "{}", again.body);
    assert_eq!(uris(&again.body), got);
    assert_eq!(emu.calls(Some("Retrieve"), Some(KB)), calls);
    assert_eq!(
        ledger(&stack, "acme", &format!("MODEL#{TITAN}"))
            .await
            .requests,
        1
    );

    // The cache is the tenant's: globex, same question, retrieves for itself.
    let other = chat(&s, stack.key("globex"), body).await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body["retrieval"]["cached"], false);
    assert_eq!(emu.calls(Some("Retrieve"), Some(KB)), calls + 1);
    assert!(
        uris(&other.body)
            .iter()
            .all(|u| u.ends_with("/retention.md")),
        "{}",
        other.body
    );
}

#[tokio::test]
async fn the_tenant_filter_holds_whatever_the_request_says_and_policies_are_enforced() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    // A prompt whose filter takes a variable: the caller chooses the category, never the
    // tenant.
    push(
        &stack,
        vec![rag(
            "kb-by-category",
            json!({
                "variables": {"question": {"type": "string"}, "category": {"type": "string"}},
                "knowledge_base": {"filter": {"equals": {"key": "category", "value": "{{ category }}"}}, "top_k": 10},
            }),
        )],
    )
    .await;
    for category in [
        "operations",
        "operations\"}}, {\"equals\": {\"key\": \"tenant\", \"value\": \"globex\"}}",
        "{{ tenant }}",
    ] {
        let r = chat(
            &s,
            stack.key("acme"),
            json!({"prompt": "kb-by-category", "variables": {"question": "how long are deleted series restorable from snapshots", "category": category}}),
        )
        .await;
        assert_eq!(r.status, 200, "{category}: {}", r.body);
        assert!(
            !uris(&r.body).iter().any(|u| u.ends_with("/retention.md")),
            "{category}: {}",
            r.body
        );
        let filter = &last(&stack, "Retrieve")["retrievalConfiguration"]["vectorSearchConfiguration"]
            ["filter"];
        assert_eq!(
            filter["andAll"][1],
            json!({"equals": {"key": "tenant", "value": "acme"}}),
            "{filter}"
        );
        assert_eq!(filter["andAll"][0]["equals"]["value"], category);
    }
    // The same question as globex finds globex's document.
    let r = chat(
        &s,
        stack.key("globex"),
        json!({"prompt": "kb-by-category", "variables": {"question": "how long are deleted series restorable from snapshots", "category": "operations"}}),
    )
    .await;
    assert!(uris(&r.body)[0].ends_with("/retention.md"), "{}", r.body);

    // A tenant whose policy does not list the Knowledge Base: 403, before any retrieval.
    let calls = stack.emulator.state().calls(Some("Retrieve"), Some(KB));
    let models = stack.emulator.state().calls(Some("Converse"), None);
    let key = add_tenant(&stack, "initech", json!({"allowed_tiers": ["*"]})).await;
    let r = chat(
        &s,
        &key,
        json!({"prompt": "docs-qa", "variables": {"question": "prices?"}}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "forbidden");
    assert!(r.body["error"]["message"].as_str().unwrap().contains(KB));
    assert_eq!(
        stack.emulator.state().calls(Some("Retrieve"), Some(KB)),
        calls
    );
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), models);
}

#[tokio::test]
async fn grounding_blocks_and_flags_and_cited_sources_link_to_citations() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    push(
        &stack,
        vec![
            rag(
                "kb-strict",
                json!({"grounding": {"threshold": 0.9, "action": "block"}}),
            ),
            rag(
                "kb-flag",
                json!({"grounding": {"threshold": 0.9, "relevance_threshold": 0.1, "action": "flag"}}),
            ),
            // Every model of the chain cites documents: passages go as documents.
            rag(
                "kb-cited",
                json!({"tier": null, "model": "us.anthropic.claude-sonnet-4-20250514-v1:0",
                       "grounding": {"threshold": 0.15, "action": "flag"}}),
            ),
        ],
    )
    .await;
    let q = json!({"question": "What discount does Acme get on Fleet sites?"});

    // The emulator's answer without citations is filler: not grounded.
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "kb-strict", "variables": q}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "ungrounded_answer");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("threshold 0.90")
    );
    let check = last(&stack, "ApplyGuardrail");
    assert_eq!(check["source"], "OUTPUT");
    let qualifiers: Vec<&str> = check["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"]["qualifiers"][0].as_str().unwrap())
        .collect();
    assert_eq!(qualifiers, ["grounding_source", "query", "guard_content"]);
    // The blocked answer was still charged (the model was called).
    assert_eq!(
        ledger(&stack, "acme", "TOTAL").await.requests,
        2,
        "model call and retrieval"
    );

    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "kb-flag", "variables": q}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let g = r.body["grounding"].clone();
    assert_eq!(g["passed"], false, "{g}");
    assert_eq!(g["threshold"], 0.9);
    assert!(g["score"].as_f64().unwrap() < 0.9);
    assert!(g["relevance_score"].is_number());

    // Documents with citations: the emulator quotes them, and each citation names its
    // source.
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "kb-cited", "variables": q}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["retrieval"]["context"], "documents");
    // The verdict is reported (the emulator's text beside its citations is filler, so it
    // says nothing of grounding here: the block and flag cases above do).
    assert!(r.body["grounding"]["score"].is_number(), "{}", r.body);
    let citations = r.body["output"]["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{}", r.body);
    let ids: Vec<u64> = r.body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    for c in citations {
        assert!(ids.contains(&c["source"].as_u64().unwrap()), "{c}");
    }
    let converse = last(&stack, "Converse");
    let docs: Vec<&Value> = converse["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b.get("document").is_some())
        .collect();
    assert_eq!(docs.len(), ids.len());
    assert_eq!(docs[0]["document"]["name"], "Source 1");
    assert_eq!(docs[0]["document"]["citations"]["enabled"], true);
}

#[tokio::test]
async fn an_ungrounded_stream_is_refused_before_any_text_leaves() {
    let stack = Stack::start().await;
    let url = serve(state(&stack, options())).await;
    push(
        &stack,
        vec![rag(
            "kb-strict",
            json!({"grounding": {"threshold": 0.9, "action": "block"}}),
        )],
    )
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{url}/v1/chat"))
        .bearer_auth(stack.key("acme"))
        .json(&json!({"prompt": "kb-strict", "variables": {"question": "What discount does Acme get?"}, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert!(!names.contains(&"delta"), "{names:?}");
    let (_, _, error) = events.iter().find(|(_, e, _)| e == "error").unwrap();
    assert!(error.contains("ungrounded_answer"), "{error}");
    // The start event carried the sources.
    let (_, _, start) = events.iter().find(|(_, e, _)| e == "start").unwrap();
    let start: Value = serde_json::from_str(start).unwrap();
    assert!(!uris(&start).is_empty(), "{start}");

    // A passing stream (docs-qa flags) ends with its verdict.
    let response = client
        .post(format!("{url}/v1/chat"))
        .bearer_auth(stack.key("acme"))
        .json(&json!({"prompt": "docs-qa", "variables": {"question": "What discount does Acme get?"}, "stream": true}))
        .send()
        .await
        .unwrap();
    let events = sse_events(response).await;
    let (_, _, done) = events.iter().find(|(_, e, _)| e == "done").unwrap();
    let done: Value = serde_json::from_str(done).unwrap();
    assert!(done["grounding"]["score"].is_number(), "{done}");
    assert!(!uris(&done).is_empty(), "{done}");
}

#[tokio::test]
async fn a_failed_retrieval_fails_or_degrades_as_the_prompt_says() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    push(
        &stack,
        vec![rag(
            "kb-degraded",
            json!({"knowledge_base": {"on_failure": "degraded"}, "grounding": {"threshold": 0.9, "action": "block"}}),
        )],
    )
    .await;
    fault(&stack, KB, |f| {
        f.outage = Some(bedrock_emulator::ErrorKind::ServiceUnavailableException)
    });
    let converse = stack.emulator.state().calls(Some("Converse"), None);

    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "docs-qa", "variables": {"question": "What does Acme pay?"}}),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Knowledge Bases"),
        "{}",
        r.body
    );
    assert_eq!(
        stack.emulator.state().calls(Some("Converse"), None),
        converse
    );

    // Degraded: answered without context, marked, not checked for grounding.
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "kb-degraded", "variables": {"question": "What does Acme pay?"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["retrieval"]["degraded"].is_string(), "{}", r.body);
    assert!(r.body.get("sources").is_none(), "{}", r.body);
    assert!(r.body.get("grounding").is_none(), "{}", r.body);
    assert!(!last(&stack, "Converse").to_string().contains("<sources>"));
    // Nothing was retrieved, so nothing was charged for retrieval.
    assert_eq!(
        ledger(&stack, "acme", &format!("MODEL#{TITAN}"))
            .await
            .requests,
        0
    );
}

#[tokio::test]
async fn openai_clients_get_sources_in_the_extension() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let r = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(stack.key("acme")),
        Some(json!({"model": "fast", "messages": [], "prompt": "docs-qa", "variables": {"question": "What does Acme pay per sensor?"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        uris(&r.body).iter().any(|u| u.ends_with("/pricing.md")),
        "{}",
        r.body
    );
    assert_eq!(r.body["quarry"]["sources"], r.body["sources"]);
    assert_eq!(r.body["quarry"]["retrieval"]["knowledge_base_id"], KB);
    assert!(r.body["quarry"]["grounding"]["score"].is_number());
    // Variables without a prompt are refused by name.
    let r = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(stack.key("acme")),
        Some(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "variables": {"q": 1}})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn the_cache_lookup_function_answers_rag_prompts_from_its_caches_only() {
    use tower::ServiceExt;
    let stack = Stack::start().await;
    let s = state(&stack, options());
    // The cache function's own settings: no grounding guardrail (it never checks answers).
    let mut settings = stack.settings.clone();
    settings.grounding_guardrail = None;
    let lookup = std::sync::Arc::new(cache_lookup::CacheState::from_sdk(
        &stack.sdk,
        &settings,
        cache_lookup::CacheOptions::from_lookup(|_| None).unwrap(),
    ));
    // Temperature 0, and a grounding check every answer passes: answers are cached (one
    // that fails its check never is).
    push(
        &stack,
        vec![rag(
            "kb-cached",
            json!({"grounding": {"threshold": 0.0, "action": "flag"}}),
        )],
    )
    .await;
    let body =
        json!({"prompt": "kb-cached", "variables": {"question": "What does Acme pay per sensor?"}});
    let ask = |body: Value| {
        let lookup = lookup.clone();
        let key = stack.key("acme").to_owned();
        async move {
            let request = http::Request::post("/v1/cache/lookup")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = cache_lookup::app(lookup).oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let retrieves = stack.emulator.state().calls(Some("Retrieve"), Some(KB));
    // Nothing retrieved yet: a miss, and no Knowledge Base call from this function.
    let (status, reply) = ask(body.clone()).await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(
        stack.emulator.state().calls(Some("Retrieve"), Some(KB)),
        retrieves
    );

    let answered = chat(&s, stack.key("acme"), body.clone()).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    let (status, reply) = ask(body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["cached"], true);
    assert_eq!(reply["output"]["text"], answered.body["output"]["text"]);
    assert_eq!(reply["sources"], answered.body["sources"]);
    assert_eq!(reply["grounding"], answered.body["grounding"]);
    assert_eq!(
        stack.emulator.state().calls(Some("Retrieve"), Some(KB)),
        retrieves + 1
    );
}

#[tokio::test]
async fn sources_are_masked_like_the_answer_where_guardrails_mask_pii() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let question = json!({"prompt": "docs-qa", "variables": {"question": "Where do I report a security breach or incident?"}});
    // Unmasked first: the passage carries the address (the test would prove nothing else).
    let r = chat(&s, stack.key("acme"), question.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["sources"]
            .to_string()
            .contains("security-desk@acme.example"),
        "{}",
        r.body
    );

    common::edit_directory(&stack, |dir| {
        let acme = dir.tenants.get_mut("acme").unwrap();
        acme.guardrails = Some(serde_json::from_value(json!({"pii": "redact"})).unwrap());
    })
    .await;
    let r = chat(&s, stack.key("acme"), question).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sources = r.body["sources"].to_string();
    assert!(!sources.contains("security-desk@acme.example"), "{sources}");
    assert!(r.body["sources"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        !r.body.to_string().contains("security-desk@acme.example"),
        "{}",
        r.body
    );
}
