//! Structured output: the answer validates against the schema; an invalid one gets one
//! repair attempt, then a 502 with the validation errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat, fault, options, state};
use quarry_testkit::Stack;
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

fn ticket() -> serde_json::Value {
    json!({"prompt": "classify-ticket", "variables": {"subject": "Refund", "body": "I was charged twice."}})
}

#[tokio::test]
async fn the_prompts_schema_gives_validated_json() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let r = chat(&s, stack.key("acme"), ticket()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = &r.body["output"]["json"];
    assert!(
        ["billing", "bug", "account", "other"].contains(&out["category"].as_str().unwrap()),
        "{out}"
    );
    assert!(["low", "medium", "high"].contains(&out["priority"].as_str().unwrap()));
    assert!(out["summary"].as_str().unwrap().len() <= 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(r.body["output"]["text"].as_str().unwrap())
            .unwrap(),
        *out
    );
    // The schema went to the model as a forced tool.
    let sent = &stack.emulator.state().recorded(1)[0].body;
    assert_eq!(sent["toolConfig"]["toolChoice"]["tool"]["name"], "respond");
}

#[tokio::test]
async fn an_invalid_answer_is_repaired_once() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| f.malformed_output_next = 1);
    let s = state(&stack, options());
    let r = chat(&s, stack.key("acme"), ticket()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["output"]["json"]["category"].is_string());
    assert_eq!(stack.model_calls(), 2);
    // The repair call carried the validation errors back to the model.
    let repair = &stack.emulator.state().recorded(1)[0].body;
    let feedback = repair["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    assert!(
        feedback.contains("does not match the required JSON Schema"),
        "{feedback}"
    );
    // Both calls are charged: the usage covers two calls' input.
    assert!(r.body["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn still_invalid_after_the_repair_is_a_502_with_the_errors() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| f.malformed_output_next = 2);
    let s = state(&stack, options());
    let r = chat(&s, stack.key("acme"), ticket()).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_model_output");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("required"),
        "{}",
        r.body
    );
    assert_eq!(stack.model_calls(), 2);
}

#[tokio::test]
async fn a_request_schema_overrides_and_a_bad_schema_is_a_400() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["n"]});
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"messages": [{"role": "user", "content": "pick"}], "response_format": schema}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let n = r.body["output"]["json"]["n"].as_i64().unwrap();
    assert!((1..=9).contains(&n));
    let r = chat(&s, stack.key("acme"), json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "nonsense"}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "response_format");
}
