//! What the logs say about a request: one line with hashes, never content or redacted PII.
//! Alone in their test binary: a log capture is a thread's default subscriber, and tracing
//! caches per-callsite interest process-wide, so another test's thread meeting a callsite while
//! a capture is being installed can leave that callsite disabled for the capture.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{add_tenant, capture_logs, chat, options, state};
use quarry_testkit::Stack;
use serde_json::json;

const PII: &str = "Mail jane.roe@example.org or call 415-555-0132; card 4111 1111 1111 1111.";

#[tokio::test]
async fn one_request_log_line_with_hashes_and_no_content() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let (_guard, logs) = capture_logs();
    let secret = "the launch code is tangerine-basilisk";
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"messages": [{"role": "user", "content": secret}], "tags": {"feature": "demo"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r2 = chat(&s, stack.key("acme"), json!({"messages": "bad"})).await;
    assert_eq!(r2.status, 400);
    let lines = logs.requests();
    assert_eq!(lines.len(), 2, "{}", logs.text());
    let f = &lines[0]["fields"];
    assert_eq!(f["tenant"], "acme");
    assert_eq!(f["feature"], "demo");
    assert_eq!(f["status"], 200);
    assert_eq!(f["model"], "anthropic.claude-3-5-haiku-20241022-v1:0");
    assert_eq!(f["request_id"], r.body["id"]);
    assert!(f["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(f["cost_usd"], r.body["cost_usd"]);
    assert_eq!(f["prompt_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(f["output_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(lines[1]["fields"]["error_type"], "invalid_request");
    assert!(
        !logs.text().contains("tangerine"),
        "content leaked into the logs"
    );
    assert!(
        !logs
            .text()
            .contains(r.body["output"]["text"].as_str().unwrap()),
        "output leaked into the logs"
    );
}

#[tokio::test]
async fn redacted_pii_reaches_neither_the_model_nor_the_logs() {
    let stack = Stack::start().await;
    let key = add_tenant(&stack, "careful", json!({"guardrails": {"pii": "redact"}})).await;
    let s = state(&stack, options());
    let (_guard, logs) = capture_logs();
    let r = chat(
        &s,
        &key,
        json!({"messages": [{"role": "user", "content": PII}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["guardrails"]["redacted"],
        json!({"email": 1, "phone": 1, "credit_card": 1})
    );
    let sent = stack.emulator.state().recorded(1)[0].body.to_string();
    for secret in [
        "jane.roe@example.org",
        "415-555-0132",
        "4111 1111 1111 1111",
    ] {
        assert!(!sent.contains(secret), "{secret} reached the model: {sent}");
        assert!(!logs.text().contains(secret), "{secret} reached the logs");
    }
    // The logs were captured: the absence above means something.
    assert_eq!(logs.requests().len(), 1, "{}", logs.text());
    assert!(
        sent.contains("[EMAIL]") && sent.contains("[CREDIT_CARD]"),
        "{sent}"
    );
}
