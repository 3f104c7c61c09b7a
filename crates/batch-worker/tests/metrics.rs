//! Batch traffic reaches CloudWatch: the handler the Lambda's `main` runs, with the recorder
//! the bootstrap installs, has written the batch's EMF documents (cost, tokens) by the time it
//! returns the batch response, after which Lambda may freeze the process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use batch_worker::{Worker, WorkerOptions};
use lambda_runtime::{Context, LambdaEvent};
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::{EmfCapture, Stack, event};
use serde_json::Value;

/// The document of the metrics with exactly these dimensions (the alarms use `Stage` alone).
fn document<'a>(documents: &'a [Value], dimensions: &[&str]) -> &'a Value {
    documents
        .iter()
        .find(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] == serde_json::json!(dimensions)
        })
        .unwrap_or_else(|| panic!("no document with dimensions {dimensions:?}: {documents:?}"))
}

#[tokio::test]
async fn a_batch_has_flushed_its_cost_and_token_metrics_when_the_invocation_returns() {
    let stack = Stack::start().await;
    let boot = quarry_aws::bootstrap::init().await;
    let emf = EmfCapture::default();
    let metrics = boot.metrics.writing_to({
        let emf = emf.clone();
        move || Box::new(emf.clone())
    });
    let worker = Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            deadline_margin: Duration::from_millis(100),
            retry: RetryPolicy {
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            ..WorkerOptions::default()
        },
    );
    let payload: SqsEvent = serde_json::from_str(&event("sqs-batch.json")).unwrap();
    let mut context = Context::default();
    context.deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 30_000;

    let response = worker
        .invoke(&metrics, LambdaEvent::new(payload, context))
        .await
        .unwrap();

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(stack.model_calls(), 1);
    let documents = emf.documents();
    let alarms = document(&documents, &["Stage"]);
    assert_eq!(
        alarms["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Quarry"
    );
    assert_eq!(alarms["Stage"], boot.settings.stage.as_str());
    for metric in ["CostMicroUSD", "InputTokens", "OutputTokens"] {
        assert!(
            alarms[metric].as_u64().is_some_and(|v| v > 0),
            "{metric} of the batch's item: {alarms}"
        );
    }
    let by_tenant = document(&documents, &["Stage", "Tenant", "Model", "Feature"]);
    assert_eq!(by_tenant["Tenant"], "acme");
    assert_eq!(by_tenant["Feature"], "digest");
    assert_eq!(by_tenant["CostMicroUSD"], alarms["CostMicroUSD"]);
}
