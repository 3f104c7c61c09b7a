//! Bad input on the wire, the admin API, and streaming without buffering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const NOVA: &str = "amazon.nova-lite-v1:0";

async fn emulator_with(config: EmulatorConfig) -> RunningEmulator {
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap()
}

async fn emulator() -> RunningEmulator {
    emulator_with(EmulatorConfig::builtin()).await
}

/// Asserts Bedrock's error shape: status, `x-amzn-errortype`, JSON `message`.
async fn assert_bedrock_error(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["x-amzn-errortype"], kind);
    assert!(response.headers().contains_key("x-amzn-requestid"));
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    message
}

fn converse_url(emu: &RunningEmulator, model: &str) -> String {
    format!("{}/model/{}/converse", emu.url(), model)
}

#[tokio::test]
async fn garbage_body_is_a_validation_exception() {
    let emu = emulator().await;
    let r = reqwest::Client::new()
        .post(converse_url(&emu, NOVA))
        .header("content-type", "application/json")
        .body(vec![0xff, 0x00, b'{', b'x'])
        .send()
        .await
        .unwrap();
    let m = assert_bedrock_error(r, 400, "ValidationException").await;
    assert!(m.contains("Malformed input request"));

    let r = reqwest::Client::new()
        .post(converse_url(&emu, NOVA))
        .header("content-type", "application/json")
        .body(r#"{"messages": "not a list"}"#)
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 400, "ValidationException").await;

    let r = reqwest::Client::new()
        .post(converse_url(&emu, NOVA))
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 400, "ValidationException").await;
}

