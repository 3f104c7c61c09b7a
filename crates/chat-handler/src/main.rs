//! The chat-handler Lambda: state built once, the router handed to lambda_http.

use std::sync::Arc;

use quarry_aws::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    quarry_http::init_tracing();
    let options = chat_handler::Options::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = quarry_aws::sdk::load().await;
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &sdk,
        Settings::from_env(),
        options,
    ));
    lambda_http::run(chat_handler::app(state)).await
}
