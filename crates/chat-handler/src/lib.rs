//! chat-handler: the synchronous chat API. The same axum Router runs behind API Gateway
//! (through lambda_http), on a Function URL with response streaming, and on 127.0.0.1
//! under `quarry dev`.
//!
//! ## Overview
//!
//! - [`routes`]: the handlers, one module per API (native, OpenAI, models, batches) and the
//!   chat flow the two chat APIs share;
//! - [`stream`]: streamed answers as Server-Sent Events (a fold of the service's events);
//! - [`idempotency`]: `Idempotency-Key`, replaying a retried request's first response;
//! - [`observe`]: the request's log line and metrics;
//! - [`state`]: what a warm instance holds.

pub mod idempotency;
pub mod observe;
pub mod routes;
pub mod state;
pub mod stream;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use http::Method;
use quarry_http::routes::{Route, router};

use crate::routes::anthropic::Anthropic;
use crate::routes::chat::chat;
use crate::routes::native::Native;
use crate::routes::openai::OpenAi;

pub use state::{AppState, HandlerPorts, Options};

/// Every route of the chat API. template.yaml declares exactly these (a test checks it).
pub fn routes() -> Vec<Route<Arc<AppState>>> {
    vec![
        (Method::POST, "/v1/chat", post(chat::<Native>)),
        (Method::POST, "/v1/chat/completions", post(chat::<OpenAi>)),
        (
            Method::POST,
            "/v1/messages",
            post(chat::<Anthropic>)
                .layer(axum::middleware::from_fn(routes::anthropic::reshape_errors)),
        ),
        (
            Method::POST,
            "/v1/messages/count_tokens",
            post(routes::anthropic::count_tokens)
                .layer(axum::middleware::from_fn(routes::anthropic::reshape_errors)),
        ),
        (
            Method::POST,
            "/v1/embeddings",
            post(routes::embeddings::openai),
        ),
        (Method::POST, "/v1/embed", post(routes::embeddings::native)),
        (Method::GET, "/v1/models", get(routes::models::handler)),
        (
            Method::GET,
            "/v1/batches/{job_id}",
            get(routes::batches::handler),
        ),
        (
            Method::POST,
            "/v1/feedback",
            post(routes::feedback::handler),
        ),
    ]
}

/// The routes the streaming Function URL serves: the chat routes.
const STREAMED_ROUTES: [&str; 3] = ["/v1/chat", "/v1/chat/completions", "/v1/messages"];

/// The chat API's router (on the streaming Function URL, its two chat routes only).
pub fn app(state: Arc<AppState>) -> Router {
    let mut routes = routes();
    if state.options.stream_only {
        routes.retain(|(method, path, _)| method == Method::POST && STREAMED_ROUTES.contains(path));
    }
    router(routes)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::log_refusals,
        ))
        .with_state(state)
}
