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
use http::Method;
use quarry_http::routes::{Route, router};

pub use state::{AppState, HandlerPorts, Options};

/// Every route of the chat API. template.yaml declares exactly these (a test checks it).
pub fn routes() -> Vec<Route<Arc<AppState>>> {
    vec![
        (Method::POST, "/v1/chat", post(routes::native)),
        (
            Method::POST,
            "/v1/chat/completions",
            post(routes::completions),
        ),
        (Method::GET, "/v1/models", get(routes::models)),
        (
            Method::GET,
            "/v1/batches/{job_id}",
            get(routes::batch_status),
        ),
    ]
}

/// The chat API's router.
pub fn app(state: Arc<AppState>) -> Router {
    router(routes())
        .fallback(routes::not_found)
        .with_state(state)
}
