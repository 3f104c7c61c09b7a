//! The usage ledger on DynamoDB (the usage table), with a durable spill.
//!
//! Each usage record is one transaction: a marker item (`REC#{sha256(tenant, id)}`,
//! condition: absent) and ADDs to the tenant's counters: per month (`T#{tenant}#M#{month}`: `TOTAL`, `MODEL#...`,
//! `FEATURE#...`, `KEY#...` (the caller's key label), `DAY#...`), per day (`T#{tenant}#D#{date}`: `TOTAL`, `MODEL#...`,
//! `FEATURE#...`) and per hour (`T#{tenant}#H#{hour}`: `TOTAL`, for runaway detection).
//! The marker makes a replayed record count once. Money is integer micro-USD.
//!
//! A write that still fails after retries goes to the spill queue (SQS), which cost-alarm
//! replays: usage is never silently lost.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use quarry_core::ports::{Dependency, StoreError, UsageLedger};
use quarry_core::usage::UsageRecord;

use crate::sdk::describe;

/// Markers live longer than any replay can be late.
const MARKER_RETENTION_SECS: i64 = 45 * 24 * 3600;
const HOUR_RETENTION_SECS: i64 = 3 * 24 * 3600;

/// Time buckets of a record.
pub struct Buckets {
    pub month: String,
    pub day: String,
    pub hour: String,
}

impl Buckets {
    pub fn of(at_ms: i64) -> Self {
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
        Self {
            month: t.format("%Y-%m").to_string(),
            day: t.format("%Y-%m-%d").to_string(),
            hour: t.format("%Y-%m-%dT%H").to_string(),
        }
    }
}

/// The marker that makes a record count once: scoped to the tenant and hashed, so no ID
/// (whatever its length or characters) can reach another tenant's marker or DynamoDB's key
/// limits.
pub fn marker_pk(tenant: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    format!("REC#{}", hex::encode(h.finalize()))
}

pub fn month_pk(tenant: &str, month: &str) -> String {
    format!("T#{tenant}#M#{month}")
}

pub fn day_pk(tenant: &str, day: &str) -> String {
    format!("T#{tenant}#D#{day}")
}

pub fn hour_pk(tenant: &str, hour: &str) -> String {
    format!("T#{tenant}#H#{hour}")
}

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

    fn counter(
        &self,
        pk: &str,
        sk: &str,
        r: &UsageRecord,
        expires_at: Option<i64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let u = &r.usage;
        let mut expr = String::from(
            "ADD requests :one, input_tokens :in, output_tokens :out, cache_read_tokens :cr, cache_write_tokens :cw, cost_micro :cost",
        );
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":in", n(u.input as i64))
            .expression_attribute_values(":out", n(u.output as i64))
            .expression_attribute_values(":cr", n(u.cache_read as i64))
            .expression_attribute_values(":cw", n(u.cache_write as i64))
            .expression_attribute_values(":cost", n(r.cost.map_or(0, |c| c.0 as i64)));
        if r.cached {
            expr.push_str(", cached_requests :one");
        }
        if r.cost.is_none() {
            expr.push_str(", unpriced_requests :one");
        }
        if r.estimated {
            expr.push_str(", estimated_requests :one");
        }
        if let Some(t) = expires_at {
            expr.push_str(" SET expires_at = :exp");
            update = update.expression_attribute_values(":exp", n(t));
        }
        let update = update
            .update_expression(expr)
            .build()
            .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn write(&self, r: &UsageRecord) -> Result<Written, StoreError> {
        let b = Buckets::of(r.at_ms);
        let now = r.at_ms / 1000;
        let mut marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&marker_pk(&r.tenant, &r.id)))
            .item("sk", s("REC"))
            .item("tenant", s(&r.tenant))
            .item("model", s(&r.model))
            .item("expires_at", n(now + MARKER_RETENTION_SECS))
            .condition_expression("attribute_not_exists(pk)");
        // Where the call was served, for residency audits.
        if let Some(region) = &r.region {
            marker = marker.item("region", s(region));
        }
        // The prompt version, for feedback on the request.
        if let Some(prompt) = &r.prompt {
            marker = marker.item("prompt", s(prompt));
        }
        let marker = marker
            .build()
            .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
        let month = month_pk(&r.tenant, &b.month);
        let day = day_pk(&r.tenant, &b.day);
        let model = format!("MODEL#{}", r.model);
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(self.counter(&month, "TOTAL", r, None)?)
            .transact_items(self.counter(&month, &model, r, None)?)
            .transact_items(self.counter(&month, &format!("DAY#{}", b.day), r, None)?)
            .transact_items(self.counter(&day, "TOTAL", r, None)?)
            .transact_items(self.counter(&day, &model, r, None)?)
            .transact_items(self.counter(
                &hour_pk(&r.tenant, &b.hour),
                "TOTAL",
                r,
                Some(now + HOUR_RETENTION_SECS),
            )?);
        if let Some(f) = &r.feature {
            let feature = format!("FEATURE#{f}");
            tx = tx
                .transact_items(self.counter(&month, &feature, r, None)?)
                .transact_items(self.counter(&day, &feature, r, None)?);
        }
        if let Some(k) = &r.key {
            tx = tx.transact_items(self.counter(&month, &format!("KEY#{k}"), r, None)?);
        }
        // Tokens a provisioned model served: its utilisation against its capacity.
        if let Some(p) = &r.provisioned {
            tx = tx.transact_items(self.counter(&month, &format!("PROVISIONED#{p}"), r, None)?);
        }
        match tx.send().await {
            Ok(_) => Ok(Written::Counted),
            Err(e) => {
                let duplicate = e.as_service_error().is_some_and(|s| match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c
                        .cancellation_reasons()
                        .first()
                        .is_some_and(|r| r.code() == Some("ConditionalCheckFailed")),
                    _ => false,
                });
                if duplicate {
                    Ok(Written::Duplicate)
                } else {
                    Err(StoreError::unavailable(
                        Dependency::DynamoDb,
                        WHAT,
                        describe(&e),
                    ))
                }
            }
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

