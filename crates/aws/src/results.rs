//! The optional results queue: one message per finished item and one per finished job.
//! Its URL comes from configuration only, never from a message.

use async_trait::async_trait;
use aws_config::SdkConfig;
use quarry_core::ports::{Dependency, StoreError};

use crate::sdk::describe;
use quarry_core::ports::ResultsSink;

#[derive(Clone, Debug)]
pub struct SqsResults {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsResults {
    pub fn new(sdk: &SdkConfig, queue_url: &str) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(sdk),
            queue_url: queue_url.to_owned(),
        }
    }
}

#[async_trait]
impl ResultsSink for SqsResults {
    async fn send(&self, message: &serde_json::Value) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.to_string())
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, "results queue", describe(&e)))?;
        Ok(())
    }
}
