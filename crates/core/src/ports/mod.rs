//! Every port of the domain: one small object-safe trait per capability, held as
//! `Arc<dyn Port>` in handler state. Adapters on the AWS SDK live in `quarry-aws`; in-memory
//! ones for unit tests live beside the traits they serve.
//!
//! ## Overview
//!
//! | port | capability | adapter in AWS |
//! | --- | --- | --- |
//! | [`ModelClient`] | Converse / ConverseStream | Bedrock Runtime |
//! | [`ParameterStore`] | configuration and prompts, by version or label | SSM Parameter Store |
//! | [`ResponseCache`] | answers by key, with a TTL | DynamoDB |
//! | [`IdempotencyStore`] | claim / complete / abandon an `Idempotency-Key` | DynamoDB |
//! | [`UsageLedger`] | one usage record per model call, counted once | DynamoDB (+ SQS spill) |
//! | [`BudgetStore`] | budget state, notices, per-minute counters | DynamoDB |
//! | [`AdmissionControl`] | budget and rate-limit decision before the model | [`crate::budget::BudgetAdmission`] over a [`BudgetStore`] |
//! | [`JobStore`] | batch items: claims, leases, results, counts | DynamoDB |
//! | [`ResultsSink`] | finished items and jobs for a consumer | SQS |
//! | [`GuardrailApplier`] | Bedrock's ApplyGuardrail on output text | Bedrock Runtime |
//! | [`Retriever`] | passages from a Knowledge Base | Bedrock Agent Runtime (Retrieve) |
//! | [`RetrievalCache`] | retrieved passages per tenant, with a TTL | DynamoDB |
//! | [`GroundingChecker`] | contextual grounding scores of an answer | Bedrock Runtime (ApplyGuardrail) |
//! | [`BulkInference`] | batch inference jobs: start, status, stop | Bedrock (control plane) |
//! | [`BatchFiles`] | the batch bucket's objects | S3 |
//! | [`Notifier`] | messages for people | SNS |
//! | [`Clock`] | the time, injected so tests need no sleeps | [`SystemClock`] |
//!
//! A disabled capability is a no-op implementation (`NoCache`, `NoLedger`, `AdmitAll`,
//! `NoApplier`), never an `Option` threaded through the code.
//!
//! Failures of a dependency are a [`StoreError`]: which dependency failed, whether it was
//! unreachable, answered with something invalid, or refused a conditional write, and the
//! cause. The HTTP layer maps it through `core::Error::Dependency`, so an outage of DynamoDB
//! is never reported as a configuration problem.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;

use crate::budget::BudgetState;
use crate::cache::{CacheKey, CachedAnswer, Claim};
use crate::error::Error;
use crate::guardrails::BedrockGuardrail;
use crate::jobs::{ItemClaim, ItemRecord, ItemRef, ItemResult, JobCounts, JobError, Quarantined};
use crate::model::{ModelError, ModelRequest, ModelResponse, ModelStream};
use crate::params::{ParamError, Parameter};
use crate::pricing::MicroUsd;
use crate::routing::Route;
use crate::tenancy::Caller;
use crate::usage::UsageRecord;

mod audit;
mod bulk;
mod feedback;

pub use self::audit::{AuditTrail, NoAudit};
pub use self::bulk::{BatchFiles, BulkInference, BulkJobs, Reservations};
pub use self::feedback::FeedbackStore;

/// A service Quarry depends on at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    DynamoDb,
    Ssm,
    Sqs,
    Sns,
    S3,
    Firehose,
    Bedrock,
    KnowledgeBases,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DynamoDb => "DynamoDB",
            Self::Ssm => "SSM Parameter Store",
            Self::Sqs => "SQS",
            Self::Sns => "SNS",
            Self::S3 => "S3",
            Self::Firehose => "Data Firehose",
            Self::Bedrock => "Bedrock",
            Self::KnowledgeBases => "Bedrock Knowledge Bases",
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a dependency failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorKind {
    /// Unreachable, throttled, timed out or failed on its side: the same call may succeed
    /// later.
    Unavailable,
    /// It answered with something we cannot use (a corrupt item, a rejected request).
    Invalid,
    /// A conditional write lost against a concurrent one.
    Conflict,
}

