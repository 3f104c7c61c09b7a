//! Notifications through SNS (the alerts topic).

use async_trait::async_trait;
use aws_config::SdkConfig;
use quarry_core::ports::{Dependency, Notifier, StoreError};

use crate::sdk::describe;

#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    /// Topic ARN, or a name resolved by creating (idempotently) the topic.
    topic: String,
}

impl SnsNotifier {
    pub fn new(sdk: &SdkConfig, topic: &str) -> Self {
        Self {
            client: aws_sdk_sns::Client::new(sdk),
            topic: topic.to_owned(),
        }
    }

    async fn arn(&self) -> Result<String, StoreError> {
        if self.topic.starts_with("arn:") {
            return Ok(self.topic.clone());
        }
        // CreateTopic is idempotent and returns the ARN of an existing topic.
        let out = self
            .client
            .create_topic()
            .name(&self.topic)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sns, "alerts topic", describe(&e)))?;
        Ok(out.topic_arn().unwrap_or_default().to_owned())
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn notify(&self, subject: &str, message: &serde_json::Value) -> Result<(), StoreError> {
        let arn = self.arn().await?;
        // SNS subjects are at most 100 ASCII characters.
        let subject: String = subject.chars().filter(char::is_ascii).take(100).collect();
        self.client
            .publish()
            .topic_arn(arn)
            .subject(subject)
            .message(message.to_string())
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sns, "alerts topic", describe(&e)))?;
        Ok(())
    }
}
