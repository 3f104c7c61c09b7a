//! HTTP plumbing shared by the API Lambdas (chat-handler, cache-lookup): who is calling,
//! the error envelope, JSON bodies that name the field at fault, request IDs and deadlines,
//! and the wire types of each API. The same code runs behind API Gateway (through
//! lambda_http) and under `quarry dev`.
//!
//! Handlers take [`extract`]'s extractors, whose rejection is the envelope ([`error`]), so
//! they only ever see a known caller and a bounded JSON body; the router ([`routes`]) gives
//! its own 404 and 405 the same envelope.

pub mod auth;
pub mod batches;
pub mod body;
pub mod context;
pub mod error;
pub mod extract;
pub mod native;
pub mod openai;
pub mod routes;

pub use auth::{AuthMode, Credential, authenticate};
pub use body::parse_json;
pub use context::{RequestId, RequestMeta, Timing};
pub use error::{ApiError, Envelope, Refused, Rejection};
pub use extract::{AcceptOptions, ApiState, Caller, JsonBody, WithEnvelope};

/// JSON logs on stderr (what CloudWatch and the Lambda JSON log format expect), filtered by
/// `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
}

/// Flushes the metrics collected since the last flush.
pub type MetricsFlush = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Installs the CloudWatch EMF recorder (namespace `Quarry`, dimension `Stage`); the
/// returned function writes what was collected to stdout as EMF documents, which CloudWatch
/// Logs turns into metrics. Call it at the end of each request or invocation.
pub fn init_metrics(stage: &str) -> Option<MetricsFlush> {
    match metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("Quarry")
        .with_dimension("Stage", stage.to_owned())
        .init()
    {
        Ok(collector) => Some(std::sync::Arc::new(move || {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            if let Err(e) = collector.flush(&mut lock) {
                tracing::warn!(error = %e, "metrics flush failed");
            }
        })),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}
