//! The cache-lookup Lambda. Traces (a lookup's guardrail spans) are flushed at the end of
//! each invocation, before Lambda may freeze the process.

use std::sync::Arc;

use lambda_runtime::layers::{OpenTelemetryLayer, TracingLayer};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = cache_lookup::CacheOptions::from_lookup(|k| std::env::var(k).ok())?;
    let state = cache_lookup::CacheState::from_bootstrap(&boot, options);
    // What lambda_http::run builds, with the flush.
    lambda_runtime::Runtime::new(lambda_http::Adapter::from(cache_lookup::app(Arc::new(
        state,
    ))))
    .layer(TracingLayer::new())
    .layer(OpenTelemetryLayer::new(quarry_aws::traces::flush))
    .run()
    .await
}
