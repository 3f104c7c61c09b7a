//! The jobs table on DynamoDB: a header per job (`pk` = `JOB#{tenant}#{job}`, `sk` =
//! `HEADER`: counts added atomically, cost in micro-USD) and a record per item (`sk` =
//! `ITEM#{item}`: status, attempts, lease, result). Every state change of an item and the
//! header counts it affects are one transaction, so counts never drift from the items.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use quarry_core::jobs::{
    ItemClaim, ItemRecord, ItemRef, ItemResult, ItemStatus, JobCounts, JobError,
};
use quarry_core::ports::JobStore;
use quarry_core::ports::{Clock, Dependency, StoreError, SystemClock};
use quarry_core::pricing::MicroUsd;

use crate::sdk::describe;

mod bulk;
mod output;
mod quarantine;
mod retry;

use self::output::{Stored, pack, unpack};

/// Job records live this long.
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn store(e: &(dyn std::error::Error + 'static)) -> JobError {
    JobError::Store(StoreError::unavailable(
        Dependency::DynamoDb,
        "jobs store",
        describe(e),
    ))
}

fn status_name(s: ItemStatus) -> &'static str {
    match s {
        ItemStatus::InProgress => "in_progress",
        ItemStatus::Retry => "retry",
        ItemStatus::Succeeded => "succeeded",
        ItemStatus::Failed => "failed",
        ItemStatus::Bulk => "bulk",
    }
}

fn status_of(s: &str) -> ItemStatus {
    match s {
        "succeeded" => ItemStatus::Succeeded,
        "failed" => ItemStatus::Failed,
        "retry" => ItemStatus::Retry,
        "bulk" => ItemStatus::Bulk,
        _ => ItemStatus::InProgress,
    }
}

/// True when a transaction was cancelled by a failed condition (not by an error).
fn cancelled_by_condition<E>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        E,
    >,
) -> bool {
    e.as_service_error().is_some_and(|s| match s {
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => false,
    })
}

#[derive(Clone)]
pub struct DynamoJobs {
    client: Client,
    table: String,
    /// Leases and retention are written from this clock.
    clock: Arc<dyn Clock>,
}

