//! HTTP plumbing shared by the API Lambdas (chat-handler, cache-lookup): who is calling,
//! the error envelope, JSON bodies that name the field at fault, request IDs and deadlines.
//! The same code runs behind API Gateway (through lambda_http) and under `quarry dev`.

pub mod auth;
pub mod body;
pub mod context;
pub mod error;

pub use auth::{AuthMode, authenticate};
pub use body::parse_json;
pub use context::RequestMeta;
pub use error::ApiError;

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
