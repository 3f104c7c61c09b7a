//! cache-lookup: the response cache's own API (lookup without a model call, purge, stats).
//! It holds no Bedrock permission.

use axum::Router;

/// The cache API's routes.
pub fn app() -> Router {
    Router::new()
}
