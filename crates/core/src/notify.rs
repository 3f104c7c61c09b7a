//! The notification port: messages for people (budget thresholds, runaway spend).

use async_trait::async_trait;

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, subject: &str, message: &serde_json::Value) -> Result<(), String>;
}
