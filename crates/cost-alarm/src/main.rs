//! The cost-alarm Lambda: EventBridge schedule and SNS (CloudWatch alarm) triggers.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::Settings;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_http::init_tracing();
    let settings = Settings::from_env();
    let flush = quarry_http::init_metrics(&settings.stage);
    let sdk = quarry_aws::sdk::load().await;
    let alarm = cost_alarm::CostAlarm::from_sdk(&sdk, &settings);
    let alarm = &alarm;
    let flush = &flush;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let summary = alarm.handle(&event.payload, chrono::Utc::now()).await;
        if let Some(f) = flush {
            f();
        }
        Ok::<Value, Error>(serde_json::to_value(summary)?)
    }))
    .await
}