/// A dependency's failure, typed by which dependency and what Quarry was doing with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} ({dependency}) {}: {detail}", kind_text(.kind))]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub dependency: Dependency,
    /// What Quarry keeps there: "response cache", "usage ledger", "jobs store", ...
    pub what: &'static str,
    /// The cause, with its chain (the SDK's `DisplayErrorContext`).
    pub detail: String,
}

fn kind_text(kind: &StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::Unavailable => "unavailable",
        StoreErrorKind::Invalid => "invalid",
        StoreErrorKind::Conflict => "conflict",
    }
}

impl StoreError {
    pub fn new(
        kind: StoreErrorKind,
        dependency: Dependency,
        what: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            dependency,
            what,
            detail: detail.into(),
        }
    }

    pub fn unavailable(
        dependency: Dependency,
        what: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StoreErrorKind::Unavailable, dependency, what, detail)
    }

    pub fn invalid(dependency: Dependency, what: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Invalid, dependency, what, detail)
    }

    pub fn conflict(dependency: Dependency, what: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Conflict, dependency, what, detail)
    }

    pub fn is_retryable(&self) -> bool {
        match self.kind {
            StoreErrorKind::Unavailable | StoreErrorKind::Conflict => true,
            StoreErrorKind::Invalid => false,
        }
    }
}

/// The model port. `model_id` is what Bedrock is called with: a model ID, an inference
/// profile ID or an ARN. `timeout` bounds this one attempt; retries are the caller's.
#[async_trait]
pub trait ModelClient: Send + Sync {
    async fn converse(
        &self,
        model_id: &str,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<ModelResponse, ModelError>;

    /// Starts a streamed answer. Errors before the stream opens are returned here; errors
    /// after it opened arrive as `Err` items of the stream.
    async fn converse_stream(
        &self,
        model_id: &str,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<ModelStream, ModelError>;

    /// Embeds texts with an embedding model (InvokeModel, in the model's own body). A client
    /// without embedding models refuses.
    async fn embed(
        &self,
        model_id: &str,
        request: &crate::embeddings::EmbedRequest,
        timeout: Duration,
    ) -> Result<crate::embeddings::EmbedResponse, ModelError> {
        let _ = (request, timeout);
        Err(ModelError::new(
            crate::model::ModelErrorKind::Validation,
            format!("{model_id} cannot embed here"),
        ))
    }
}

/// Embeddings already computed, per tenant, keyed by model, dimensions and text. Errors fail
/// open: callers log and compute.
#[async_trait]
pub trait EmbeddingCache: Send + Sync {
    /// The vectors of `keys`, in order (`None`: not cached).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<f32>>>, StoreError>;
    async fn put_many(
        &self,
        entries: &[(String, Vec<f32>)],
        ttl: Duration,
    ) -> Result<(), StoreError>;
}

/// Configuration and prompts (SSM Parameter Store in AWS).
#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// `name` may end in a selector: `NAME:VERSION` or `NAME:LABEL`, as SSM accepts.
    async fn get(&self, name: &str, decrypt: bool) -> Result<Parameter, ParamError>;
}

/// The response cache. Errors fail open: callers log, count and carry on.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, StoreError>;
    async fn put(
        &self,
        key: &CacheKey,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Counts a lookup for the statistics (`GET /v1/cache/stats`): a hit and what it saved,
    /// or a miss. A cache without statistics counts nothing.
    async fn count(&self, key: &CacheKey, hit: bool, saved: MicroUsd) -> Result<(), StoreError> {
        let _ = (key, hit, saved);
        Ok(())
    }
}

/// Idempotency keys: a retried request with the same key and body gets the first response,
/// without a second model call or charge.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(
        &self,
        tenant: &str,
        key: &str,
        body_hash: &str,
        window: Duration,
    ) -> Result<Claim, StoreError>;
    async fn complete(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &serde_json::Value,
        window: Duration,
    ) -> Result<(), StoreError>;
    /// Releases a claim whose request failed, so a retry can run.
    async fn abandon(&self, tenant: &str, key: &str) -> Result<(), StoreError>;
}

