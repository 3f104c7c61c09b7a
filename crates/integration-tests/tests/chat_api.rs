//! The chat API end to end, against moto and the emulator: auth and tenancy, input limits
//! and errors, models, idempotency, the request log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{add_tenant, call, chat, options, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Hello"}]})
}

fn assert_envelope(body: &Value, kind: &str) {
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401s_and_reach_no_model() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let r = call(&s, "POST", "/v1/chat", None, Some(hello())).await;
    assert_eq!(r.status, 401);
    assert_envelope(&r.body, "unauthorized");
    let r = call(&s, "POST", "/v1/chat", Some("qk_not_a_key"), Some(hello())).await;
    assert_eq!(r.status, 401);
    let r = call(&s, "GET", "/v1/models", None, None).await;
    assert_eq!(r.status, 401);
    // x-api-key works as well as Authorization: Bearer.
    let request = http::Request::post("/v1/chat")
        .header("x-api-key", stack.key("acme"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(hello().to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(chat_handler::app(s.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stack.model_calls(), 1);
}

#[tokio::test]
async fn tiers_and_models_outside_the_tenants_policy_are_403s() {
    let stack = Stack::start().await;
    let key = add_tenant(
        &stack,
        "narrow",
        json!({"allowed_tiers": ["batch"], "allowed_models": ["amazon.nova-micro-v1:0"]}),
    )
    .await;
    let s = state(&stack, options());
    let r = chat(
        &s,
        &key,
        json!({"messages": [{"role": "user", "content": "hi"}], "tier": "smart"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_envelope(&r.body, "forbidden");
    // The default tier (fast) is not allowed either.
    assert_eq!(chat(&s, &key, hello()).await.status, 403);
    let r = chat(
        &s,
        &key,
        json!({"messages": [{"role": "user", "content": "hi"}], "model": "amazon.nova-pro-v1:0"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(stack.model_calls(), 0);
    let r = chat(
        &s,
        &key,
        json!({"messages": [{"role": "user", "content": "hi"}], "tier": "batch"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = chat(&s, &key, json!({"messages": [{"role": "user", "content": "hi"}], "model": "us.amazon.nova-micro-v1:0"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // /v1/models lists what the tenant may use, and nothing else.
    let r = call(&s, "GET", "/v1/models", Some(&key), None).await;
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["batch", "amazon.nova-micro-v1:0"]);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_naming_the_field_never_a_500() {
    let stack = Stack::start().await;
    let s = state(
        &stack,
        chat_handler::Options {
            max_body_bytes: 2000,
            max_messages: 3,
            max_total_chars: 500,
            ..options()
        },
    );
    let key = stack.key("acme");
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (json!("just a string"), 400, "invalid_request", Some("body")),
        (
            json!({"messages": "nope"}),
            400,
            "invalid_request",
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "robot", "content": "hi"}]}),
            400,
            "invalid_request",
            Some("messages[0].role"),
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            400,
            "invalid_request",
            Some("messages[0].content"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            400,
            "invalid_request",
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}),
            400,
            "invalid_request",
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
            400,
            "invalid_request",
            Some("max_tokens"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "colour": "red"}),
            400,
            "invalid_request",
            None,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "tier": "fast", "model": "x"}),
            400,
            "invalid_request",
            Some("model"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "tier": "cheap"}),
            400,
            "unknown_tier",
            None,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "model": "acme.nothing"}),
            400,
            "unknown_model",
            None,
        ),
        (
            json!({"messages": []}),
            400,
            "invalid_request",
            Some("messages"),
        ),
        (
            json!({"prompt": "nope"}),
            400,
            "invalid_request",
            Some("prompt"),
        ),
        (
            json!({"prompt": "summarize"}),
            400,
            "invalid_request",
            Some("variables"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}),
            400,
            "invalid_request",
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x".repeat(600)}]}),
            413,
            "payload_too_large",
            None,
        ),
        (
            json!({"messages": [{"role": "user", "content": "x".repeat(3000)}]}),
            413,
            "payload_too_large",
            None,
        ),
        // Bedrock's own validation: the conversation must start with a user message.
        (
            json!({"messages": [{"role": "assistant", "content": "hi"}]}),
            400,
            "model_validation_error",
            None,
        ),
    ];
    for (body, status, kind, param) in cases {
        let r = chat(&s, key, body.clone()).await;
        assert_eq!(r.status, status, "{body} -> {}", r.body);
        assert_envelope(&r.body, kind);
        if let Some(p) = param {
            assert_eq!(r.body["error"]["param"], p, "{body} -> {}", r.body);
        }
    }
    // Not JSON at all, empty, and an unknown route.
    let request = |body: &'static str| {
        http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {key}"))
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    for raw in ["{not json", "", "\u{0}\u{1}"] {
        let response = tower::ServiceExt::oneshot(chat_handler::app(s.clone()), request(raw))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw:?}");
    }
    let r = call(&s, "GET", "/v2/nothing", Some(key), None).await;
    assert_eq!(r.status, 404);
    assert_envelope(&r.body, "not_found");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response_without_a_second_call_or_charge() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let send = |body: Value, idem: &'static str| {
        let s = s.clone();
        async move {
            let request = http::Request::post("/v1/chat")
                .header("authorization", format!("Bearer {key}"))
                .header("idempotency-key", idem)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = tower::ServiceExt::oneshot(chat_handler::app(s), request)
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                replayed,
                serde_json::from_slice::<Value>(&bytes).unwrap(),
            )
        }
    };
    let body =
        json!({"messages": [{"role": "user", "content": "charge me once"}], "temperature": 0.7});
    let (s1, r1, first) = send(body.clone(), "order-42").await;
    let (s2, r2, second) = send(body.clone(), "order-42").await;
    assert_eq!((s1, r1, s2, r2), (200, false, 200, true));
    assert_eq!(first, second);
    assert_eq!(stack.model_calls(), 1);
    let (s3, _, third) = send(
        json!({"messages": [{"role": "user", "content": "something else"}]}),
        "order-42",
    )
    .await;
    assert_eq!(s3, 422);
    assert_envelope(&third, "idempotency_key_reused");
    assert_eq!(stack.model_calls(), 1);
    // Another key is another request.
    let (s4, r4, _) = send(body, "order-43").await;
    assert_eq!((s4, r4), (200, false));
    assert_eq!(stack.model_calls(), 2);
}
