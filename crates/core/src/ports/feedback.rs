//! The feedback store's port.

use async_trait::async_trait;

use super::StoreError;
use crate::feedback::{Feedback, RequestFacts};

/// Ratings of answers, and the facts of the requests they rate.
#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// What the ledger knows of `tenant`'s request `request_id`; `None` when the tenant
    /// made no such request (or its record has expired).
    async fn request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<RequestFacts>, StoreError>;
    /// Stores a rating; a later rating of the same request replaces it.
    async fn put(&self, feedback: &Feedback) -> Result<(), StoreError>;
    /// Every rating of a prompt's versions (`-`: requests without a prompt).
    async fn list(&self, prompt: &str) -> Result<Vec<Feedback>, StoreError>;
}
