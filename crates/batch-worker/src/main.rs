//! The batch-worker Lambda: an SQS event source mapping with ReportBatchItemFailures.

use batch_worker::{Worker, WorkerOptions};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = WorkerOptions::from_lookup(|k| std::env::var(k).ok())?;
    let worker = Worker::from_sdk(&boot.sdk, &boot.settings, options);
    let (worker, metrics) = (&worker, &boot.metrics);
    lambda_runtime::run(service_fn(move |event| worker.invoke(metrics, event))).await
}