/// The usage ledger: every model call adds its tokens and cost, exactly once.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    /// Adds the record to the tenant's counters. Implementations retry and spill rather
    /// than lose a record; an error here means it is in neither place.
    async fn record(&self, record: &UsageRecord) -> Result<(), StoreError>;
}

/// Budget state (written by cost-alarm, read by admission), notices sent, and per-minute
/// rate allowances (`quarry_core::rate_limit`).
#[async_trait]
pub trait BudgetStore: Send + Sync {
    async fn state(&self, tenant: &str) -> Result<Option<BudgetState>, StoreError>;
    async fn set_state(&self, tenant: &str, state: &BudgetState) -> Result<(), StoreError>;
    /// True the first time `key` is noticed for `tenant` (the notification is to be sent).
    async fn first_notice(
        &self,
        tenant: &str,
        key: &str,
        keep: Duration,
    ) -> Result<bool, StoreError>;
    /// Releases a notice (its notification could not be sent).
    async fn forget_notice(&self, tenant: &str, key: &str) -> Result<(), StoreError>;
    /// Leases up to `want` from shard `shard` of a tenant's per-minute allowance (`kind`:
    /// `REQ` or `TOK`), whose part on that shard is `cap`; returns what was granted, less
    /// than `want` when the part is (nearly) spent. Never grants past `cap`.
    async fn lease(
        &self,
        tenant: &str,
        minute: i64,
        kind: &str,
        shard: u32,
        want: u64,
        cap: u64,
    ) -> Result<u64, StoreError>;
}

/// The decision taken before the cache and the model: budgets (a blocked tenant is
/// refused, a degraded one switched to a cheaper tier) and rate limits.
#[async_trait]
pub trait AdmissionControl: Send + Sync {
    /// `Err(Error::BudgetExceeded)` (402) or `Err(Error::RateLimited)` (429) to refuse.
    async fn admit(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        route: &Route,
    ) -> Result<crate::admission::Admission, Error>;

    /// Tokens actually used, for tokens-per-minute limits.
    async fn used(&self, _caller: &Caller, _tokens: u64) {}

    /// The decision `admit` would take on routing (degrade or not), without counting the
    /// request against any limit or refusing it: for cache lookups, which cost nothing.
    async fn peek(
        &self,
        _caller: &Caller,
        _feature: Option<&str>,
        _route: &Route,
    ) -> crate::admission::Admission {
        crate::admission::Admission::Proceed
    }
}

/// Batch jobs and their items; also the batch path's idempotency store.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Claims an item for `owner` for `lease`.
    async fn claim(
        &self,
        item: &ItemRef,
        owner: &str,
        lease: Duration,
    ) -> Result<ItemClaim, JobError>;
    /// Records success and updates the header's counts and cost in one transaction.
    async fn succeed(
        &self,
        item: &ItemRef,
        owner: &str,
        result: &ItemResult,
    ) -> Result<(), JobError>;
    /// Records a final failure (counted once, whatever state the item was in).
    async fn fail(
        &self,
        item: &ItemRef,
        reason: &str,
        cost: Option<MicroUsd>,
    ) -> Result<(), JobError>;
    /// Keeps a failed item's message, for a failure its cause can fix (a budget raised):
    /// `quarry batch retry` sends it again.
    async fn keep_for_retry(&self, item: &ItemRef, body: &str) -> Result<(), JobError>;
    /// Puts a failed item that was kept for retry back to `retry` (its failure uncounted)
    /// and returns its message to send again; `None` when the item is not such an item (any
    /// more).
    async fn reopen(&self, item: &ItemRef) -> Result<Option<String>, JobError>;
    /// Gives the item back for a later delivery.
    async fn release(&self, item: &ItemRef, owner: &str, reason: &str) -> Result<(), JobError>;
    /// Announces how many items a job has. A job announced before keeps its count: the
    /// earlier count is returned, and this one ignored.
    async fn expect(&self, tenant: &str, job_id: &str, items: u64)
    -> Result<Option<u64>, JobError>;
    async fn counts(&self, tenant: &str, job_id: &str) -> Result<Option<JobCounts>, JobError>;
    async fn items(&self, tenant: &str, job_id: &str) -> Result<Vec<ItemRecord>, JobError>;
    /// True the first time it is called for a job (to send its completion message once).
    async fn mark_notified(&self, tenant: &str, job_id: &str) -> Result<bool, JobError>;
}

