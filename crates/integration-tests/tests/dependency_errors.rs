//! A dependency outage is reported as that dependency's: with DynamoDB unreachable (and SSM
//! up), the idempotency store and the jobs store answer 503 `dependency_unavailable` naming
//! DynamoDB, never `configuration_unavailable`, which the runbook reserves for SSM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bedrock_emulator::EmulatorConfig;
use common::{call, options, state};
use quarry_testkit::{Moto, Proxy, Stack};
use serde_json::json;

#[tokio::test]
async fn dynamodb_down_is_a_dependency_error_naming_dynamodb() {
    let moto = Moto::shared();
    let proxy = Proxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        EmulatorConfig::builtin(),
        &[("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())],
    )
    .await;
    let s = state(&stack, options());
    proxy.set_up(false);

    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/chat")
        .header("authorization", format!("Bearer {}", stack.key("acme")))
        .header("content-type", "application/json")
        .header("idempotency-key", "k-1")
        .body(axum::body::Body::from(
            json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .unwrap();
    let response = tower::ServiceExt::oneshot(chat_handler::app(s.clone()), request)
        .await
        .unwrap();
    let (status, body) = quarry_testkit::json_reply(response).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "dependency_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("DynamoDB"), "{message}");
    assert!(message.contains("idempotency"), "{message}");
    assert_eq!(
        stack.model_calls(),
        0,
        "nothing runs without its idempotency claim"
    );

    let r = call(
        &s,
        "GET",
        "/v1/batches/job-1",
        Some(stack.key("acme")),
        None,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "dependency_unavailable");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobs store (DynamoDB)"),
        "{}",
        r.body
    );
    proxy.set_up(true);
}
