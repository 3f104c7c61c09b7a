//! Streaming over a real socket: Server-Sent Events leave token by token (the first byte
//! with the first token), usage comes in the final event, fallback happens only before the
//! first token, and a mid-stream failure ends the stream with an error event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bedrock_emulator::ErrorKind;
use common::{fault, options, serve, sse_events, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

async fn stream(
    url: &str,
    key: &str,
    path: &str,
    body: Value,
) -> Vec<(std::time::Instant, String, String)> {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    sse_events(response).await
}

#[tokio::test]
async fn chunks_arrive_before_the_model_has_finished_and_usage_comes_last() {
    let stack = Stack::start().await;
    stack.emulator.state().config_mut().latency = bedrock_emulator::Latency {
        ttft_ms: 50,
        per_token_ms: 25,
    };
    let url = serve(state(&stack, options())).await;
    let events = stream(
        &url,
        stack.key("acme"),
        "/v1/chat",
        json!({"messages": [{"role": "user", "content": "Tell me something"}], "stream": true}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert_eq!(names.last(), Some(&"done"));
    let deltas: Vec<_> = events.iter().filter(|(_, e, _)| e == "delta").collect();
    assert!(deltas.len() >= 10, "{names:?}");
    // Spread over at least (n - 2) x 25 ms: the deltas were not buffered into one burst.
    let spread = deltas.last().unwrap().0 - deltas.first().unwrap().0;
    assert!(
        spread >= Duration::from_millis(25 * (deltas.len() as u64 - 2) * 8 / 10),
        "{} deltas within {spread:?}",
        deltas.len()
    );
    let done: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() as usize >= deltas.len());
    assert!(done["cost_usd"].as_str().is_some());
    let text: String = deltas
        .iter()
        .map(|(_, _, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(done["output"]["text"], text);
}

#[tokio::test]
async fn a_stream_falls_back_before_its_first_token() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| {
        f.outage = Some(ErrorKind::ThrottlingException)
    });
    let url = serve(state(&stack, options())).await;
    let events = stream(
        &url,
        stack.key("acme"),
        "/v1/chat",
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    let start: Value = serde_json::from_str(&events[0].2).unwrap();
    assert_eq!(start["model"], "us.amazon.nova-lite-v1:0");
    assert_eq!(start["fallbacks"][0]["reason"], "throttled");
    assert_eq!(events.last().unwrap().1, "done");
}

#[tokio::test]
async fn an_error_after_the_first_token_ends_the_stream_with_an_error_event() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| f.mid_stream_error_after = Some(3));
    let url = serve(state(&stack, options())).await;
    let events = stream(
        &url,
        stack.key("acme"),
        "/v1/chat",
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "delta").count(),
        3,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"error"));
    let error: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream_error"),
        "{error}"
    );
    // No fallback after the first token.
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("ConverseStream"), Some("amazon.nova-lite-v1:0")),
        0
    );
}

#[tokio::test]
async fn errors_before_the_first_token_are_plain_json_errors() {
    let stack = Stack::start().await;
    let url = serve(state(&stack, options())).await;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat"))
        .bearer_auth(stack.key("acme"))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "stream": true, "tier": "cheap"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "unknown_tier");
}

#[tokio::test]
async fn openai_chunks_with_usage_and_done() {
    let stack = Stack::start().await;
    let url = serve(state(&stack, options())).await;
    let events = stream(
        &url,
        stack.key("acme"),
        "/v1/chat/completions",
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(events.last().unwrap().2, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, _, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
}
