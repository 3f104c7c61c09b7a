//! The ledger-aggregator Lambda: the usage table's stream (marker inserts) into counters.

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let aggregator = quarry_aws::ports_from_sdk(&boot.sdk, &boot.settings)
        .ledger()
        .aggregator();
    let (aggregator, metrics) = (&aggregator, &boot.metrics);
    lambda_runtime::run(service_fn(move |event| {
        ledger_aggregator::invoke(aggregator, metrics, event)
    }))
    .await
}
