//! The API Lambdas' metrics reach CloudWatch: state built from the bootstrap (as each `main`
//! builds it) has written a request's EMF documents by the time its response is returned.
//! One test: the recorder is the process's, so two tests would flush each other's metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{call, options};
use quarry_aws::Bootstrap;
use quarry_testkit::{EmfCapture, Stack, json_reply};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The `Stage`-only document (the one the alarms read).
fn by_stage(documents: &[Value]) -> &Value {
    documents
        .iter()
        .find(|d| d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] == json!(["Stage"]))
        .unwrap_or_else(|| panic!("no Stage document: {documents:?}"))
}

#[tokio::test]
async fn chat_and_cache_lookup_flush_each_requests_metrics() {
    let stack = Stack::start().await;
    let emf = EmfCapture::default();
    let process = quarry_aws::bootstrap::init().await;
    // The bootstrap's recorder (its `Stage` is the process's), with the stack's SDK
    // configuration and resources.
    let boot = Bootstrap {
        sdk: stack.sdk.clone(),
        settings: stack.settings.clone(),
        metrics: process.metrics.writing_to({
            let emf = emf.clone();
            move || Box::new(emf.clone())
        }),
    };
    let body = json!({"messages": [{"role": "user", "content": "Count me"}], "temperature": 0});

    let lookup = Arc::new(cache_lookup::CacheState::from_bootstrap(
        &boot,
        cache_lookup::CacheOptions::from_lookup(|_| None).unwrap(),
    ));
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/cache/lookup")
        .header("authorization", format!("Bearer {}", stack.key("acme")))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, reply) =
        json_reply(cache_lookup::app(lookup).oneshot(request).await.unwrap()).await;
    assert_eq!(status, 404, "{reply}");
    let documents = emf.documents();
    assert_eq!(by_stage(&documents)["CacheMisses"], 1, "{documents:?}");

    let chat = Arc::new(chat_handler::AppState::from_bootstrap(&boot, options()));
    let reply = call(
        &chat,
        "POST",
        "/v1/chat",
        Some(stack.key("acme")),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let documents = emf.documents();
    let alarms = by_stage(&documents);
    assert_eq!(alarms["Stage"], process.settings.stage.as_str());
    assert_eq!(alarms["Requests"], 1, "{alarms}");
    assert!(
        alarms["CostMicroUSD"].as_u64().is_some_and(|c| c > 0),
        "{alarms}"
    );
}
