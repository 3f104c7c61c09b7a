//! Aggregation: markers (one per answered request) folded into the tenant's counters.
//!
//! The request path writes only its marker (a conditional put on an item of its own). The
//! table's stream hands the markers to this aggregation in batches; each transaction:
//!
//! * marks every marker it counts (`SET counted`, condition: the marker has usage and is not
//!   counted yet), and
//! * ADDs the records' sum once to each counter they touch, on one shard of each.
//!
//! Counting and marking commit together, so a record is counted exactly once whatever the
//! stream does: a batch delivered twice, batches out of order, a batch split differently on a
//! retry, or an aggregation that dies between two transactions. A transaction cancelled
//! because a marker was already counted is sent again without it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use quarry_core::ports::{Dependency, StoreError};
use quarry_core::usage::UsageRecord;

use super::keys::{
    Buckets, COUNTER_SHARDS, MARKER_SK, day_pk, hour_pk, marker_pk, month_pk, shard_pk,
};
use super::reader::Totals;
use super::{HOUR_RETENTION_SECS, WHAT, n, s};
use crate::sdk::describe;

/// DynamoDB's limit of items in one transaction.
const MAX_TX_ITEMS: usize = 100;
/// Counters written only when non-zero.
const OPTIONAL: [&str; 3] = ["cached_requests", "unpriced_requests", "estimated_requests"];
/// Attempts per transaction (conflicts, throttling) before its records are reported failed.
const ATTEMPTS: u32 = 8;

/// One change from the table's stream, as the aggregation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamItem {
    /// The change's sequence number: what a failure is reported by.
    pub sequence: String,
    /// An INSERT (the only changes that carry a new marker).
    pub insert: bool,
    /// The item's partition key.
    pub pk: Option<String>,
    /// The marker's `usage` attribute (the record as JSON).
    pub usage: Option<String>,
}

/// What one aggregation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregated {
    /// Records counted by this aggregation.
    pub counted: usize,
    /// Records already counted before (a repeated or overlapping batch).
    pub already: usize,
    /// Changes that are not new markers (ignored).
    pub ignored: usize,
    /// Sequence numbers of the changes that could not be counted yet: the stream must
    /// deliver them again.
    pub failed: Vec<String>,
    /// When the oldest record this aggregation counted was answered (Unix ms): how far the
    /// counters lag the requests.
    pub oldest_counted_ms: Option<i64>,
}

/// A counter's key and the amount a set of records adds to it.
type Deltas = BTreeMap<(String, String), (Totals, Option<i64>)>;

/// The counters one record adds to: (logical pk, sk, expiry).
pub fn counters_of(r: &UsageRecord) -> Vec<(String, String, Option<i64>)> {
    let b = Buckets::of(r.at_ms);
    let month = month_pk(&r.tenant, &b.month);
    let day = day_pk(&r.tenant, &b.day);
    let model = format!("MODEL#{}", r.model);
    let mut out = vec![
        (month.clone(), "TOTAL".to_owned(), None),
        (month.clone(), model.clone(), None),
        (month.clone(), format!("DAY#{}", b.day), None),
        (day.clone(), "TOTAL".to_owned(), None),
        (day.clone(), model, None),
        (
            hour_pk(&r.tenant, &b.hour),
            "TOTAL".to_owned(),
            Some(r.at_ms / 1000 + HOUR_RETENTION_SECS),
        ),
    ];
    if let Some(f) = &r.feature {
        out.push((month.clone(), format!("FEATURE#{f}"), None));
        out.push((day, format!("FEATURE#{f}"), None));
    }
    if let Some(k) = &r.key {
        out.push((month.clone(), format!("KEY#{k}"), None));
    }
    // Tokens a provisioned model served: its utilisation against its capacity.
    if let Some(p) = &r.provisioned {
        out.push((month, format!("PROVISIONED#{p}"), None));
    }
    out
}

/// The sum of `records` per counter.
pub fn deltas<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> Deltas {
    let mut out = Deltas::new();
    for r in records {
        let t = Totals::of(r);
        for (pk, sk, exp) in counters_of(r) {
            let e = out.entry((pk, sk)).or_default();
            e.0 = e.0.plus(&t);
            e.1 = e.1.max(exp);
        }
    }
    out
}

