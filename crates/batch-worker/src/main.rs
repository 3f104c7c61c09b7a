//! The batch-worker Lambda: an SQS event source mapping with ReportBatchItemFailures.
//! Traces (its model calls' spans) are flushed at the end of each invocation, before Lambda
//! may freeze the process.

use batch_worker::{Worker, WorkerOptions};
use lambda_runtime::layers::{OpenTelemetryLayer, TracingLayer};
use lambda_runtime::{Error, Runtime, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = WorkerOptions::from_lookup(|k| std::env::var(k).ok())?;
    let worker = Worker::from_sdk(&boot.sdk, &boot.settings, options);
    let (worker, metrics) = (&worker, &boot.metrics);
    // What lambda_runtime::run builds, with the flush.
    Runtime::new(service_fn(move |event| worker.invoke(metrics, event)))
        .layer(TracingLayer::new())
        .layer(OpenTelemetryLayer::new(quarry_aws::traces::flush))
        .run()
        .await
}
