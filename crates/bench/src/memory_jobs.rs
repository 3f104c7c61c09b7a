//! An in-process job store for the batch drain benchmark's "worker" figure: the same
//! claim/lease/count semantics as the DynamoDB store, without its latency, so the figure
//! shows how the worker scales with concurrency rather than how fast the local DynamoDB
//! (moto, one Python process whose transactions copy every table) can go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quarry_core::jobs::Quarantined;
use quarry_core::jobs::{
    ItemClaim, ItemRecord, ItemRef, ItemResult, ItemStatus, JobCounts, JobError,
};
use quarry_core::ports::{JobStore, Quarantine, StoreError};
use quarry_core::pricing::MicroUsd;

struct Item {
    record: ItemRecord,
    owner: String,
    lease_until: Instant,
}

#[derive(Default)]
struct Jobs {
    quarantined: Vec<Quarantined>,
    items: HashMap<ItemRef, Item>,
    headers: HashMap<(String, String), (JobCounts, bool)>,
}

#[derive(Default)]
pub struct MemoryJobs {
    jobs: Mutex<Jobs>,
}

impl MemoryJobs {
    fn with<T>(&self, f: impl FnOnce(&mut Jobs) -> T) -> Result<T, JobError> {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&mut jobs))
    }
}

fn header<'a>(jobs: &'a mut Jobs, item: &ItemRef) -> &'a mut JobCounts {
    &mut jobs
        .headers
        .entry((item.tenant.clone(), item.job_id.clone()))
        .or_default()
        .0
}

#[async_trait]
impl JobStore for MemoryJobs {
    async fn claim(
        &self,
        item: &ItemRef,
        owner: &str,
        lease: Duration,
    ) -> Result<ItemClaim, JobError> {
        let now = Instant::now();
        self.with(|jobs| {
            let claim = match jobs.items.get_mut(item) {
                None => {
                    jobs.items.insert(
                        item.clone(),
                        Item {
                            record: ItemRecord {
                                item_id: item.item_id.clone(),
                                status: ItemStatus::InProgress,
                                attempts: 1,
                                result: None,
                                reason: None,
                                truncated: false,
                                retry_body: None,
                            },
                            owner: owner.to_owned(),
                            lease_until: now + lease,
                        },
                    );
                    header(jobs, item).submitted += 1;
                    return ItemClaim::Run { attempt: 1 };
                }
                Some(existing) => existing,
            };
            match claim.record.status {
                ItemStatus::Succeeded | ItemStatus::Failed => ItemClaim::Done(claim.record.status),
                ItemStatus::InProgress if claim.owner != owner && claim.lease_until > now => {
                    ItemClaim::Busy
                }
                _ => {
                    claim.record.status = ItemStatus::InProgress;
                    claim.record.attempts += 1;
                    claim.owner = owner.to_owned();
                    claim.lease_until = now + lease;
                    ItemClaim::Run {
                        attempt: claim.record.attempts,
                    }
                }
            }
        })
    }

    async fn succeed(
        &self,
        item: &ItemRef,
        owner: &str,
        result: &ItemResult,
    ) -> Result<(), JobError> {
        self.with(|jobs| {
            let stored = jobs
                .items
                .get_mut(item)
                .filter(|i| i.owner == owner && i.record.status == ItemStatus::InProgress)
                .ok_or_else(|| JobError::LeaseLost(item.item_id.clone()))?;
            stored.record.status = ItemStatus::Succeeded;
            stored.record.result = Some(result.clone());
            let counts = header(jobs, item);
            counts.succeeded += 1;
            counts.cost = counts.cost + result.cost.unwrap_or(MicroUsd(0));
            Ok(())
        })?
    }

    async fn fail(
        &self,
        item: &ItemRef,
        reason: &str,
        cost: Option<MicroUsd>,
    ) -> Result<(), JobError> {
        self.with(|jobs| {
            let fresh = !jobs.items.contains_key(item);
            let stored = jobs.items.entry(item.clone()).or_insert_with(|| Item {
                record: ItemRecord {
                    item_id: item.item_id.clone(),
                    status: ItemStatus::Retry,
                    attempts: 0,
                    result: None,
                    reason: None,
                    truncated: false,
                    retry_body: None,
                },
                owner: String::new(),
                lease_until: Instant::now(),
            });
            if matches!(
                stored.record.status,
                ItemStatus::Succeeded | ItemStatus::Failed
            ) {
                return;
            }
            stored.record.status = ItemStatus::Failed;
            stored.record.reason = Some(reason.to_owned());
            let counts = header(jobs, item);
            if fresh {
                counts.submitted += 1;
            }
            counts.failed += 1;
            counts.cost = counts.cost + cost.unwrap_or(MicroUsd(0));
        })
    }