/// A stream change read as a record to count: `None` for anything that is not a new marker
/// this design writes (a counter, a claim, a marker of the former design, which was counted
/// when it was written).
pub fn record_of(item: &StreamItem) -> Option<UsageRecord> {
    if !item.insert {
        return None;
    }
    let pk = item.pk.as_deref()?;
    if !pk.starts_with("REC#") {
        return None;
    }
    let Some(record) = item
        .usage
        .as_deref()
        .and_then(|u| serde_json::from_str::<UsageRecord>(u).ok())
    else {
        if item.usage.is_some() {
            tracing::error!(sequence = %item.sequence, "marker with unreadable usage; not counted");
            metrics::counter!("LedgerMarkersUnreadable").increment(1);
        }
        return None;
    };
    // The marker's key is the record's own: nothing else can be counted under a tenant.
    (marker_pk(&record.tenant, &record.id) == pk).then_some(record)
}

/// Folds markers into counters.
#[derive(Clone, Debug)]
pub struct Aggregator {
    client: Client,
    table: String,
}

/// How one transaction ended.
enum Sent {
    Done,
    /// These records (indices) were counted before: send the rest again.
    Already(BTreeSet<usize>),
    /// Retry as is (a conflict with another aggregation, throttling).
    Retry(String),
    Fail(String),
}

impl Aggregator {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }

    /// Aggregates one batch of stream changes.
    pub async fn aggregate(&self, items: &[StreamItem]) -> Aggregated {
        let mut result = Aggregated::default();
        // A record delivered twice within the batch is one record.
        let mut seen = BTreeSet::new();
        let mut by_tenant: BTreeMap<String, Vec<(String, UsageRecord)>> = BTreeMap::new();
        for item in items {
            match record_of(item) {
                Some(r) => {
                    if seen.insert(marker_pk(&r.tenant, &r.id)) {
                        by_tenant
                            .entry(r.tenant.clone())
                            .or_default()
                            .push((item.sequence.clone(), r));
                    } else {
                        result.already += 1;
                    }
                }
                None => result.ignored += 1,
            }
        }
        for records in by_tenant.into_values() {
            for chunk in chunks(records) {
                self.count(chunk, &mut result).await;
            }
        }
        result
    }

    /// Counts the markers the stream never had counted (a batch it gave up on, records past
    /// its 24 hours): a scan of the markers not marked counted, answered before
    /// `before_ms`. For operators (`quarry cost recount`), never the request path.
    pub async fn recount(&self, before_ms: i64) -> Result<Aggregated, StoreError> {
        let mut total = Aggregated::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "sk = :rec AND attribute_exists(#u) AND attribute_not_exists(counted)",
            )
            .expression_attribute_names("#u", "usage")
            .expression_attribute_values(":rec", s(MARKER_SK))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))?;
            let text =
                |item: &std::collections::HashMap<
                    String,
                    aws_sdk_dynamodb::types::AttributeValue,
                >,
                 k: &str| { item.get(k).and_then(|v| v.as_s().ok()).cloned() };
            let items: Vec<StreamItem> = page
                .items()
                .iter()
                .map(|item| StreamItem {
                    sequence: text(item, "pk").unwrap_or_default(),
                    insert: true,
                    pk: text(item, "pk"),
                    usage: text(item, "usage"),
                })
                .filter(|i| record_of(i).is_some_and(|r| r.at_ms < before_ms))
                .collect();
            let done = self.aggregate(&items).await;
            total.counted += done.counted;
            total.already += done.already;
            total.failed.extend(done.failed);
        }
        Ok(total)
    }

    /// Counts one chunk (one transaction, retried), recording the outcome.
    async fn count(&self, mut chunk: Vec<(String, UsageRecord)>, result: &mut Aggregated) {
        let mut shard = shard_of(chunk.first().map_or("", |(seq, _)| seq.as_str()));
        let mut last_error = String::new();
        let mut attempt = 0;
        // A cancelled transaction names the markers already counted; sending again without
        // them always makes progress, so only conflicts and throttling use up attempts.
        while !chunk.is_empty() && attempt < ATTEMPTS {
            match self.send(&chunk, shard).await {
                Sent::Done => {
                    result.counted += chunk.len();
                    let oldest = chunk.iter().map(|(_, r)| r.at_ms).min();
                    result.oldest_counted_ms = match (result.oldest_counted_ms, oldest) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    return;
                }
                Sent::Already(done) => {
                    result.already += done.len();
                    let mut i = 0;
                    chunk.retain(|_| {
                        i += 1;
                        !done.contains(&(i - 1))
                    });
                }
                Sent::Retry(e) => {
                    last_error = e;
                    // Another shard: the conflicting aggregation is likely still on this one.
                    shard = (shard + 1) % COUNTER_SHARDS;
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                    attempt += 1;
                }
                Sent::Fail(e) => {
                    last_error = e;
                    break;
                }
            }
        }
        if chunk.is_empty() {
            return;
        }
        tracing::warn!(error = %last_error, records = chunk.len(), "ledger aggregation failed; the stream retries it");
        metrics::counter!("LedgerAggregationFailures").increment(1);
        result.failed.extend(chunk.into_iter().map(|(seq, _)| seq));
    }

    async fn send(&self, chunk: &[(String, UsageRecord)], shard: u32) -> Sent {
        let mut tx = self.client.transact_write_items();
        for (_, r) in chunk {
            let claim = Update::builder()
                .table_name(&self.table)
                .key("pk", s(&marker_pk(&r.tenant, &r.id)))
                .key("sk", s(MARKER_SK))
                .update_expression("SET counted = :yes")
                .condition_expression("attribute_exists(#u) AND attribute_not_exists(counted)")
                .expression_attribute_names("#u", "usage")
                .expression_attribute_values(":yes", n(1))
                .build();
            match claim {
                Ok(u) => tx = tx.transact_items(TransactWriteItem::builder().update(u).build()),
                Err(e) => return Sent::Fail(describe(&e)),
            }
        }
        for ((pk, sk), (totals, exp)) in deltas(chunk.iter().map(|(_, r)| r)) {
            match self.add(&shard_pk(&pk, shard), &sk, &totals, exp) {
                Ok(u) => tx = tx.transact_items(TransactWriteItem::builder().update(u).build()),
                Err(e) => return Sent::Fail(e.to_string()),
            }
        }
        match tx.send().await {
            Ok(_) => Sent::Done,
            Err(e) => outcome(&e, chunk.len()),
        }
    }

    /// One counter's update: ADD the sum, keep the latest expiry.
    fn add(
        &self,
        pk: &str,
        sk: &str,
        t: &Totals,
        expires_at: Option<i64>,
    ) -> Result<Update, StoreError> {
        let mut parts = Vec::new();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        for (i, (name, value)) in t.fields().into_iter().enumerate() {
            // Counts of the rarer kinds are written only when there is one (as they always were).
            if value == 0 && OPTIONAL.contains(&name) {
                continue;
            }
            parts.push(format!("{name} :v{i}"));
            update = update.expression_attribute_values(
                format!(":v{i}"),
                n(i64::try_from(value).unwrap_or(i64::MAX)),
            );
        }
        let mut expr = format!("ADD {}", parts.join(", "));
        if let Some(t) = expires_at {
            expr.push_str(" SET expires_at = :exp");
            update = update.expression_attribute_values(":exp", n(t));
        }
        update
            .update_expression(expr)
            .build()
            .map_err(|e| StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(&e)))
    }
}

