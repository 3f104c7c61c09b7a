//! Every answer of the cache API that is an error uses the JSON error envelope, including the
//! ones no handler writes: a path it does not serve (404) and a method a path does not take
//! (405, with `Allow`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use cache_lookup::{CacheOptions, CacheState, app};
use quarry_aws::Settings;
use quarry_testkit::json_reply;
use serde_json::Value;
use tower::ServiceExt;

/// The cache API on adapters that are never reached: routing alone answers these requests.
fn unrouted_app() -> axum::Router {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let options = CacheOptions::from_lookup(|_| None).unwrap();
    app(Arc::new(CacheState::from_sdk(
        &sdk,
        &Settings::for_stage("routes"),
        options,
    )))
}

async fn send(method: &str, path: &str) -> (u16, Value, http::HeaderMap) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-request-id", "req-routes-1")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = unrouted_app().oneshot(request).await.unwrap();
    let headers = response.headers().clone();
    let (status, body) = json_reply(response).await;
    (status, body, headers)
}

fn assert_envelope(case: &str, body: &Value, kind: &str) {
    assert_eq!(body["error"]["type"], kind, "{case}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{case}: {body}"
    );
    assert_eq!(
        body["error"]["request_id"], "req-routes-1",
        "{case}: {body}"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_envelopes() {
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/v1/nope"),
        ("POST", "/v1/chat"),
        ("GET", "/v1/cache/stats/extra"),
        ("POST", "/v1/cache/lookup/"),
        ("DELETE", "/v1/cache/everything"),
    ] {
        let case = format!("{method} {path}");
        let (status, body, headers) = send(method, path).await;
        assert_eq!(status, 404, "{case}: {body}");
        assert_envelope(&case, &body, "not_found");
        assert_eq!(headers["content-type"], "application/json", "{case}");
        assert_eq!(headers["x-request-id"], "req-routes-1", "{case}");
    }
}

#[tokio::test]
async fn other_methods_on_known_routes_are_405_envelopes_with_allow() {
    for (method, path, allow) in [
        ("GET", "/v1/cache/lookup", "POST"),
        ("PUT", "/v1/cache/lookup", "POST"),
        ("GET", "/v1/cache", "DELETE"),
        ("POST", "/v1/cache/stats", "GET"),
    ] {
        let case = format!("{method} {path}");
        let (status, body, headers) = send(method, path).await;
        assert_eq!(status, 405, "{case}: {body}");
        assert_envelope(&case, &body, "method_not_allowed");
        assert_eq!(headers["allow"], allow, "{case}");
    }
}
