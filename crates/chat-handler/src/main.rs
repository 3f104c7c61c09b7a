//! The chat-handler Lambda: state built once, the router handed to lambda_http, buffered
//! behind API Gateway or streamed on a Function URL (`QUARRY_RESPONSE_STREAMING=true`).

use std::sync::Arc;

use quarry_aws::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    quarry_http::init_tracing();
    let options = chat_handler::Options::from_lookup(|k| std::env::var(k).ok())?;
    let settings = Settings::from_env();
    let flush = quarry_http::init_metrics(&settings.stage);
    let sdk = quarry_aws::sdk::load().await;
    let mut state = chat_handler::AppState::from_sdk(&sdk, settings, options);
    state.flush_metrics = flush;
    let app = chat_handler::app(Arc::new(state));
    if std::env::var("QUARRY_RESPONSE_STREAMING").is_ok_and(|v| v == "true") {
        lambda_http::run_with_streaming_response(app).await
    } else {
        lambda_http::run(app).await
    }
}
