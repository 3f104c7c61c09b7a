//! chat-handler: the synchronous chat API. The same axum Router runs behind API Gateway
//! (through lambda_http), on a Function URL with response streaming, and on 127.0.0.1
//! under `quarry dev`.

pub mod observe;
pub mod openai;
pub mod routes;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use state::{AppState, HandlerPorts, Options};

/// Every route of the chat API.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat", post(routes::native))
        .route("/v1/chat/completions", post(routes::completions))
        .route("/v1/models", get(routes::models))
        .route("/v1/batches/{job_id}", get(routes::batch_status))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(routes::not_found)
        .with_state(state)
}
