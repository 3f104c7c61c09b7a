//! Bulk jobs in the jobs table, beside the header and items of their job:
//!
//! * the header's `plan`: the job's decided mode (written once: the first plan stays), and
//!   `last_item_ms`, when an item was last kept for it;
//! * items waiting in bulk: status `bulk`, their message in `retry_body`;
//! * `sk` = `BULK`: the tracking record (JSON in `job`);
//! * `pk` = `BULK#OPEN`, `sk` = `{tenant}#{job}`: one entry per job the tracker still has
//!   work on. Written when a job opens and when it closes, never per item, so it is no hot
//!   key.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem, Update,
};
use quarry_core::bulk::{BulkJob, JobMode, JobPlan, Staged};
use quarry_core::jobs::{ItemRef, JobError};
use quarry_core::ports::{BulkJobs, Dependency, StoreError};

use super::{DynamoJobs, RETENTION, cancelled_by_condition, get_n, get_s, n, s, store};

const OPEN_PK: &str = "BULK#OPEN";
/// The tracking record's `phase` while it takes items.
const COLLECTING: &str = "collecting";

fn phase_name(job: &BulkJob) -> String {
    serde_json::to_value(job.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Which of a cancelled transaction's items failed their condition, by position.
fn cancellation<E>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        E,
    >,
) -> Vec<bool> {
    match e.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code() == Some("ConditionalCheckFailed"))
            .collect(),
        _ => Vec::new(),
    }
}

fn invalid(detail: impl std::fmt::Display) -> JobError {
    JobError::Store(StoreError::invalid(
        Dependency::DynamoDb,
        "jobs store",
        detail.to_string(),
    ))
}

impl DynamoJobs {
    fn expires(&self) -> AttributeValue {
        n(self.clock.now_ms() / 1000 + RETENTION.as_secs() as i64)
    }

    async fn index(&self, tenant: &str, job_id: &str, open: bool) -> Result<(), JobError> {
        let sk = format!("{tenant}#{job_id}");
        if open {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(OPEN_PK))
                .item("sk", s(&sk))
                .item("tenant", s(tenant))
                .item("job_id", s(job_id))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| store(&e))
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(OPEN_PK))
                .key("sk", s(&sk))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| store(&e))
        }
    }

    async fn item_now(
        &self,
        item: &ItemRef,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, JobError> {
        let (pk, sk) = Self::item_key(item);
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
        Ok(out.item().cloned())
    }
}

