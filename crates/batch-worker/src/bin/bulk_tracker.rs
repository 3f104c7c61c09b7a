//! The bulk-tracker Lambda: on a schedule, takes every open bulk job one step further
//! (submission, status, results). Its answer is what the run did.

use std::time::SystemTime;

use batch_worker::bulk::{Tracker, TrackerOptions};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let get = |k: &str| std::env::var(k).ok();
    let options = TrackerOptions::from_settings(&boot.settings, get)?;
    let results = get("QUARRY_RESULTS_QUEUE_URL").filter(|v| !v.is_empty());
    let tracker = Tracker::from_sdk(&boot.sdk, &boot.settings, options, results.as_deref());
    let (tracker, metrics) = (&tracker, &boot.metrics);
    // What lambda_runtime::run builds, with the traces flushed after each run.
    lambda_runtime::Runtime::new(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let run = tracker.run(Instant::now() + remaining).await;
            metrics.flush();
            Ok::<_, Error>(serde_json::to_value(run)?)
        },
    ))
    .layer(lambda_runtime::layers::TracingLayer::new())
    .layer(lambda_runtime::layers::OpenTelemetryLayer::new(
        quarry_aws::traces::flush,
    ))
    .run()
    .await
}
