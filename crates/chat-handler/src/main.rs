//! The chat-handler Lambda: state built once, the router handed to lambda_http, buffered
//! behind API Gateway or streamed on a Function URL (`QUARRY_RESPONSE_STREAMING=true`).

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = chat_handler::Options::from_lookup(|k| std::env::var(k).ok())?;
    let stream_only = options.stream_only;
    let app = chat_handler::app(Arc::new(chat_handler::AppState::from_bootstrap(
        &boot, options,
    )));
    if stream_only {
        lambda_http::run_with_streaming_response(app).await
    } else {
        lambda_http::run(app).await
    }
}
