//! The cost-alarm Lambda: EventBridge schedule and SNS (CloudWatch alarm) triggers.

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot = quarry_aws::bootstrap::init().await;
    let alarm = cost_alarm::CostAlarm::from_sdk(&boot.sdk, &boot.settings);
    let (alarm, metrics) = (&alarm, &boot.metrics);
    lambda_runtime::run(service_fn(move |event| alarm.invoke(metrics, event))).await
}
