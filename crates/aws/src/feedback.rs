//! Feedback on DynamoDB, in the usage table:
//! - a request's facts are its ledger marker (`REC#{sha256(tenant, id)}`, written when the
//!   request was charged), which is scoped to the tenant by construction: another tenant's
//!   request ID finds nothing;
//! - a rating is `pk = FB#{prompt}`, `sk = {tenant}#{sha256(tenant, id)}`: one per
//!   request (a second replaces the first), and one Query reads a prompt's ratings for the
//!   report. Ratings are rare next to requests, so the prompt's partition is not hot.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use quarry_core::feedback::{Feedback, RequestFacts};
use quarry_core::ports::{Dependency, FeedbackStore, StoreError};

use crate::ledger::marker_pk;
use crate::sdk::describe;

const WHAT: &str = "feedback";

#[derive(Clone, Debug)]
pub struct DynamoFeedback {
    client: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, e.to_string())
}

impl DynamoFeedback {
    pub fn new(sdk: &SdkConfig, usage_table: &str) -> Self {
        Self {
            client: Client::new(sdk),
            table: usage_table.to_owned(),
        }
    }
}

#[async_trait]
impl FeedbackStore for DynamoFeedback {
    async fn request(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<RequestFacts>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&marker_pk(tenant, request_id)))
            .key("sk", s("REC"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fail(describe(&e)))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        // A marker past its expiry (DynamoDB deletes lazily) is no longer a request.
        let expired = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|t| t < chrono::Utc::now().timestamp());
        Ok(match (text("tenant"), text("model")) {
            (Some(tenant), Some(model)) if !expired => Some(RequestFacts {
                tenant,
                model,
                prompt: text("prompt"),
            }),
            _ => None,
        })
    }

    async fn put(&self, f: &Feedback) -> Result<(), StoreError> {
        let item =
            serde_json::to_string(f).map_err(|e| fail(format!("cannot encode a rating: {e}")))?;
        let sk = format!("{}#{}", f.tenant, marker_pk(&f.tenant, &f.request_id));
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("FB#{}", f.prompt)))
            .item("sk", s(&sk))
            .item("feedback", s(&item))
            .send()
            .await
            .map_err(|e| fail(describe(&e)))?;
        Ok(())
    }

    async fn list(&self, prompt: &str) -> Result<Vec<Feedback>, StoreError> {
        crate::json_items::read_partition(
            &self.client,
            &self.table,
            &format!("FB#{prompt}"),
            "feedback",
            WHAT,
        )
        .await
    }
}
