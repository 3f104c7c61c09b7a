//! A request that carries no credentials at all is refused from the request alone: 401 with
//! the error envelope, and not one read of the parameter store. Reading the tenant directory
//! first would let an anonymous flood reach SSM, and would answer 503 instead of 401 while
//! SSM is unreachable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{request, unreachable_app};
use quarry_http::AuthMode;
use quarry_testkit::json_reply;
use tower::ServiceExt;

const ROUTES: [(&str, &str); 4] = [
    ("POST", "/v1/chat"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/batches/job-1"),
];

#[tokio::test]
async fn no_credentials_is_a_401_without_reading_the_parameter_store() {
    for auth in [
        AuthMode::ApiKey,
        AuthMode::Jwt {
            tenant_claim: "custom:tenant".into(),
            admin_claim: None,
        },
        AuthMode::Iam,
    ] {
        // No header at all, and (for API keys) a header that names no key.
        for authorization in [None, Some("Bearer "), Some("Bearer    ")] {
            for (method, path) in ROUTES {
                let (app, params) = unreachable_app(auth.clone());
                let response = app
                    .oneshot(request(method, path, authorization))
                    .await
                    .unwrap();
                let (status, body) = json_reply(response).await;
                let case = format!("{auth:?} {authorization:?} {method} {path}");
                assert_eq!(status, 401, "{case}: {body}");
                assert_eq!(body["error"]["type"], "unauthorized", "{case}: {body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{case}: {body}"
                );
                assert!(
                    body["error"]["request_id"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{case}: {body}"
                );
                assert_eq!(params.reads(), 0, "{case}");
            }
        }
    }
}

#[tokio::test]
async fn a_key_still_needs_the_directory_so_an_unreachable_store_is_a_503() {
    for (method, path) in ROUTES {
        let (app, params) = unreachable_app(AuthMode::ApiKey);
        let response = app
            .oneshot(request(method, path, Some("Bearer qk_some_key")))
            .await
            .unwrap();
        let (status, body) = json_reply(response).await;
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert_eq!(body["error"]["type"], "configuration_unavailable");
        assert!(params.reads() > 0, "{method} {path}");
    }
}
