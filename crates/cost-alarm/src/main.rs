//! The cost-alarm Lambda: EventBridge schedule and SNS (CloudWatch alarm) triggers.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_http::init_tracing();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let summary = cost_alarm::handle(&event.payload).await;
        Ok::<Value, Error>(serde_json::to_value(summary)?)
    }))
    .await
}
