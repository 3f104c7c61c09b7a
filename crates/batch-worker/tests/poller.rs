//! The local SQS event source mapping against moto: acknowledged messages are deleted,
//! reported failures stay on the queue, return after the visibility timeout, and move to
//! the DLQ after maxReceiveCount, as with Lambda's event source mapping in AWS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions};
use bedrock_emulator::ErrorKind;
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::{Stack, eventually};
use serde_json::json;

fn message(item: &str, model: &str) -> String {
    json!({
        "schema_version": 1, "job_id": "job-poll", "item_id": item, "tenant": "acme",
        "messages": [{"role": "user", "content": "hello"}], "model": model
    })
    .to_string()
}

async fn visible(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    out.messages().len()
}

#[tokio::test]
async fn failures_return_to_the_queue_and_end_in_the_dlq() {
    let stack = Stack::start().await;
    stack.emulator.state().update_faults(|f| {
        f.entry("amazon.nova-micro-v1:0".into()).or_default().outage =
            Some(ErrorKind::ServiceUnavailableException);
    });
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue = stack.provisioned.batch_queue_url.clone();
    for (item, model) in [
        ("ok", "amazon.nova-lite-v1:0"),
        ("down", "amazon.nova-micro-v1:0"),
    ] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(message(item, model))
            .send()
            .await
            .unwrap();
    }
    let options = WorkerOptions {
        retry: RetryPolicy {
            max_attempts_per_model: 1,
            ..RetryPolicy::default()
        },
        ..WorkerOptions::default()
    };
    let worker = Arc::new(Worker::from_sdk(&stack.sdk, &stack.settings, options));
    let arn = quarry_aws::queues::queue_arn(&sqs, &queue).await.unwrap();
    let mapping = EventSourceMapping::new(
        sqs.clone(),
        queue.clone(),
        arn,
        worker,
        MappingOptions {
            batch_size: 10,
            visibility_timeout: 1,
            wait_seconds: 0,
            ..MappingOptions::default()
        },
    );

    let first = mapping.poll_once().await.unwrap();
    assert_eq!(
        (first.received, first.acknowledged, first.failed),
        (2, 1, 1)
    );

    // The failure comes back after the visibility timeout, until maxReceiveCount (3) moves it.
    let dlq = stack.provisioned.batch_dlq_url.clone();
    let moved = eventually(Duration::from_secs(20), || async {
        let _ = mapping.poll_once().await;
        let in_dlq = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?
            .attributes()?
            .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)?
            .parse::<u32>()
            .ok()?;
        (in_dlq == 1).then_some(())
    })
    .await;
    assert!(moved.is_some(), "the failing message never reached the DLQ");
    assert_eq!(
        visible(&sqs, &queue).await,
        0,
        "nothing is left on the batch queue"
    );
    // One model call for the good item, three (one per receive) for the failing one.
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("Converse"), Some("amazon.nova-lite-v1:0")),
        1
    );
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("Converse"), Some("amazon.nova-micro-v1:0")),
        3
    );
}
