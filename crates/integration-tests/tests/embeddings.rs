//! Embeddings end to end, against moto and the emulator: OpenAI's shape and the native one,
//! the per-tenant cache (a partly cached batch calls the model for the new texts only),
//! batches split to the model's limit, the ledger equal to the usage reported, guardrails on
//! the input, and chat refusing embedding models.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{add_tenant, call, options, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE: &str = "cohere.embed-english-v3";

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
        .sum();
    let norm = |v: &Vec<Value>| {
        v.iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt()
    };
    dot / (norm(a) * norm(b))
}

async fn ledger_tokens(stack: &Stack, tenant: &str) -> (u64, u64) {
    let month = quarry_aws::ledger::Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let total = stack
        .ledger()
        .get(&quarry_aws::ledger::month_pk(tenant, &month), "TOTAL")
        .await
        .unwrap();
    (total.input_tokens, total.requests)
}

#[tokio::test]
async fn embeddings_are_cached_per_tenant_charged_and_governed() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme").to_owned();
    let emu = stack.emulator.state();

    // OpenAI's shape, Titan through the default tier: one call per text.
    let r = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(&key),
        Some(json!({"model": "embed", "input": ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew"], "encoding_format": "float", "dimensions": 256})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 256);
    assert!(
        cosine(&data[0]["embedding"], &data[1]["embedding"])
            > cosine(&data[0]["embedding"], &data[2]["embedding"])
    );
    let first_tokens = r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(first_tokens > 0);
    assert_eq!(emu.calls(Some("InvokeModel"), Some(TITAN)), 3);

    // A batch with two cached texts and one new: one call, for the new text.
    let r = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(&key),
        Some(json!({"model": "embed", "input": ["the cat sat on the mat", "a brand new sentence", "quarterly revenue grew"], "dimensions": 256, "encoding_format": "base64"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quarry"]["cached_texts"], 2, "{}", r.body);
    assert_eq!(emu.calls(Some("InvokeModel"), Some(TITAN)), 4);
    let second_tokens = r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    // Base64 (what the openai client asks for): little-endian f32.
    assert!(r.body["data"][0]["embedding"].is_string());

    // Another tenant shares nothing.
    let other = stack.key("globex").to_owned();
    let r = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(&other),
        Some(json!({"model": "embed", "input": "the cat sat on the mat", "dimensions": 256})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quarry"]["cached_texts"], 0);

    // The ledger holds what was reported, call by call.
    let (tokens, requests) = ledger_tokens(&stack, "acme").await;
    assert_eq!(tokens, first_tokens + second_tokens);
    assert_eq!(requests, 4, "one record per model call");

    // Native, Cohere: one call for a batch, input type passed through.
    let texts: Vec<String> = (0..5).map(|i| format!("document number {i}")).collect();
    let r = call(
        &s,
        "POST",
        "/v1/embed",
        Some(&key),
        Some(json!({"model": COHERE, "texts": texts, "input_type": "search_query"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["embeddings"].as_array().unwrap().len(), 5);
    assert_eq!(r.body["model_calls"], 1);
    // Cohere's bodies carry no token count: Bedrock's header does, and it is charged.
    assert!(
        r.body["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{}",
        r.body
    );
    assert_eq!(emu.calls(Some("InvokeModel"), Some(COHERE)), 1);
    let sent = &emu.recorded(1)[0].body;
    assert_eq!(sent["input_type"], "search_query", "{sent}");
    assert!(r.body["cost_usd"].as_str().is_some());

    // Bad input gets a 400 naming the field; chat refuses embedding models.
    for (body, field) in [
        (json!({"model": "embed", "input": []}), "input"),
        (json!({"model": "embed", "input": [""]}), "input[0]"),
        (json!({"model": "embed", "input": [1, 2, 3]}), "input"),
        (
            json!({"model": "embed", "input": "x", "dimensions": 7}),
            "model",
        ),
        (json!({"model": "fast", "input": "x"}), "model"),
        (
            json!({"model": "embed", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ] {
        let r = call(&s, "POST", "/v1/embeddings", Some(&key), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["param"], field, "{body}: {}", r.body);
    }
    let r = call(
        &s,
        "POST",
        "/v1/chat",
        Some(&key),
        Some(json!({"model": TITAN, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("/v1/embeddings"), "{}", r.body);

    // Guardrails read the input: a blocked kind is a 400 before any call.
    let strict = add_tenant(
        &stack,
        "strict-embed",
        json!({"guardrails": {"pii": "block", "pii_kinds": ["us_ssn"]}}),
    )
    .await;
    let calls = emu.calls(Some("InvokeModel"), None);
    let r = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(&strict),
        Some(json!({"model": "embed", "input": "my ssn is 123-45-6789"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "guardrail_blocked");
    assert_eq!(emu.calls(Some("InvokeModel"), None), calls);
}
