//! The cache-lookup Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    quarry_http::init_tracing();
    lambda_http::run(cache_lookup::app()).await
}
