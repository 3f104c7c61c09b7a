//! The optional results queue: one message per finished item and one per finished job.
//! Its URL comes from configuration only, never from a message.

use async_trait::async_trait;
use aws_config::SdkConfig;
use quarry_core::ports::{Dependency, StoreError};

use crate::sdk::describe;
use quarry_core::ports::ResultsSink;

/// A queue that takes JSON messages: the results queue, or the batch queue itself (bulk
/// items that run online after all are sent back to it).
#[derive(Debug)]
pub struct SqsResults {
    client: aws_sdk_sqs::Client,
    /// A URL, or a queue name resolved on first use (no I/O at init).
    queue: String,
    url: tokio::sync::OnceCell<String>,
    what: &'static str,
}

impl SqsResults {
    pub fn new(sdk: &SdkConfig, queue_url: &str) -> Self {
        Self::named(sdk, queue_url, "results queue")
    }

    /// `queue`: a name or URL; `what` names it in errors.
    pub fn named(sdk: &SdkConfig, queue: &str, what: &'static str) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(sdk),
            queue: queue.to_owned(),
            url: tokio::sync::OnceCell::new(),
            what,
        }
    }
}

#[async_trait]
impl ResultsSink for SqsResults {
    async fn send(&self, message: &serde_json::Value) -> Result<(), StoreError> {
        let url = self
            .url
            .get_or_try_init(|| crate::queues::queue_url(&self.client, &self.queue))
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, self.what, e.to_string()))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(message.to_string())
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, self.what, describe(&e)))?;
        Ok(())
    }
}
