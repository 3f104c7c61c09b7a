//! Refused batch messages, in the jobs table under `QUARANTINE#{day}` (a partition no tenant
//! name can reach: tenant keys start `JOB#`), kept as long as job records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use quarry_core::jobs::Quarantined;
use quarry_core::ports::{Dependency, Quarantine, StoreError};

use super::{DynamoJobs, RETENTION, n, s};
use crate::sdk::describe;

const WHAT: &str = "batch quarantine";

fn day_of(at_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn unavailable(detail: String) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, detail)
}

#[async_trait]
impl Quarantine for DynamoJobs {
    async fn hold(&self, message: &Quarantined) -> Result<(), StoreError> {
        let record = serde_json::to_string(message)
            .map_err(|e| StoreError::invalid(Dependency::DynamoDb, WHAT, e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("QUARANTINE#{}", day_of(message.at_ms))))
            .item(
                "sk",
                s(&format!("{:013}#{}", message.at_ms, message.message_id)),
            )
            .item("record", s(&record))
            .item(
                "expires_at",
                n(message.at_ms / 1000 + RETENTION.as_secs() as i64),
            )
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(())
    }

    async fn held(&self, day: &str) -> Result<Vec<Quarantined>, StoreError> {
        crate::json_items::read_partition(
            &self.client,
            &self.table,
            &format!("QUARANTINE#{day}"),
            "record",
            WHAT,
        )
        .await
    }
}
