//! Helpers shared by the end-to-end tests: the chat API in-process, called through its
//! router exactly as lambda_http or `quarry serve` would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chat_handler::{AppState, Options, app};
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::Stack;
use serde_json::Value;
use tower::ServiceExt;

/// Options for tests: configuration re-read on every request (so pushes and promotions show
/// at once) and short backoffs.
pub fn options() -> Options {
    Options {
        config_max_age: Duration::ZERO,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            min_attempt_time: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..Options::default()
    }
}

pub fn state(stack: &Stack, options: Options) -> Arc<AppState> {
    Arc::new(AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        options,
    ))
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

pub async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(k) = key {
        request = request.header("authorization", format!("Bearer {k}"));
    }
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => request.body(axum::body::Body::empty()),
    }
    .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        body,
        headers,
    }
}

pub async fn chat(state: &Arc<AppState>, key: &str, body: Value) -> Reply {
    call(state, "POST", "/v1/chat", Some(key), Some(body)).await
}

/// Sets faults on the stack's emulator.
pub fn fault(stack: &Stack, model: &str, f: impl FnOnce(&mut bedrock_emulator::FaultSpec)) {
    stack
        .emulator
        .state()
        .update_faults(|faults| f(faults.entry(model.to_owned()).or_default()));
}
