//! The audit trail end to end on moto (Firehose into S3) and the emulator: records of every
//! answer path arrive with their fields and read back with `quarry audit`; redaction and
//! masking reach them; Object Lock refuses a delete; a Firehose outage spills and the
//! schedule replays it with nothing lost; feedback is per tenant and reaches `quarry
//! feedback report`; and rated requests become a golden set `quarry eval run` runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quarry_testkit::{Stack, json_reply};
use serde_json::{Value, json};
use tower::ServiceExt;

fn quarry(stack: &Stack, command: &str, args: &[&str]) -> (bool, String) {
    let bedrock = stack.emulator.url();
    let mut all = vec!["--bedrock-endpoint", &bedrock];
    all.extend_from_slice(args);
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &[command], &all)
}

fn state(stack: &Stack) -> Arc<chat_handler::AppState> {
    Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options {
            config_max_age: std::time::Duration::ZERO,
            ..chat_handler::Options::default()
        },
    ))
}

async fn post(
    state: &Arc<chat_handler::AppState>,
    key: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let request = http::Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = chat_handler::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, mut body) = json_reply(response).await;
    // The ID the client was given (a stream's body is text: the header carries it).
    let wrapped = json!({"x_request_id": id, "body": body.take()});
    match wrapped["body"].clone() {
        Value::Object(mut map) => {
            map.insert("x_request_id".into(), wrapped["x_request_id"].clone());
            (status, Value::Object(map))
        }
        _ => (status, wrapped),
    }
}

/// Sets a tenant's policy fields with `quarry tenants set`.
fn tenant(stack: &Stack, name: &str, flags: &[&str]) {
    let mut args = vec!["set", name];
    args.extend_from_slice(flags);
    let (ok, out) = stack.cli(env!("CARGO_BIN_EXE_quarry"), &["tenants"], &args);
    assert!(ok, "{out}");
}

