//! A Claude Code session replayed against Quarry (`fixtures/claude-code.json`): its headers
//! and betas, its system prompt and tools with `cache_control`, thinking, a streamed turn with
//! a tool call, and the tool result sent back with the signed thinking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{options, sse_events, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/claude-code.json")).unwrap()
}

async fn post(url: &str, key: &str, path: &str, body: &Value) -> reqwest::Response {
    let session = fixture();
    let mut request = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("x-api-key", key)
        .json(body);
    for (name, value) in session["headers"].as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_claude_code_session_works_through_quarry() {
    let stack = Stack::start().await;
    let url = common::serve(state(&stack, options())).await;
    let key = stack.key("acme").to_owned();
    let session = fixture();
    let requests = session["requests"].as_array().unwrap();

    // The quota probe and the token count.
    let r = post(&url, &key, "/v1/messages", &requests[0]["body"]).await;
    assert_eq!(r.status(), 200);
    let probe: Value = r.json().await.unwrap();
    assert_eq!(probe["type"], "message");
    let r = post(
        &url,
        &key,
        "/v1/messages/count_tokens",
        &requests[1]["body"],
    )
    .await;
    assert_eq!(r.status(), 200);
    let counted: Value = r.json().await.unwrap();
    assert!(counted["input_tokens"].as_u64().unwrap() > 0);

    // The streamed turn: thinking, then (Claude says what it will do) text, then the tool.
    let turn = &requests[2]["body"];
    let r = post(&url, &key, "/v1/messages", turn).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "ping"], "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let data: Vec<Value> = events
        .iter()
        .map(|(_, _, d)| serde_json::from_str(d).unwrap())
        .collect();
    // Rebuild the content as the SDKs do: by block index.
    let mut blocks: Vec<Value> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for d in &data {
        match d["type"].as_str().unwrap() {
            "content_block_start" => {
                assert_eq!(d["index"].as_u64().unwrap() as usize, blocks.len());
                blocks.push(d["content_block"].clone());
                args.push(String::new());
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap() as usize;
                let delta = &d["delta"];
                match delta["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        let t = blocks[i]["thinking"].as_str().unwrap().to_owned();
                        blocks[i]["thinking"] = json!(t + delta["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => blocks[i]["signature"] = delta["signature"].clone(),
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_owned();
                        blocks[i]["text"] = json!(t + delta["text"].as_str().unwrap());
                    }
                    "input_json_delta" => args[i].push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            _ => {}
        }
    }
    for (b, a) in blocks.iter_mut().zip(&args) {
        if b["type"] == "tool_use" {
            b["input"] = serde_json::from_str(a).unwrap();
        }
    }
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"], "{blocks:?}");
    assert!(
        blocks[0]["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(blocks[2]["name"], "Bash");
    assert!(blocks[2]["input"]["command"].is_string(), "{blocks:?}");
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // What Bedrock was sent: Claude Code's own betas filtered out, Bedrock's passed, the
    // cache_control marks as cache points, thinking with Claude Code's budget.
    let sent = &stack.emulator.state().recorded(1)[0].body;
    let extra = &sent["additionalModelRequestFields"];
    assert_eq!(
        extra["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14"]),
        "{sent}"
    );
    assert_eq!(extra["thinking"]["budget_tokens"], 31999);
    assert!(
        sent["system"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.get("cachePoint").is_some()),
        "{sent}"
    );
    assert!(
        sent["messages"][0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.get("cachePoint").is_some())
    );

    // The tool result goes back with the assistant turn as Claude Code keeps it.
    let mut next = turn.clone();
    let id = blocks[2]["id"].clone();
    next["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": blocks}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "Cargo.toml\nsrc"}]}),
    ]);
    let r = post(&url, &key, "/v1/messages", &next).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    let stop: Value = events
        .iter()
        .find(|(_, e, _)| e == "message_delta")
        .map(|(_, _, d)| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(stop["delta"]["stop_reason"], "end_turn", "{events:?}");
}
