//! The usage ledger on DynamoDB (the usage table), with a durable spill.
//!
//! A request's only synchronous write is its marker: `REC#{sha256(tenant, id)}` / `REC`,
//! holding the record (`usage`, JSON), put with the condition that it is absent. So a
//! replayed record counts once, and no two requests write the same item: one tenant's
//! requests never queue behind each other on a hot key.
//!
//! The tenant's counters (per month `T#{tenant}#M#{month}`: `TOTAL`, `MODEL#...`,
//! `FEATURE#...`, `KEY#...`, `DAY#...`, `PROVISIONED#...`; per day `T#{tenant}#D#{date}`:
//! `TOTAL`, `MODEL#...`, `FEATURE#...`; per hour `T#{tenant}#H#{hour}`: `TOTAL`) are summed
//! from the markers by [`aggregate`], fed by the table's stream, and sharded ([`keys`]).
//! Money is integer micro-USD.
//!
//! A write that still fails after retries goes to the spill queue (SQS), which cost-alarm
//! replays: usage is never silently lost.

pub mod aggregate;
pub mod keys;
pub mod reader;
pub mod stream;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use quarry_core::ports::{Dependency, StoreError, UsageLedger};
use quarry_core::usage::UsageRecord;

pub use aggregate::{Aggregated, Aggregator, StreamItem};
pub use keys::{Buckets, COUNTER_SHARDS, day_pk, hour_pk, marker_pk, month_pk, shard_pk};
pub use reader::{LedgerReader, Totals};

use crate::sdk::describe;

/// Markers live longer than any replay can be late.
const MARKER_RETENTION_SECS: i64 = 45 * 24 * 3600;
const HOUR_RETENTION_SECS: i64 = 3 * 24 * 3600;

const WHAT: &str = "usage ledger";
const SPILL: &str = "ledger spill";

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The outcome of one write attempt.
enum Written {
    Counted,
    /// Already counted (a replay): nothing to do.
    Duplicate,
}

#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    sqs: aws_sdk_sqs::Client,
    spill_queue: String,
    retries: u32,
}

impl DynamoLedger {
    /// `spill_queue`: the spill queue's name or URL.
    pub fn new(sdk: &SdkConfig, table: &str, spill_queue: &str) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
            sqs: aws_sdk_sqs::Client::new(sdk),
            spill_queue: spill_queue.to_owned(),
            retries: 3,
        }
    }

    /// The aggregation over this ledger's table.
    pub fn aggregator(&self) -> Aggregator {
        Aggregator::new(self.client.clone(), &self.table)
    }

    async fn write(&self, r: &UsageRecord) -> Result<Written, StoreError> {
        let usage = serde_json::to_string(r)
            .map_err(|e| StoreError::invalid(Dependency::DynamoDb, WHAT, e.to_string()))?;
        let mut marker = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&marker_pk(&r.tenant, &r.id)))
            .item("sk", s(keys::MARKER_SK))
            .item("tenant", s(&r.tenant))
            .item("model", s(&r.model))
            .item("usage", s(&usage))
            .item("expires_at", n(r.at_ms / 1000 + MARKER_RETENTION_SECS))
            .condition_expression("attribute_not_exists(pk)");
        // Where the call was served, for residency audits.
        if let Some(region) = &r.region {
            marker = marker.item("region", s(region));
        }
        // The prompt version, for feedback on the request.
        if let Some(prompt) = &r.prompt {
            marker = marker.item("prompt", s(prompt));
        }
        match marker.send().await {
            Ok(_) => Ok(Written::Counted),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Written::Duplicate)
            }
            Err(e) => Err(StoreError::unavailable(
                Dependency::DynamoDb,
                WHAT,
                describe(&e),
            )),
        }
    }

    /// Writes with retries, without the spill (what the replay uses). Ok(false): the record
    /// was counted before.
    pub async fn record_direct(&self, r: &UsageRecord) -> Result<bool, StoreError> {
        let mut last = None;
        for attempt in 0..self.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            match self.write(r).await {
                Ok(Written::Counted) => return Ok(true),
                Ok(Written::Duplicate) => return Ok(false),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::unavailable(Dependency::DynamoDb, WHAT, "no attempt")))
    }

    async fn spill(&self, r: &UsageRecord) -> Result<(), StoreError> {
        let url = crate::queues::queue_url(&self.sqs, &self.spill_queue)
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
        let body = serde_json::to_string(r)
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, describe(&e)))?;
        Ok(())
    }

    /// Replays spilled records into the ledger; returns (counted, duplicates, left).
    pub async fn replay_spill(
        &self,
        max_batches: usize,
    ) -> Result<(usize, usize, usize), StoreError> {
        let url = crate::queues::queue_url(&self.sqs, &self.spill_queue)
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
        let (mut counted, mut duplicates, mut left) = (0, 0, 0);
        for _ in 0..max_batches {
            let messages = crate::queues::receive_spilled(&self.sqs, &url)
                .await
                .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
            if messages.is_empty() {
                break;
            }
            for m in &messages {
                let Some(record) = m
                    .body()
                    .and_then(|b| serde_json::from_str::<UsageRecord>(b).ok())
                else {
                    // Not a record: the queue's DLQ takes it after maxReceiveCount.
                    tracing::error!(message_id = ?m.message_id(), "unreadable message in the ledger spill");
                    left += 1;
                    continue;
                };
                match self.record_direct(&record).await {
                    Ok(true) => counted += 1,
                    Ok(false) => duplicates += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, id = %record.id, "spilled record not replayed yet");
                        left += 1;
                        continue;
                    }
                }
                crate::queues::delete_replayed(&self.sqs, &url, m).await;
            }
        }
        Ok((counted, duplicates, left))
    }
}

#[async_trait]
impl UsageLedger for DynamoLedger {
    async fn record(&self, r: &UsageRecord) -> Result<(), StoreError> {
        match self.record_direct(r).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, id = %r.id, "ledger write failed; spilling the record");
                metrics::counter!("LedgerSpills").increment(1);
                self.spill(r).await.map_err(|spill| {
                    StoreError::unavailable(
                        Dependency::DynamoDb,
                        WHAT,
                        format!("{e}; and the spill failed: {spill}"),
                    )
                })
            }
        }
    }
}
