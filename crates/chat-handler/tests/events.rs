//! The router with API Gateway HTTP API (payload v2) events from `events/`, as lambda_http
//! hands them over, against moto and the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chat_handler::{AppState, Options, app};
use quarry_testkit::{Stack, event, json_reply};
use serde_json::Value;
use tower::ServiceExt;

fn to_axum(request: lambda_http::Request) -> http::Request<axum::body::Body> {
    let (parts, body) = request.into_parts();
    http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()))
}

async fn call(state: Arc<AppState>, request: lambda_http::Request) -> (u16, Value) {
    json_reply(app(state).oneshot(to_axum(request)).await.unwrap()).await
}

#[tokio::test]
async fn api_gateway_v2_chat_event_gets_an_answer() {
    let stack = Stack::start().await;
    let state = Arc::new(AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        Options::default(),
    ));
    let text = event("apigw-http-chat.json").replace("qk_sample_key_replace_me", stack.key("acme"));
    let (status, body) = call(state, lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["output"]["text"].as_str().unwrap().is_empty());
    // The request ID is API Gateway's.
    assert_eq!(body["id"], "JKJaXmPLvHcESHA=");
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 1);
}

#[tokio::test]
async fn api_gateway_v2_event_with_a_wrong_key_is_a_401_envelope() {
    let stack = Stack::start().await;
    let state = Arc::new(AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        Options::default(),
    ));
    let (status, body) = call(
        state,
        lambda_http::request::from_str(&event("apigw-http-chat.json")).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "unauthorized");
    assert_eq!(body["error"]["request_id"], "JKJaXmPLvHcESHA=");
    assert_eq!(stack.model_calls(), 0);
}
