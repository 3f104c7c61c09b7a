//! The cache-lookup Lambda.

use std::sync::Arc;

use quarry_aws::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    quarry_http::init_tracing();
    let options = cache_lookup::CacheOptions::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = quarry_aws::sdk::load().await;
    let state = cache_lookup::CacheState::from_sdk(&sdk, &Settings::from_env(), options);
    lambda_http::run(cache_lookup::app(Arc::new(state))).await
}
