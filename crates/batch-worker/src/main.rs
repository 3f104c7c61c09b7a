//! The batch-worker Lambda: an SQS event source mapping with ReportBatchItemFailures.

use std::sync::Arc;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use batch_worker::{Worker, WorkerOptions};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_http::init_tracing();
    let options = WorkerOptions::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = quarry_aws::sdk::load().await;
    let worker = Arc::new(Worker::from_sdk(&sdk, &Settings::from_env(), options));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let deadline = tokio::time::Instant::now() + remaining;
            Ok::<SqsBatchResponse, Error>(worker.handle(event.payload, deadline).await)
        }
    }))
    .await
}
