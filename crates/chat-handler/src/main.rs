//! The chat-handler Lambda: state built once, the router handed to lambda_http, buffered
//! behind API Gateway or streamed on a Function URL (`QUARRY_RESPONSE_STREAMING=true`).
//!
//! Traces are flushed at the end of each invocation (lambda_runtime's OpenTelemetry layer),
//! before Lambda may freeze the process with spans still in the batch. The layer's own
//! invocation span is not exported (`quarry_aws::traces` exports Quarry's spans only): the
//! request's span joins Lambda's X-Ray trace from its header instead, where an invocation
//! span would start a second trace for every invocation.

use std::sync::Arc;

use lambda_runtime::layers::{OpenTelemetryLayer, TracingLayer};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = chat_handler::Options::from_lookup(|k| std::env::var(k).ok())?;
    let stream_only = options.stream_only;
    let app = chat_handler::app(Arc::new(chat_handler::AppState::from_bootstrap(
        &boot, options,
    )));
    let flush = OpenTelemetryLayer::new(quarry_aws::traces::flush);
    if stream_only {
        lambda_http::streaming_runtime(app)
            .layer(TracingLayer::new())
            .layer(flush)
            .run()
            .await
    } else {
        // What lambda_http::run builds, with the flush.
        lambda_runtime::Runtime::new(lambda_http::Adapter::from(app))
            .layer(TracingLayer::new())
            .layer(flush)
            .run()
            .await
    }
}
