//! The cache-lookup Lambda.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let options = cache_lookup::CacheOptions::from_lookup(|k| std::env::var(k).ok())?;
    let state = cache_lookup::CacheState::from_bootstrap(&boot, options);
    lambda_http::run(cache_lookup::app(Arc::new(state))).await
}