impl DynamoJobs {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self::with_clock(sdk, table, Arc::new(SystemClock))
    }

    pub fn with_clock(sdk: &SdkConfig, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
            clock,
        }
    }

    fn pk(tenant: &str, job: &str) -> String {
        format!("JOB#{tenant}#{job}")
    }

    fn item_key(item: &ItemRef) -> (AttributeValue, AttributeValue) {
        (
            s(&Self::pk(&item.tenant, &item.job_id)),
            s(&format!("ITEM#{}", item.item_id)),
        )
    }

    /// The header update every transaction carries: counts added, identity set once.
    fn header(
        &self,
        tenant: &str,
        job: &str,
        adds: &[(&str, i64)],
    ) -> Result<TransactWriteItem, JobError> {
        let mut expr = String::from(
            "SET tenant = :tenant, job_id = :job, updated_at = :now, expires_at = :exp, created_at = if_not_exists(created_at, :now)",
        );
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job)))
            .key("sk", s("HEADER"))
            .expression_attribute_values(":tenant", s(tenant))
            .expression_attribute_values(":job", s(job))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .expression_attribute_values(
                ":exp",
                n(self.clock.now_ms() / 1000 + RETENTION.as_secs() as i64),
            );
        if !adds.is_empty() {
            expr.push_str(" ADD ");
            // Names go through placeholders: several are DynamoDB reserved words.
            let parts: Vec<String> = adds
                .iter()
                .map(|(k, _)| format!("#add_{k} :add_{k}"))
                .collect();
            expr.push_str(&parts.join(", "));
            for (k, v) in adds {
                update = update
                    .expression_attribute_names(format!("#add_{k}"), *k)
                    .expression_attribute_values(format!(":add_{k}"), n(*v));
            }
        }
        let update = update
            .update_expression(expr)
            .build()
            .map_err(|e| store(&e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl JobStore for DynamoJobs {
    async fn claim(
        &self,
        item: &ItemRef,
        owner: &str,
        lease: Duration,
    ) -> Result<ItemClaim, JobError> {
        let (pk, sk) = Self::item_key(item);
        let now = self.clock.now_ms();
        let until = now + lease.as_millis() as i64;
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("pk", pk.clone())
            .item("sk", sk.clone())
            .item("item_id", s(&item.item_id))
            .item("status", s("in_progress"))
            .item("attempts", n(1))
            .item("lease_owner", s(owner))
            .item("lease_until", n(until))
            .item("expires_at", n(now / 1000 + RETENTION.as_secs() as i64))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| store(&e))?;
        let first = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.header(&item.tenant, &item.job_id, &[("submitted", 1)])?)
            .send()
            .await;
        match first {
            Ok(_) => return Ok(ItemClaim::Run { attempt: 1 }),
            Err(e) if cancelled_by_condition(&e) => {}
            Err(e) => return Err(store(&e)),
        }
        // It exists: take it over if it waits for a retry or its holder's lease expired.
        let takeover = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", sk.clone())
            .update_expression(
                "SET #s = :inprog, lease_owner = :owner, lease_until = :until ADD attempts :one",
            )
            .condition_expression("#s = :retry OR (#s = :inprog AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":retry", s("retry"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match takeover {
            Ok(out) => {
                let attempt = out
                    .attributes()
                    .and_then(|a| get_n(a, "attempts"))
                    .unwrap_or(1);
                Ok(ItemClaim::Run {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", pk)
                    .key("sk", sk)
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| store(&e))?;
                match out
                    .item()
                    .and_then(|i| get_s(i, "status"))
                    .as_deref()
                    .map(status_of)
                {
                    // A bulk item's outcome comes with its job's: a second delivery of its
                    // message runs nothing.
                    Some(
                        done @ (ItemStatus::Succeeded | ItemStatus::Failed | ItemStatus::Bulk),
                    ) => Ok(ItemClaim::Done(done)),
                    _ => Ok(ItemClaim::Busy),
                }
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn succeed(
        &self,
        item: &ItemRef,
        owner: &str,
        result: &ItemResult,
    ) -> Result<(), JobError> {
        let (pk, sk) = Self::item_key(item);
        let mut summary = result.clone();
        summary.output = String::new();
        let summary = serde_json::to_string(&summary).map_err(|e| {
            JobError::Store(StoreError::invalid(
                Dependency::DynamoDb,
                "jobs store",
                e.to_string(),
            ))
        })?;
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .condition_expression("#s = :inprog AND lease_owner = :owner")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":done", s(status_name(ItemStatus::Succeeded)))
            .expression_attribute_values(":result", s(&summary))
            .expression_attribute_values(":now", n(self.clock.now_ms()));
        let expr = match pack(&result.output) {
            Stored::Text(t) => {
                update = update
                    .expression_attribute_names("#out", "output")
                    .expression_attribute_values(":out", s(&t));
                "SET #s = :done, #r = :result, #out = :out, updated_at = :now REMOVE lease_owner, lease_until, retry_body"
            }
            Stored::Gzip(bytes) => {
                update = update
                    .expression_attribute_names("#outgz", "output_gz")
                    .expression_attribute_values(":out", AttributeValue::B(Blob::new(bytes)));
                "SET #s = :done, #r = :result, #outgz = :out, updated_at = :now REMOVE lease_owner, lease_until, retry_body"
            }
            Stored::Truncated(t) => {
                update = update
                    .expression_attribute_names("#out", "output")
                    .expression_attribute_names("#trunc", "truncated")
                    .expression_attribute_values(":out", s(&t))
                    .expression_attribute_values(":yes", AttributeValue::Bool(true));
                "SET #s = :done, #r = :result, #out = :out, #trunc = :yes, updated_at = :now REMOVE lease_owner, lease_until, retry_body"
            }
        };
        let update = update
            .expression_attribute_names("#r", "result")
            .update_expression(expr)
            .build()
            .map_err(|e| store(&e))?;
        let cost = result.cost.map_or(0, |c| c.0 as i64);
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.header(
                &item.tenant,
                &item.job_id,
                &[("succeeded", 1), ("cost_micro", cost)],
            )?)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if cancelled_by_condition(&e) => Err(JobError::LeaseLost(item.item_id.clone())),
            Err(e) => Err(store(&e)),
        }
    }

    async fn fail(
        &self,
        item: &ItemRef,
        reason: &str,
        cost: Option<MicroUsd>,
    ) -> Result<(), JobError> {
        let (pk, sk) = Self::item_key(item);
        let cost = cost.map_or(0, |c| c.0 as i64);
        // Never seen (poison on first delivery): create it failed, counted as submitted too.
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("pk", pk.clone())
            .item("sk", sk.clone())
            .item("item_id", s(&item.item_id))
            .item("status", s("failed"))
            .item("attempts", n(1))
            .item("reason", s(reason))
            .item(
                "expires_at",
                n(self.clock.now_ms() / 1000 + RETENTION.as_secs() as i64),
            )
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| store(&e))?;
        let created = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.header(
                &item.tenant,
                &item.job_id,
                &[("submitted", 1), ("failed", 1), ("cost_micro", cost)],
            )?)
            .send()
            .await;
        match created {
            Ok(_) => return Ok(()),
            Err(e) if cancelled_by_condition(&e) => {}
            Err(e) => return Err(store(&e)),
        }
        // Known and not final yet: mark it failed and count it once.
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #s = :failed, #why = :reason, updated_at = :now REMOVE lease_owner, lease_until, retry_body")
            .condition_expression("#s IN (:inprog, :retry)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#why", "reason")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":retry", s("retry"))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .build()
            .map_err(|e| store(&e))?;
        let marked = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.header(
                &item.tenant,
                &item.job_id,
                &[("failed", 1), ("cost_micro", cost)],
            )?)
            .send()
            .await;
        match marked {
            // Already final: it was counted when it got there.
            Ok(_) => Ok(()),
            Err(e) if cancelled_by_condition(&e) => Ok(()),
            Err(e) => Err(store(&e)),
        }
    }

    async fn keep_for_retry(&self, item: &ItemRef, body: &str) -> Result<(), JobError> {
        self.keep_message(item, body).await
    }

    async fn reopen(&self, item: &ItemRef) -> Result<Option<String>, JobError> {
        self.reopen_failed(item).await
    }

    async fn release(&self, item: &ItemRef, owner: &str, reason: &str) -> Result<(), JobError> {
        let (pk, sk) = Self::item_key(item);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #s = :retry, #why = :reason, updated_at = :now REMOVE lease_owner, lease_until")
            .condition_expression("#s = :inprog AND lease_owner = :owner")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#why", "reason")
            .expression_attribute_values(":retry", s("retry"))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(JobError::LeaseLost(item.item_id.clone()))
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn expect(
        &self,
        tenant: &str,
        job_id: &str,
        items: u64,
    ) -> Result<Option<u64>, JobError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job_id)))
            .key("sk", s("HEADER"))
            .update_expression("SET #expected = if_not_exists(#expected, :n), tenant = :tenant, job_id = :job, created_at = if_not_exists(created_at, :now), expires_at = :exp")
            .return_values(ReturnValue::AllOld)
            .expression_attribute_names("#expected", "expected")
            .expression_attribute_values(":n", n(items as i64))
            .expression_attribute_values(":tenant", s(tenant))
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .expression_attribute_values(":exp", n(self.clock.now_ms() / 1000 + RETENTION.as_secs() as i64))
            .send()
            .await
            .map_err(|e| store(&e))?;
        Ok(out
            .attributes()
            .and_then(|a| get_n(a, "expected"))
            .and_then(|v| u64::try_from(v).ok()))
    }

    async fn counts(&self, tenant: &str, job_id: &str) -> Result<Option<JobCounts>, JobError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job_id)))
            .key("sk", s("HEADER"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store(&e))?;
        Ok(out.item().map(|i| {
            let u = |k: &str| u64::try_from(get_n(i, k).unwrap_or(0)).unwrap_or(0);
            JobCounts {
                submitted: u("submitted"),
                succeeded: u("succeeded"),
                failed: u("failed"),
                expected: get_n(i, "expected").and_then(|v| u64::try_from(v).ok()),
                cost: MicroUsd(u("cost_micro")),
            }
        }))
    }

    async fn items(&self, tenant: &str, job_id: &str) -> Result<Vec<ItemRecord>, JobError> {
        let mut records = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
            .expression_attribute_values(":pk", s(&Self::pk(tenant, job_id)))
            .expression_attribute_values(":item", s("ITEM#"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store(&e))?;
            for i in page.items() {
                let status = get_s(i, "status")
                    .as_deref()
                    .map(status_of)
                    .unwrap_or(ItemStatus::InProgress);
                let mut result: Option<ItemResult> =
                    get_s(i, "result").and_then(|r| serde_json::from_str(&r).ok());
                if let Some(r) = result.as_mut() {
                    r.output = unpack(i).unwrap_or_default();
                }
                records.push(ItemRecord {
                    item_id: get_s(i, "item_id").unwrap_or_default(),
                    status,
                    attempts: u32::try_from(get_n(i, "attempts").unwrap_or(0)).unwrap_or(0),
                    result,
                    reason: get_s(i, "reason"),
                    truncated: i
                        .get("truncated")
                        .and_then(|v| v.as_bool().ok())
                        .copied()
                        .unwrap_or(false),
                    retry_body: get_s(i, "retry_body"),
                });
            }
        }
        Ok(records)
    }

    async fn mark_notified(&self, tenant: &str, job_id: &str) -> Result<bool, JobError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job_id)))
            .key("sk", s("HEADER"))
            .update_expression("SET #notified = :yes")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#notified)")
            .expression_attribute_names("#notified", "notified")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store(&e)),
        }
    }
}