/// Where refused batch messages are kept for the operator.
#[async_trait]
pub trait Quarantine: Send + Sync {
    async fn hold(&self, message: &Quarantined) -> Result<(), StoreError>;
    /// What was held on a day (`YYYY-MM-DD`, UTC), oldest first.
    async fn held(&self, day: &str) -> Result<Vec<Quarantined>, StoreError>;
}

/// The optional results queue: one message per finished item and one per finished job.
#[async_trait]
pub trait ResultsSink: Send + Sync {
    async fn send(&self, message: &serde_json::Value) -> Result<(), StoreError>;
}

/// Bedrock's ApplyGuardrail on a streamed request's input, before the first byte: a block
/// is then a 400 rather than a stream that opens with Bedrock's blocked message. (Converse
/// and ConverseStream apply the guardrail to the output themselves.)
#[async_trait]
pub trait GuardrailApplier: Send + Sync {
    /// True when the guardrail intervenes on this input.
    async fn input_intervenes(
        &self,
        guardrail: &BedrockGuardrail,
        input: &str,
    ) -> Result<bool, StoreError>;
}

/// Passages from a Bedrock Knowledge Base (Retrieve). `timeout` bounds the call.
#[async_trait]
pub trait Retriever: Send + Sync {
    async fn retrieve(
        &self,
        query: &crate::retrieval::RetrievalQuery,
        timeout: Duration,
    ) -> Result<Vec<crate::retrieval::Passage>, StoreError>;
}

/// Retrieved passages, by a key that starts with the tenant's (see
/// [`crate::retrieval::RetrievalPlan::cache_key`]). Errors fail open: callers log and
/// retrieve.
#[async_trait]
pub trait RetrievalCache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<crate::retrieval::Passage>>, StoreError>;
    async fn put(
        &self,
        key: &str,
        passages: &[crate::retrieval::Passage],
        ttl: Duration,
    ) -> Result<(), StoreError>;
}

/// Bedrock Guardrails' contextual grounding check (ApplyGuardrail with the
/// `grounding_source`, `query` and `guard_content` qualifiers). Inputs are within Bedrock's
/// bounds (see [`crate::retrieval::grounding`]).
#[async_trait]
pub trait GroundingChecker: Send + Sync {
    async fn score(
        &self,
        guardrail: &BedrockGuardrail,
        source: &str,
        query: &str,
        answer: &str,
    ) -> Result<crate::retrieval::GroundingScores, StoreError>;
}

/// Fetches the image an OpenAI `image_url` links to, where the deployment allows it: the
/// adapter enforces the hosts, the addresses, the size and the time limit.
#[async_trait]
pub trait ImageFetcher: Send + Sync {
    /// The image's bytes, or why it cannot be had (told to the caller, with a 400).
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// Messages for people (budget thresholds, runaway spend).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, subject: &str, message: &serde_json::Value) -> Result<(), StoreError>;
}

/// The time, injected: adapters that write expiries and leases read it here, so tests move
/// it forward instead of sleeping.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;

    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// Starts at the system's time.
    pub fn new() -> Self {
        Self::at(SystemClock.now_ms())
    }

    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_millis(2_500));
        assert_eq!((c.now_ms(), c.now_secs()), (3_500, 3));
    }

    #[test]
    fn store_errors_name_the_dependency_and_what_was_kept_there() {
        let e = StoreError::unavailable(Dependency::DynamoDb, "idempotency store", "timeout");
        assert_eq!(
            e.to_string(),
            "idempotency store (DynamoDB) unavailable: timeout"
        );
        assert!(e.is_retryable());
        assert!(!StoreError::invalid(Dependency::DynamoDb, "jobs store", "x").is_retryable());
    }
}
