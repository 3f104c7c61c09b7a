//! Reversible masking (`pii: mask`) end to end: the model (the emulator's recorded request)
//! sees placeholders only, while the client's answer, whole and streamed, holds the values;
//! two callers' identical questions share a cache entry without sharing their values; and no
//! value reaches a log line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{add_tenant, capture_logs, chat, options, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

/// The text of a native answer, whole (JSON) or streamed (SSE `delta` events).
fn answer_text(body: &Value) -> String {
    match body {
        Value::String(sse) => sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect(),
        v => v["output"]["text"].as_str().unwrap_or_default().to_owned(),
    }
}

fn masking() -> Value {
    json!({"guardrails": {"pii": "mask", "patterns": {"CUSTOMER_ID": "\\b[0-9]{10}\\b"}}})
}

#[tokio::test]
async fn the_model_sees_placeholders_and_the_client_its_values() {
    let stack = Stack::start().await;
    let key = add_tenant(&stack, "masked", masking()).await;
    let s = state(&stack, options());
    let (_guard, logs) = capture_logs();
    let question = "Repeat: customer 4821937560 wrote from jane.doe@example.com about 4821937560 and 1112223334";
    for stream in [false, true] {
        let r = chat(
            &s,
            &key,
            json!({"messages": [{"role": "user", "content": question}], "stream": stream}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let sent = stack.emulator.state().recorded(1)[0].body.to_string();
        for value in ["4821937560", "jane.doe@example.com", "1112223334"] {
            assert!(!sent.contains(value), "the model saw {value}: {sent}");
        }
        assert!(
            sent.contains("customer [CUSTOMER_ID_1] wrote from [EMAIL_1] about [CUSTOMER_ID_1] and [CUSTOMER_ID_2]"),
            "{sent}"
        );
        let text = answer_text(&r.body);
        assert!(
            text.contains("customer 4821937560 wrote from jane.doe@example.com about 4821937560 and 1112223334"),
            "stream={stream}: {text}"
        );
        assert!(
            !text.contains("[CUSTOMER_ID") && !text.contains("[EMAIL"),
            "{text}"
        );
        let guardrails = if stream {
            r.body.to_string()
        } else {
            r.body["guardrails"].to_string()
        };
        assert!(guardrails.contains("CUSTOMER_ID"), "{guardrails}");
    }
    let logged = logs.text();
    for value in ["4821937560", "jane.doe@example.com", "1112223334"] {
        assert!(!logged.contains(value), "a log line holds {value}");
    }
}

#[tokio::test]
async fn identical_questions_share_a_cache_entry_not_their_values() {
    let stack = Stack::start().await;
    let key = add_tenant(&stack, "masked-cache", masking()).await;
    let s = state(&stack, options());
    let ask = |id: &str, stream: bool| {
        json!({"messages": [{"role": "user", "content": format!("Repeat: the balance of account {id} please")}],
               "temperature": 0, "stream": stream})
    };
    let first = chat(&s, &key, ask("1000000001", false)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["cached"], false);
    assert!(answer_text(&first.body).contains("account 1000000001"));
    let calls = stack.model_calls();

    let second = chat(&s, &key, ask("2000000002", false)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["cached"], true, "same masked text, same entry");
    let text = answer_text(&second.body);
    assert!(text.contains("account 2000000002"), "{text}");
    assert!(
        !text.contains("1000000001"),
        "another caller's value: {text}"
    );

    let third = chat(&s, &key, ask("3000000003", true)).await;
    assert_eq!(third.status, 200);
    let text = answer_text(&third.body);
    assert!(
        text.contains("account 3000000003") && !text.contains("1000000001"),
        "{text}"
    );
    assert_eq!(stack.model_calls(), calls, "both answered from the cache");

    // What the cache holds is the masked answer.
    let table = stack.settings.cache_table.clone();
    let items = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .scan()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let stored = format!("{:?}", items.items());
    assert!(stored.contains("[CUSTOMER_ID_1]"), "{stored}");
    assert!(!stored.contains("1000000001") && !stored.contains("2000000002"));
}

#[tokio::test]
async fn redact_wins_over_mask_and_bad_patterns_are_refused_when_read() {
    let stack = Stack::start().await;
    // A tenant that masks, with a prompt-free request: the model sees placeholders; a tenant
    // whose pattern can match whitespace cannot be configured at all.
    let bad: Result<quarry_core::tenancy::TenantPolicy, _> = serde_json::from_value(
        json!({"guardrails": {"pii": "mask", "patterns": {"ID": "\\d{3} \\d{3}"}}}),
    );
    let e = bad.unwrap_err().to_string();
    assert!(e.contains("can match whitespace"), "{e}");

    let key = add_tenant(
        &stack,
        "redacting",
        json!({"guardrails": {"pii": "redact", "patterns": {"CUSTOMER_ID": "\\b[0-9]{10}\\b"}}}),
    )
    .await;
    let s = state(&stack, options());
    let r = chat(
        &s,
        &key,
        json!({"messages": [{"role": "user", "content": "Repeat: customer 4821937560"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = answer_text(&r.body);
    assert!(text.contains("customer [CUSTOMER_ID]"), "{text}");
}