#[tokio::test]
async fn wrong_content_type_is_rejected() {
    let emu = emulator().await;
    let r = reqwest::Client::new()
        .post(converse_url(&emu, NOVA))
        .header("content-type", "text/plain")
        .body(r#"{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}"#)
        .send()
        .await
        .unwrap();
    let m = assert_bedrock_error(r, 400, "ValidationException").await;
    assert!(m.contains("text/plain"));
}

#[tokio::test]
async fn unknown_model_and_unknown_operation() {
    let emu = emulator().await;
    let body = r#"{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}"#;
    let r = reqwest::Client::new()
        .post(converse_url(&emu, "acme.nothing-v1"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 400, "ValidationException").await;

    let r = reqwest::Client::new()
        .post(format!("{}/model/{NOVA}/teleport", emu.url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 404, "UnknownOperationException").await;

    let r = reqwest::Client::new()
        .get(converse_url(&emu, NOVA))
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 404, "UnknownOperationException").await;

    let r = reqwest::Client::new()
        .post(format!("{}/model/%FF%FE/converse", emu.url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_bedrock_error(r, 400, "ValidationException").await;
}

#[tokio::test]
async fn oversize_body_is_refused_with_bedrocks_shape() {
    let config = EmulatorConfig {
        max_body_bytes: 1024,
        ..EmulatorConfig::builtin()
    };
    let emu = emulator_with(config).await;
    let big = json!({"messages": [{"role": "user", "content": [{"text": "x".repeat(4096)}]}]});
    let r = reqwest::Client::new()
        .post(converse_url(&emu, NOVA))
        .header("content-type", "application/json")
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    let m = assert_bedrock_error(r, 400, "ValidationException").await;
    assert!(m.contains("1024"));
}

#[tokio::test]
async fn input_over_the_context_window_is_refused() {
    let emu = emulator().await;
    let text = "word ".repeat(130_000);
    let r = reqwest::Client::new()
        .post(converse_url(&emu, "meta.llama3-1-8b-instruct-v1:0"))
        .header("content-type", "application/json")
        .body(json!({"messages": [{"role": "user", "content": [{"text": text}]}]}).to_string())
        .send()
        .await
        .unwrap();
    let m = assert_bedrock_error(r, 400, "ValidationException").await;
    assert!(m.contains("too long"));
}

#[tokio::test]
async fn admin_counts_records_and_resets() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": [{"text": "count me"}]}]});
    for _ in 0..2 {
        let r = http
            .post(converse_url(&emu, &format!("us.{NOVA}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let calls: Value = http
        .get(format!("{}/_emulator/calls", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["total"], 2);
    assert_eq!(calls["operations"]["Converse"][NOVA]["calls"], 2);
    assert_eq!(calls["operations"]["Converse"][NOVA]["errors"], 0);

    let recorded: Value = http
        .get(format!("{}/_emulator/requests?limit=1", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["requests"].as_array().unwrap().len(), 1);
    assert_eq!(recorded["requests"][0]["body"], body);
    assert_eq!(recorded["requests"][0]["model_id"], format!("us.{NOVA}"));

    let r = http
        .post(format!("{}/_emulator/reset", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let calls: Value = http
        .get(format!("{}/_emulator/calls", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["total"], 0);

    let r = http
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"model": "acme.unknown", "throttle_next": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/_emulator/faults", emu.url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn outage_and_probabilistic_throttling() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let send = || {
        http.post(converse_url(&emu, NOVA))
            .header("content-type", "application/json")
            .body(json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).to_string())
            .send()
    };
    http.post(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"model": NOVA, "outage": "ServiceUnavailableException"}))
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        assert_bedrock_error(send().await.unwrap(), 503, "ServiceUnavailableException").await;
    }
    http.delete(format!("{}/_emulator/faults", emu.url()))
        .send()
        .await
        .unwrap();
    http.post(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"throttle_probability": 0.5}))
        .send()
        .await
        .unwrap();
    let mut throttled = 0;
    for _ in 0..200 {
        if send().await.unwrap().status() == 429 {
            throttled += 1;
        }
    }
    assert!(
        (60..=140).contains(&throttled),
        "throttled {throttled} of 200 at p=0.5"
    );
}

#[tokio::test]
async fn streams_leave_token_by_token_not_buffered() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    http.post(format!("{}/_emulator/latency", emu.url()))
        .json(&json!({"ttft_ms": 0, "per_token_ms": 25}))
        .send()
        .await
        .unwrap();
    let mut response = http
        .post(format!("{}/model/{NOVA}/converse-stream", emu.url()))
        .header("content-type", "application/json")
        .body(json!({"messages": [{"role": "user", "content": [{"text": "stream"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        arrivals.push((Instant::now(), chunk.len()));
    }
    // At least 12 tokens at 25 ms each: a buffered body would arrive as one burst.
    let spread = arrivals.last().unwrap().0 - arrivals.first().unwrap().0;
    assert!(arrivals.len() >= 10, "{} chunks", arrivals.len());
    assert!(
        spread >= Duration::from_millis(200),
        "all chunks within {spread:?}"
    );
}

/// The JSON payloads of an event stream body, with their event types.
fn frames(mut body: bytes::Bytes) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let message = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
        let kind = message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type")
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        out.push((kind, serde_json::from_slice(message.payload()).unwrap()));
    }
    out
}

const SONNET_4: &str = "anthropic.claude-sonnet-4-20250514-v1:0";

fn rich_request() -> Value {
    json!({
        "system": [
            {"text": "You answer from the documents. ".repeat(200)},
            {"cachePoint": {"type": "default", "ttl": "1h"}}
        ],
        "messages": [{"role": "user", "content": [
            {"document": {"format": "txt", "name": "facts",
                          "source": {"text": "Water boils at 100 C. Ice melts at 0 C."},
                          "citations": {"enabled": true}}},
            {"text": "When does water boil?"}
        ]}],
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "inferenceConfig": {"maxTokens": 2000},
        "performanceConfig": {"latency": "standard"},
        "guardrailConfig": {"guardrailIdentifier": "quarrydefault", "guardrailVersion": "DRAFT",
                            "trace": "enabled"}
    })
}

#[tokio::test]
async fn converse_wire_shapes_of_reasoning_citations_tier_trace_and_cache() {
    let emu = emulator().await;
    let r = reqwest::Client::new()
        .post(converse_url(&emu, SONNET_4))
        .header("content-type", "application/json")
        .body(rich_request().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let content = &body["output"]["message"]["content"];
    let reasoning = &content[0]["reasoningContent"]["reasoningText"];
    assert!(reasoning["text"].is_string() && reasoning["signature"].is_string());
    let cited = &content[1]["citationsContent"];
    assert!(cited["content"][0]["text"].is_string());
    let citation = &cited["citations"][0];
    let at = &citation["location"]["documentChar"];
    let (start, end) = (
        at["start"].as_u64().unwrap() as usize,
        at["end"].as_u64().unwrap() as usize,
    );
    let quote: String = "Water boils at 100 C. Ice melts at 0 C."
        .chars()
        .skip(start)
        .take(end - start)
        .collect();
    assert_eq!(
        citation,
        &json!({"title": "facts", "sourceContent": [{"text": quote}],
                "location": {"documentChar": {"documentIndex": 0, "start": start, "end": end}}})
    );
    assert_eq!(body["serviceTier"], json!({"type": "default"}));
    assert_eq!(body["performanceConfig"], json!({"latency": "standard"}));
    let usage = &body["usage"];
    assert_eq!(
        usage["cacheDetails"],
        json!([{"ttl": "1h", "inputTokens": usage["cacheWriteInputTokens"]}])
    );
    assert!(body["trace"]["guardrail"]["inputAssessment"]["quarrydefault"].is_object());

    let r = reqwest::Client::new()
        .post(format!("{}/model/{SONNET_4}/converse-stream", emu.url()))
        .header("content-type", "application/json")
        .body(rich_request().to_string())
        .send()
        .await
        .unwrap();
    let events = frames(r.bytes().await.unwrap());
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(kind, _)| kind == "contentBlockDelta")
        .map(|(_, payload)| payload)
        .collect();
    assert!(deltas[0]["delta"]["reasoningContent"]["text"].is_string());
    let signature = deltas
        .iter()
        .find(|d| d["delta"]["reasoningContent"]["signature"].is_string())
        .unwrap();
    assert_eq!(signature["contentBlockIndex"], 0);
    let citation_delta = deltas.last().unwrap();
    assert_eq!(citation_delta["contentBlockIndex"], 1);
    assert_eq!(citation_delta["delta"]["citation"], *citation);
    let (kind, metadata) = events.last().unwrap();
    assert_eq!(kind, "metadata");
    assert_eq!(metadata["serviceTier"], json!({"type": "default"}));
    assert_eq!(
        metadata["performanceConfig"],
        json!({"latency": "standard"})
    );
    assert!(metadata["trace"]["guardrail"]["inputAssessment"]["quarrydefault"].is_object());
    // The cache was written by the first call: this one reads it.
    assert!(metadata["usage"]["cacheReadInputTokens"].as_u64().unwrap() > 0);

    let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let r = reqwest::Client::new()
        .post(converse_url(
            &emu,
            &percent_encoding::utf8_percent_encode(router, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ))
        .header("content-type", "application/json")
        .body(json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["trace"],
        json!({"promptRouter": {"invokedModelId":
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"}})
    );
}

#[tokio::test]
async fn unknown_enum_values_are_validation_errors() {
    let emu = emulator().await;
    let base = || json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let cases = [
        ("serviceTier", json!({"type": "turbo"}), "serviceTier.type"),
        (
            "performanceConfig",
            json!({"latency": "fast"}),
            "performanceConfig.latency",
        ),
        (
            "guardrailConfig",
            json!({"guardrailIdentifier": "quarrydefault", "guardrailVersion": "DRAFT",
                   "streamProcessingMode": "fast"}),
            "guardrailConfig.streamProcessingMode",
        ),
        (
            "guardrailConfig",
            json!({"guardrailIdentifier": "quarrydefault", "guardrailVersion": "DRAFT",
                   "trace": "verbose"}),
            "guardrailConfig.trace",
        ),
        (
            "system",
            json!([{"text": "x"}, {"cachePoint": {"type": "default", "ttl": "2h"}}]),
            "system.1.member.cachePoint.ttl",
        ),
    ];
    for (field, value, at) in cases {
        let mut body = base();
        body[field] = value;
        let r = reqwest::Client::new()
            .post(converse_url(&emu, NOVA))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let m = assert_bedrock_error(r, 400, "ValidationException").await;
        assert!(m.contains(at), "{field}: {m}");
    }
}