/// Splits one tenant's records into transactions of at most [`MAX_TX_ITEMS`] items (the
/// records' markers and the counters they touch).
fn chunks(records: Vec<(String, UsageRecord)>) -> Vec<Vec<(String, UsageRecord)>> {
    let mut out = Vec::new();
    let mut chunk: Vec<(String, UsageRecord)> = Vec::new();
    let mut counters: BTreeSet<(String, String)> = BTreeSet::new();
    for (seq, r) in records {
        let mine: Vec<(String, String)> = counters_of(&r)
            .into_iter()
            .map(|(pk, sk, _)| (pk, sk))
            .collect();
        let new = mine.iter().filter(|c| !counters.contains(*c)).count();
        if !chunk.is_empty() && chunk.len() + 1 + counters.len() + new > MAX_TX_ITEMS {
            out.push(std::mem::take(&mut chunk));
            counters.clear();
        }
        counters.extend(mine);
        chunk.push((seq, r));
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

/// The shard a transaction starts on: spread by the batch, so concurrent aggregations
/// (one per stream shard) mostly write different items.
fn shard_of(seed: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(seed.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % COUNTER_SHARDS
}

fn outcome(e: &SdkError<TransactWriteItemsError>, records: usize) -> Sent {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error()
    else {
        let retryable = e.as_service_error().is_none_or(|s| {
            matches!(
                s,
                TransactWriteItemsError::ProvisionedThroughputExceededException(_)
                    | TransactWriteItemsError::RequestLimitExceeded(_)
                    | TransactWriteItemsError::InternalServerError(_)
                    | TransactWriteItemsError::TransactionInProgressException(_)
            ) || s.meta().code() == Some("ThrottlingException")
        });
        return if retryable {
            Sent::Retry(describe(e))
        } else {
            Sent::Fail(describe(e))
        };
    };
    let reasons = c.cancellation_reasons();
    let already: BTreeSet<usize> = reasons
        .iter()
        .take(records)
        .enumerate()
        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
        .map(|(i, _)| i)
        .collect();
    if !already.is_empty() {
        Sent::Already(already)
    } else {
        Sent::Retry(describe(e))
    }
}