#[async_trait]
impl BulkJobs for DynamoJobs {
    async fn open(&self, tenant: &str, job_id: &str, plan: &JobPlan) -> Result<JobPlan, JobError> {
        let json = serde_json::to_string(plan).map_err(invalid)?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job_id)))
            .key("sk", s("HEADER"))
            .expression_attribute_values(":plan", s(&json))
            .expression_attribute_values(":tenant", s(tenant))
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .expression_attribute_values(":exp", self.expires())
            .return_values(ReturnValue::AllNew);
        let mut expr = String::from(
            "SET #plan = if_not_exists(#plan, :plan), tenant = :tenant, job_id = :job, created_at = if_not_exists(created_at, :now), expires_at = :exp",
        );
        update = update.expression_attribute_names("#plan", "plan");
        if let Some(e) = plan.expected {
            expr.push_str(", #expected = if_not_exists(#expected, :n)");
            update = update
                .expression_attribute_names("#expected", "expected")
                .expression_attribute_values(":n", n(i64::try_from(e).unwrap_or(i64::MAX)));
        }
        let out = update
            .update_expression(expr)
            .send()
            .await
            .map_err(|e| store(&e))?;
        let in_force: JobPlan = out
            .attributes()
            .and_then(|a| get_s(a, "plan"))
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_else(|| plan.clone());
        if in_force.mode == JobMode::Bulk {
            let record = BulkJob::new(tenant, job_id, self.clock.now_ms());
            let created = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(&Self::pk(tenant, job_id)))
                .item("sk", s("BULK"))
                .item("job", s(&serde_json::to_string(&record).map_err(invalid)?))
                .item("phase", s(COLLECTING))
                .item("expires_at", self.expires())
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match created {
                Ok(_) => self.index(tenant, job_id, true).await?,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(store(&e)),
            }
        }
        Ok(in_force)
    }

    async fn plan(&self, tenant: &str, job_id: &str) -> Result<Option<JobPlan>, JobError> {
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
        out.item()
            .and_then(|i| get_s(i, "plan"))
            .map(|p| serde_json::from_str(&p).map_err(invalid))
            .transpose()
    }

    async fn stage(&self, item: &ItemRef, body: &str) -> Result<Staged, JobError> {
        let (pk, sk) = Self::item_key(item);
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", pk)
            .item("sk", sk)
            .item("item_id", s(&item.item_id))
            .item("status", s("bulk"))
            .item("attempts", n(0))
            .item("retry_body", s(body))
            .item("expires_at", self.expires())
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| store(&e))?;
        let header = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(&item.tenant, &item.job_id)))
            .key("sk", s("HEADER"))
            .update_expression("SET tenant = :tenant, job_id = :job, last_item_ms = :now, updated_at = :now ADD submitted :one")
            .expression_attribute_values(":tenant", s(&item.tenant))
            .expression_attribute_values(":job", s(&item.job_id))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(|e| store(&e))?;
        // Only while the job collects: an item arriving after its submission runs online.
        let collecting = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(&item.tenant, &item.job_id)))
            .key("sk", s("BULK"))
            .condition_expression("phase = :collecting")
            .expression_attribute_values(":collecting", s(COLLECTING))
            .build()
            .map_err(|e| store(&e))?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(header).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(collecting)
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(Staged::Kept),
            Err(e) if cancelled_by_condition(&e) => {
                let reasons = cancellation(&e);
                Ok(if reasons.first().copied().unwrap_or(false) {
                    Staged::Known
                } else {
                    Staged::Closed
                })
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn staged(&self, tenant: &str, job_id: &str) -> Result<Vec<(String, String)>, JobError> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
            .filter_expression("#s = :bulk")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pk", s(&Self::pk(tenant, job_id)))
            .expression_attribute_values(":item", s("ITEM#"))
            .expression_attribute_values(":bulk", s("bulk"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store(&e))?;
            for i in page.items() {
                if let (Some(id), Some(body)) = (get_s(i, "item_id"), get_s(i, "retry_body")) {
                    found.push((id, body));
                }
            }
        }
        Ok(found)
    }

    async fn take(
        &self,
        item: &ItemRef,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<String>, JobError> {
        let (pk, sk) = Self::item_key(item);
        let now = self.clock.now_ms();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression(
                "SET #s = :inprog, lease_owner = :owner, lease_until = :until ADD attempts :one",
            )
            .condition_expression("#s = :bulk OR (#s = :inprog AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":bulk", s("bulk"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(
                ":until",
                n(now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)),
            )
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes().and_then(|a| get_s(a, "retry_body"))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn to_online(&self, item: &ItemRef) -> Result<Option<String>, JobError> {
        let (pk, sk) = Self::item_key(item);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #s = :retry, updated_at = :now REMOVE lease_owner, lease_until")
            .condition_expression("#s = :bulk AND attribute_exists(retry_body)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":retry", s("retry"))
            .expression_attribute_values(":bulk", s("bulk"))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes().and_then(|a| get_s(a, "retry_body"))),
            // Moved before (a tracker that stopped before sending it): sent again, which is
            // safe (the worker runs an item once).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(self.item_now(item).await?.and_then(|i| {
                    (get_s(&i, "status").as_deref() == Some("retry"))
                        .then(|| get_s(&i, "retry_body"))
                        .flatten()
                }))
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn tracked(&self, tenant: &str, job_id: &str) -> Result<Option<BulkJob>, JobError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(&Self::pk(tenant, job_id)))
            .expression_attribute_values(":a", s("BULK"))
            .expression_attribute_values(":b", s("HEADER"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store(&e))?;
        let find = |sk: &str| {
            out.items()
                .iter()
                .find(|i| get_s(i, "sk").as_deref() == Some(sk))
        };
        let Some(json) = find("BULK").and_then(|i| get_s(i, "job")) else {
            return Ok(None);
        };
        let mut job: BulkJob = serde_json::from_str(&json).map_err(invalid)?;
        job.cancel_requested |= find("BULK")
            .and_then(|i| i.get("cancel_requested"))
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        if let Some(at) = find("HEADER").and_then(|h| get_n(h, "last_item_ms")) {
            job.last_item_ms = job.last_item_ms.max(at);
        }
        Ok(Some(job))
    }

    async fn track(&self, job: &BulkJob) -> Result<(), JobError> {
        // An update, not a put: `cancel_requested` is set beside it by `request_cancel`.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(&job.tenant, &job.job_id)))
            .key("sk", s("BULK"))
            .update_expression("SET #job = :job, phase = :phase, expires_at = :exp")
            .expression_attribute_names("#job", "job")
            .expression_attribute_values(":job", s(&serde_json::to_string(job).map_err(invalid)?))
            .expression_attribute_values(":phase", s(&phase_name(job)))
            .expression_attribute_values(":exp", self.expires())
            .send()
            .await
            .map_err(|e| store(&e))?;
        self.index(&job.tenant, &job.job_id, job.is_open()).await
    }

    async fn request_cancel(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<BulkJob>, JobError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant, job_id)))
            .key("sk", s("BULK"))
            .update_expression("SET cancel_requested = :yes")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match out {
            Ok(_) => self.tracked(tenant, job_id).await,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(store(&e)),
        }
    }

    async fn claimed(
        &self,
        tenant: &str,
        job_id: &str,
        owner_prefix: &str,
    ) -> Result<u64, JobError> {
        let mut count = 0;
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
            .filter_expression("#s = :inprog AND begins_with(lease_owner, :owner)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pk", s(&Self::pk(tenant, job_id)))
            .expression_attribute_values(":item", s("ITEM#"))
            .expression_attribute_values(":inprog", s("in_progress"))
            .expression_attribute_values(":owner", s(owner_prefix))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store(&e))?;
            count += u64::try_from(page.count()).unwrap_or(0);
        }
        Ok(count)
    }

    async fn open_jobs(&self) -> Result<Vec<(String, String)>, JobError> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(OPEN_PK))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store(&e))?;
            for i in page.items() {
                if let (Some(t), Some(j)) = (get_s(i, "tenant"), get_s(i, "job_id")) {
                    found.push((t, j));
                }
            }
        }
        Ok(found)
    }
}
