//! The worker with the SQS event of `events/`, against moto and the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use batch_worker::{Worker, WorkerOptions};
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::{Stack, event};

fn fast_options() -> WorkerOptions {
    WorkerOptions {
        deadline_margin: Duration::from_millis(100),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..WorkerOptions::default()
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn sqs_event_good_item_answered_and_poison_acknowledged() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, fast_options());
    let event: SqsEvent = serde_json::from_str(&event("sqs-batch.json")).unwrap();
    let response = worker.handle(event, deadline()).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 1);
}

#[tokio::test]
async fn sqs_event_during_an_outage_returns_only_the_good_item() {
    let stack = Stack::start().await;
    stack.emulator.state().update_faults(|f| {
        f.entry("*".into()).or_default().outage =
            Some(bedrock_emulator::ErrorKind::ServiceUnavailableException);
    });
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, fast_options());
    let event: SqsEvent = serde_json::from_str(&event("sqs-batch.json")).unwrap();
    let response = worker.handle(event, deadline()).await;
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["059f36b4-87a3-44ab-83d2-661975830a7d"]);
}