/// Counters of one ledger item.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub cached_requests: u64,
    pub unpriced_requests: u64,
    /// Calls charged on estimated tokens (cut off before Bedrock reported usage).
    pub estimated_requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_micro: u64,
}

impl Totals {
    /// What is left of these totals once `part` is taken out (never below zero).
    pub fn minus(&self, part: &Totals) -> Totals {
        Totals {
            requests: self.requests.saturating_sub(part.requests),
            cached_requests: self.cached_requests.saturating_sub(part.cached_requests),
            unpriced_requests: self
                .unpriced_requests
                .saturating_sub(part.unpriced_requests),
            estimated_requests: self
                .estimated_requests
                .saturating_sub(part.estimated_requests),
            input_tokens: self.input_tokens.saturating_sub(part.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(part.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_sub(part.cache_read_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_sub(part.cache_write_tokens),
            cost_micro: self.cost_micro.saturating_sub(part.cost_micro),
        }
    }

    fn from_item(item: &std::collections::HashMap<String, AttributeValue>) -> Self {
        let g = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self {
            requests: g("requests"),
            cached_requests: g("cached_requests"),
            unpriced_requests: g("unpriced_requests"),
            estimated_requests: g("estimated_requests"),
            input_tokens: g("input_tokens"),
            output_tokens: g("output_tokens"),
            cache_read_tokens: g("cache_read_tokens"),
            cache_write_tokens: g("cache_write_tokens"),
            cost_micro: g("cost_micro"),
        }
    }
}

/// Reading the ledger (cost-alarm, `quarry cost report`).
#[derive(Clone, Debug)]
pub struct LedgerReader {
    client: Client,
    table: String,
}

impl LedgerReader {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
        }
    }

    pub async fn get(&self, pk: &str, sk: &str) -> Result<Totals, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
        Ok(out.item().map(Totals::from_item).unwrap_or_default())
    }

    /// Every tenant with a month total in the ledger, whether or not the directory still
    /// knows it (a removed tenant, `eval`): what a report must include to equal the bill.
    /// A scan of the month totals: for reports, not for the request path.
    pub async fn tenants_in(&self, month: &str) -> Result<Vec<String>, StoreError> {
        let suffix = format!("#M#{month}");
        let mut tenants = std::collections::BTreeSet::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :total AND begins_with(pk, :t)")
            .expression_attribute_values(":total", s("TOTAL"))
            .expression_attribute_values(":t", s("T#"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
            for item in page.items() {
                if let Some(tenant) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix("T#"))
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                {
                    tenants.insert(tenant.to_owned());
                }
            }
        }
        Ok(tenants.into_iter().collect())
    }

    /// Every counter of a partition whose sort key starts with `prefix`: (rest of the key, totals).
    pub async fn list(&self, pk: &str, prefix: &str) -> Result<Vec<(String, Totals)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":p", s(prefix))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
            for item in page.items() {
                if let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) {
                    out.push((
                        sk.trim_start_matches(prefix).to_owned(),
                        Totals::from_item(item),
                    ));
                }
            }
        }
        Ok(out)
    }
}
