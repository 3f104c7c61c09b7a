//! A request refused before its handler ran still leaves its request line (and metrics),
//! like every chat request. Alone in its test binary: a log capture is a thread's default
//! subscriber, and tracing caches callsite interest process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{request, unreachable_app};
use quarry_http::AuthMode;
use quarry_testkit::json_reply;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refused_chat_request_is_logged_once() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let (app, _) = unreachable_app(AuthMode::ApiKey);
    let response = app
        .oneshot(request("POST", "/v1/chat", None))
        .await
        .unwrap();
    let (status, body) = json_reply(response).await;
    assert_eq!(status, 401);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let f = &lines[0]["fields"];
    assert_eq!(f["route"], "POST /v1/chat");
    assert_eq!(f["status"], 401);
    assert_eq!(f["error_type"], "unauthorized");
    assert_eq!(f["request_id"], body["error"]["request_id"]);
}
