//! The ports of bulk jobs: Bedrock batch inference, the batch bucket, the jobs table's side
//! of bulk jobs, and the budget they hold (part of the one ports module, by concern).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::jobs::{ItemRef, JobError};
use crate::pricing::MicroUsd;

/// Bedrock batch inference jobs (CreateModelInvocationJob and the calls that follow it).
#[async_trait]
pub trait BulkInference: Send + Sync {
    /// Starts a job; returns its ARN. The same `client_token` returns the same job.
    async fn submit(&self, job: &crate::bulk::BulkSubmission) -> Result<String, StoreError>;
    async fn status(&self, job_arn: &str) -> Result<crate::bulk::BulkStatus, StoreError>;
    async fn stop(&self, job_arn: &str) -> Result<(), StoreError>;
}

/// The jobs table's side of bulk jobs: each job's decided mode, its items kept until
/// submission, and its tracking record (with an index of the jobs still open).
#[async_trait]
pub trait BulkJobs: Send + Sync {
    /// Records a job's plan (its mode, announced count and deadline). The first plan
    /// recorded stays: returns the plan in force.
    async fn open(
        &self,
        tenant: &str,
        job_id: &str,
        plan: &crate::bulk::JobPlan,
    ) -> Result<crate::bulk::JobPlan, JobError>;
    async fn plan(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<crate::bulk::JobPlan>, JobError>;
    /// Keeps an item (its message) for the job's submission, counted as submitted, while
    /// the job still collects items.
    async fn stage(&self, item: &ItemRef, body: &str) -> Result<crate::bulk::Staged, JobError>;
    /// The job's items waiting in bulk: (item ID, message).
    async fn staged(&self, tenant: &str, job_id: &str) -> Result<Vec<(String, String)>, JobError>;
    /// Claims a bulk item for `owner` to store its outcome (as `JobStore::claim` does an
    /// online item); returns its message. `None`: it has its outcome, or is someone else's.
    async fn take(
        &self,
        item: &ItemRef,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<String>, JobError>;
    /// Moves a bulk item to the online path (`retry`, claimable by the worker); returns its
    /// message to send, `None` if it is not in bulk (any more).
    async fn to_online(&self, item: &ItemRef) -> Result<Option<String>, JobError>;
    async fn tracked(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<crate::bulk::BulkJob>, JobError>;
    /// Saves the tracking record; an open job is listed by `open_jobs`, a closed one not.
    async fn track(&self, job: &crate::bulk::BulkJob) -> Result<(), JobError>;
    /// Marks a bulk job to be cancelled (the tracker does the rest); returns its record.
    async fn request_cancel(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<crate::bulk::BulkJob>, JobError>;
    /// How many of the job's items are claimed by owners whose name starts with
    /// `owner_prefix` (a tracker that stopped while storing their outcome): the job is not
    /// settled until their claims expire and they are stored.
    async fn claimed(
        &self,
        tenant: &str,
        job_id: &str,
        owner_prefix: &str,
    ) -> Result<u64, JobError>;
    /// (tenant, job ID) of every bulk job the tracker still has work on.
    async fn open_jobs(&self) -> Result<Vec<(String, String)>, JobError>;
}

/// Budget held for bulk jobs between their submission and their results: what parallel
/// jobs hold together never passes the budget.
#[async_trait]
pub trait Reservations: Send + Sync {
    /// Holds `amount` under `hold` unless the tenant's holds would then exceed `cap`.
    /// `Ok(false)`: refused. Holding the same `hold` again changes nothing.
    async fn reserve(
        &self,
        tenant: &str,
        hold: &str,
        amount: MicroUsd,
        cap: MicroUsd,
    ) -> Result<bool, StoreError>;
    /// Releases a hold (its results were charged); releasing twice changes nothing.
    async fn release(&self, tenant: &str, hold: &str) -> Result<(), StoreError>;
    /// What the tenant's holds add up to.
    async fn reserved(&self, tenant: &str) -> Result<MicroUsd, StoreError>;
    /// The tenant's spend so far in `month` (`2026-11`), as the ledger has counted it.
    async fn spent(&self, tenant: &str, month: &str) -> Result<MicroUsd, StoreError>;
}

/// The batch bucket: bulk jobs' input and output files, by `s3://` URI.
#[async_trait]
pub trait BatchFiles: Send + Sync {
    async fn put(&self, uri: &str, body: Vec<u8>) -> Result<(), StoreError>;
    /// `None` when there is no such object.
    async fn get(&self, uri: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The URIs of the objects under a prefix URI.
    async fn list(&self, prefix_uri: &str) -> Result<Vec<String>, StoreError>;
}