    async fn keep_for_retry(&self, item: &ItemRef, body: &str) -> Result<(), JobError> {
        self.with(|jobs| {
            if let Some(stored) = jobs.items.get_mut(item)
                && stored.record.status == ItemStatus::Failed
            {
                stored.record.retry_body = Some(body.to_owned());
            }
        })
    }

    async fn reopen(&self, _item: &ItemRef) -> Result<Option<String>, JobError> {
        Ok(None)
    }

    async fn release(&self, item: &ItemRef, owner: &str, reason: &str) -> Result<(), JobError> {
        self.with(|jobs| {
            if let Some(stored) = jobs.items.get_mut(item).filter(|i| i.owner == owner) {
                stored.record.status = ItemStatus::Retry;
                stored.record.reason = Some(reason.to_owned());
            }
        })
    }

    async fn expect(
        &self,
        tenant: &str,
        job_id: &str,
        items: u64,
    ) -> Result<Option<u64>, JobError> {
        self.with(|jobs| {
            let counts = &mut jobs
                .headers
                .entry((tenant.to_owned(), job_id.to_owned()))
                .or_default()
                .0;
            let before = counts.expected;
            counts.expected = before.or(Some(items));
            before
        })
    }

    async fn counts(&self, tenant: &str, job_id: &str) -> Result<Option<JobCounts>, JobError> {
        self.with(|jobs| {
            jobs.headers
                .get(&(tenant.to_owned(), job_id.to_owned()))
                .map(|(c, _)| c.clone())
        })
    }

    async fn items(&self, tenant: &str, job_id: &str) -> Result<Vec<ItemRecord>, JobError> {
        self.with(|jobs| {
            jobs.items
                .iter()
                .filter(|(k, _)| k.tenant == tenant && k.job_id == job_id)
                .map(|(_, i)| i.record.clone())
                .collect()
        })
    }

    async fn mark_notified(&self, tenant: &str, job_id: &str) -> Result<bool, JobError> {
        self.with(|jobs| {
            let entry = jobs
                .headers
                .entry((tenant.to_owned(), job_id.to_owned()))
                .or_default();
            !std::mem::replace(&mut entry.1, true)
        })
    }
}

#[async_trait]
impl Quarantine for MemoryJobs {
    async fn hold(&self, message: &Quarantined) -> Result<(), StoreError> {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        jobs.quarantined.push(message.clone());
        Ok(())
    }

    async fn held(&self, _day: &str) -> Result<Vec<Quarantined>, StoreError> {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(jobs.quarantined.clone())
    }
}

/// The benchmark's jobs are online jobs: no job has a plan, nothing is kept for bulk.
#[async_trait]
impl quarry_core::ports::BulkJobs for MemoryJobs {
    async fn open(
        &self,
        _: &str,
        _: &str,
        plan: &quarry_core::bulk::JobPlan,
    ) -> Result<quarry_core::bulk::JobPlan, JobError> {
        Ok(plan.clone())
    }
    async fn plan(&self, _: &str, _: &str) -> Result<Option<quarry_core::bulk::JobPlan>, JobError> {
        Ok(None)
    }
    async fn stage(&self, _: &ItemRef, _: &str) -> Result<quarry_core::bulk::Staged, JobError> {
        Ok(quarry_core::bulk::Staged::Closed)
    }
    async fn staged(&self, _: &str, _: &str) -> Result<Vec<(String, String)>, JobError> {
        Ok(Vec::new())
    }
    async fn take(&self, _: &ItemRef, _: &str, _: Duration) -> Result<Option<String>, JobError> {
        Ok(None)
    }
    async fn to_online(&self, _: &ItemRef) -> Result<Option<String>, JobError> {
        Ok(None)
    }
    async fn tracked(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<quarry_core::bulk::BulkJob>, JobError> {
        Ok(None)
    }
    async fn track(&self, _: &quarry_core::bulk::BulkJob) -> Result<(), JobError> {
        Ok(())
    }
    async fn request_cancel(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<quarry_core::bulk::BulkJob>, JobError> {
        Ok(None)
    }
    async fn claimed(&self, _: &str, _: &str, _: &str) -> Result<u64, JobError> {
        Ok(0)
    }
    async fn open_jobs(&self) -> Result<Vec<(String, String)>, JobError> {
        Ok(Vec::new())
    }
}