/// `quarry audit get ID` as JSON.
fn audit_get(stack: &Stack, id: &str, tenant: &str) -> Value {
    let (ok, out) = quarry(stack, "audit", &["get", id, "--tenant", tenant]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_redacted_masked_and_read_back() {
    let stack = Stack::start().await;
    tenant(&stack, "acme", &["--audit", "full", "--pii", "redact"]);
    tenant(
        &stack,
        "globex",
        &[
            "--audit",
            "metadata",
            "--pii",
            "mask",
            "--pattern",
            "CUSTOMER_ID=\\b[0-9]{10}\\b",
        ],
    );
    let s = state(&stack);
    let question = "Repeat: write to jane.doe@example.com about customer 4821937560";

    // acme, full: whole, streamed and from the cache.
    let mut ids = Vec::new();
    for (stream, temperature) in [(false, 0.0), (true, 0.5), (false, 0.0)] {
        let (status, body) = post(
            &s,
            stack.key("acme"),
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": question}], "stream": stream, "temperature": temperature}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["x_request_id"].as_str().unwrap().to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        let r = audit_get(&stack, id, "acme");
        assert_eq!(r["request_id"], *id);
        assert_eq!(r["tenant"], "acme");
        assert_eq!(r["level"], "full");
        assert_eq!(r["schema_version"], 1);
        assert!(r["model"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
        assert!(r["params"].as_str().unwrap().contains("temperature"), "{r}");
        let input = r["input"].as_str().unwrap();
        assert!(
            input.contains("[EMAIL]") && !input.contains("jane.doe"),
            "{input}"
        );
        assert!(!r["output"].as_str().unwrap().contains("jane.doe"), "{r}");
        assert!(r["guardrails"].as_str().unwrap().contains("email"), "{r}");
        // The hash is of the text before redaction: not of what the record holds.
        assert_eq!(r["input_sha256"].as_str().unwrap().len(), 64);
        assert_ne!(r["input_sha256"], sha256(input));
        assert_eq!(r["cached"], i == 2, "the third was a cache hit: {r}");
        if i < 2 {
            assert!(r["usage"]["input"].as_u64().unwrap() > 0, "{r}");
            assert!(r["cost_usd"].as_str().is_some(), "{r}");
        }
    }

    // globex, metadata: no text, and masked values are in no record.
    let (status, body) = post(
        &s,
        stack.key("globex"),
        "/v1/chat",
        json!({"messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["output"]["text"]
            .as_str()
            .unwrap()
            .contains("4821937560"),
        "{body}"
    );
    let id = body["x_request_id"].as_str().unwrap();
    let r = audit_get(&stack, id, "globex");
    assert_eq!(r["level"], "metadata");
    assert!(r["input"].is_null() && r["output"].is_null(), "{r}");
    assert!(
        r["guardrails"].as_str().unwrap().contains("CUSTOMER_ID"),
        "{r}"
    );

    // globex, full: the record holds the placeholders the model saw, never the values.
    tenant(&stack, "globex", &["--audit", "full"]);
    let (status, body) = post(
        &s,
        stack.key("globex"),
        "/v1/chat",
        json!({"messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let masked = audit_get(&stack, body["x_request_id"].as_str().unwrap(), "globex");
    let input = masked["input"].as_str().unwrap();
    assert!(
        input.contains("[EMAIL_1]") && input.contains("[CUSTOMER_ID_1]"),
        "{input}"
    );
    assert!(
        masked["output"]
            .as_str()
            .unwrap()
            .contains("[CUSTOMER_ID_1]"),
        "{masked}"
    );
    let text = masked.to_string() + &r.to_string();
    for value in ["jane.doe@example.com", "4821937560"] {
        assert!(!text.contains(value), "{value} reached a record: {text}");
    }

    // Export: a tenant's records over days, as JSON lines; another tenant's stay out.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (ok, out) = quarry(
        &stack,
        "audit",
        &[
            "export", "--tenant", "acme", "--from", &today, "--to", &today,
        ],
    );
    assert!(ok, "{out}");
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| l["tenant"] == "acme"));
    assert!(
        !out.contains("jane.doe@example.com"),
        "redacted before it was recorded"
    );

    // A request nobody recorded is an error that says why.
    let (ok, out) = quarry(
        &stack,
        "audit",
        &["get", "no-such-request", "--tenant", "acme"],
    );
    assert!(!ok && out.contains("no audit record"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_refuses_a_delete() {
    let stack = Stack::start().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&stack.sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = &stack.settings.audit_bucket;
    assert!(bucket.contains("audit"));
    let lock = s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rule = lock.object_lock_configuration().unwrap().rule().unwrap();
    assert_eq!(
        rule.default_retention().unwrap().mode(),
        Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
    );
    // An object written to the bucket takes its default retention; deleting its version is
    // refused, to the bucket's owner too.
    let put = s3
        .put_object()
        .bucket(bucket)
        .key("audit/tenant=acme/date=2026-01-01/record.json")
        .body(b"{}\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let refused = s3
        .delete_object()
        .bucket(bucket)
        .key("audit/tenant=acme/date=2026-01-01/record.json")
        .version_id(put.version_id().unwrap())
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firehose_outage_spills_and_the_schedule_replays_it() {
    let stack = Stack::start().await;
    tenant(&stack, "acme", &["--audit", "full"]);
    let s = state(&stack);
    let firehose = aws_sdk_firehose::Client::new(&stack.sdk);
    firehose
        .delete_delivery_stream()
        .delivery_stream_name(&stack.settings.audit_stream)
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = post(
            &s,
            stack.key("acme"),
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": format!("question {i}")}]}),
        )
        .await;
        assert_eq!(
            status, 200,
            "an audit outage does not fail the answer: {body}"
        );
        ids.push(body["x_request_id"].as_str().unwrap().to_owned());
    }
    let (ok, out) = quarry(&stack, "audit", &["get", &ids[0], "--tenant", "acme"]);
    assert!(!ok, "not delivered yet: {out}");

    // The stream is back; the schedule's run replays the spill.
    quarry_admin::provision::provision(&stack.sdk, &stack.settings)
        .await
        .unwrap();
    let alarm = cost_alarm::CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    let summary = alarm
        .handle(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            chrono::Utc::now(),
        )
        .await;
    assert_eq!(summary.audit_replayed, 3, "{summary:?}");
    assert_eq!(summary.audit_waiting, 0, "{summary:?}");
    for id in &ids {
        let r = audit_get(&stack, id, "acme");
        assert_eq!(r["level"], "full");
    }
    // A second run has nothing left to replay: each record arrives once.
    let again = alarm.handle(&json!({}), chrono::Utc::now()).await;
    assert_eq!(again.audit_replayed, 0);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (ok, out) = quarry(
        &stack,
        "audit",
        &[
            "export", "--tenant", "acme", "--from", &today, "--to", &today,
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with('{')).count(),
        3,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_per_tenant_reaches_the_report_and_becomes_a_golden_set() {
    let stack = Stack::start().await;
    tenant(&stack, "acme", &["--audit", "full"]);
    let s = state(&stack);
    let ask = |text: &str| json!({"prompt": "summarize", "version": 1, "variables": {"text": text}, "cache": "bypass"});
    let mut rated = Vec::new();
    for (text, score) in [
        ("The council approved the new budget on Monday.", 5.0),
        ("Revenue grew 12% while costs fell.", -1.0),
    ] {
        let (status, body) = post(&s, stack.key("acme"), "/v1/chat", ask(text)).await;
        assert_eq!(status, 200, "{body}");
        rated.push((body["x_request_id"].as_str().unwrap().to_owned(), score));
    }
    let (id, _) = &rated[0];
    // Another tenant cannot rate acme's request, nor learn that it exists.
    let (status, body) = post(
        &s,
        stack.key("globex"),
        "/v1/feedback",
        json!({"request_id": id, "score": 1}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, unknown) = post(
        &s,
        stack.key("globex"),
        "/v1/feedback",
        json!({"request_id": "no-such-request", "score": 1}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"]["message"]
            .as_str()
            .map(|m| m.replace(id.as_str(), "ID")),
        unknown["error"]["message"]
            .as_str()
            .map(|m| m.replace("no-such-request", "ID"))
    );
    for bad in [
        json!({"request_id": id, "score": 9}),
        json!({"request_id": id, "score": 0, "scale": "1..5"}),
        json!({"request_id": id}),
        json!({"request_id": id, "score": 1, "extra": true}),
    ] {
        let (status, body) = post(&s, stack.key("acme"), "/v1/feedback", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert_eq!(body["error"]["type"], "invalid_request", "{body}");
    }
    for (id, score) in &rated {
        let (status, body) = post(
            &s,
            stack.key("acme"),
            "/v1/feedback",
            json!({"request_id": id, "score": score, "label": "quality", "comment": "mail me at jane.doe@example.com"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["prompt"]["name"], "summarize");
        assert_eq!(body["prompt"]["version"], 1);
    }
    // Rated again: replaced, not counted twice.
    let (status, _) = post(
        &s,
        stack.key("acme"),
        "/v1/feedback",
        json!({"request_id": rated[1].0, "score": -1}),
    )
    .await;
    assert_eq!(status, 201);

    let (ok, out) = quarry(
        &stack,
        "feedback",
        &["report", "--prompt", "summarize", "--json"],
    );
    assert!(ok, "{out}");
    let rows: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let row = &rows[0];
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(row["version"], 1);
    assert_eq!(row["ratings"], 2);
    assert_eq!(row["mean"], 0.0, "stars 5 is +1, thumbs -1 is -1");
    assert_eq!(row["up"], 0.5);

    // The rated requests, with their audit records, become a golden set that runs.
    let dir = std::env::temp_dir().join(format!("quarry-feedback-{}", stack.settings.stage));
    std::fs::create_dir_all(&dir).unwrap();
    let set = dir.join("feedback.jsonl");
    let set = set.to_str().unwrap();
    let (ok, out) = quarry(
        &stack,
        "eval",
        &["import-feedback", "--prompt", "summarize", "--out", set],
    );
    assert!(ok, "{out}");
    assert!(out.contains("2 cases written"), "{out}");
    let cases: Vec<Value> = std::fs::read_to_string(set)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let low = cases
        .iter()
        .find(|c| c["id"].as_str().unwrap().contains(&rated[1].0))
        .unwrap();
    assert_eq!(
        low["variables"]["text"],
        "Revenue grew 12% while costs fell."
    );
    assert_eq!(low["assert"][0]["type"], "not_contains", "{low}");
    assert!(
        low["judge"]["rubric"]
            .as_str()
            .unwrap()
            .starts_with("REVIEW"),
        "{low}"
    );
    let runs = dir.join("runs");
    let (ok, out) = quarry(
        &stack,
        "eval",
        &[
            "run",
            "--prompt",
            "summarize",
            "--versions",
            "1",
            "--set",
            set,
            "--min-pass",
            "0",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let json_end = out.rfind("\n}").map_or(0, |i| i + 2);
    let run: Value =
        serde_json::from_str(&out[..json_end]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(run["grid"][0]["cases"], 2, "{run}");
    assert_eq!(
        run["grid"][0]["errors"], 0,
        "every imported case runs: {run}"
    );
}
