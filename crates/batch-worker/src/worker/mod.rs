//! The worker: each SQS message is one batch item, run through the shared chat service.
//!
//! * Invalid messages are poison: recorded as failed items with the reason, acknowledged.
//! * Each item is claimed in the jobs table before it runs (the idempotency record): a
//!   finished item is never run or charged again; one running elsewhere is left alone.
//! * Items run concurrently up to a bound; once Bedrock throttles, no new item starts and
//!   the unstarted ones go back to the queue; nothing starts too close to the deadline.
//! * Only retryable failures return to the queue (partial batch response).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use quarry_aws::bootstrap::Metrics;
use quarry_aws::results::SqsResults;
use quarry_aws::{SdkPorts, Settings, ports_from_sdk};
use quarry_core::Error;
use quarry_core::chat::Preparer;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::jobs::{ItemClaim, ItemRef, ItemResult, JobError, Quarantined};
use quarry_core::ports::AdmissionControl;
use quarry_core::ports::JobStore;
use quarry_core::ports::ModelClient;
use quarry_core::ports::ParameterStore;
use quarry_core::ports::ResponseCache;
use quarry_core::ports::UsageLedger;
use quarry_core::ports::{Quarantine, ResultsSink};
use quarry_core::service::{
    AnswerRequest, CacheMode, ChatService, NoApplier, Ports, ServiceOptions,
};
use serde_json::json;
use tokio::time::Instant;

mod intake;

use self::intake::Refusal;
use crate::job_mode::Plans;
use crate::message::{self, Incoming};
use crate::partial::{Disposition, process_batch};
use quarry_core::ports::BulkJobs;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Items of one batch in flight at once.
    pub concurrency: usize,
    /// Kept back from the Lambda deadline.
    pub deadline_margin: Duration,
    /// No item starts with less time than this left.
    pub min_item_time: Duration,
    /// How long a claim holds an item: longer than the function timeout, so only a crashed
    /// invocation's items are ever taken over.
    pub lease: Duration,
    pub config_max_age: Duration,
    pub retry: RetryPolicy,
    /// The results queue (URL), when one is configured.
    pub results_queue: Option<String>,
    /// How long a tenant's budget state is cached in the warm process.
    pub budget_max_age: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            deadline_margin: Duration::from_secs(3),
            min_item_time: Duration::from_secs(2),
            lease: Duration::from_secs(90),
            config_max_age: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            results_queue: None,
            budget_max_age: Duration::from_secs(30),
        }
    }
}

impl WorkerOptions {
    /// `QUARRY_BATCH_CONCURRENCY`, `QUARRY_DEADLINE_MARGIN_MS`, `QUARRY_BATCH_LEASE_SECS`,
    /// `QUARRY_CONFIG_MAX_AGE_SECS`, `QUARRY_RESULTS_QUEUE_URL`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = Self::default();
        let num = |key: &str, default: u64| quarry_aws::settings::env_u64(&get, key, default);
        Ok(Self {
            concurrency: num("QUARRY_BATCH_CONCURRENCY", d.concurrency as u64)?.max(1) as usize,
            deadline_margin: Duration::from_millis(num(
                "QUARRY_DEADLINE_MARGIN_MS",
                d.deadline_margin.as_millis() as u64,
            )?),
            min_item_time: d.min_item_time,
            lease: Duration::from_secs(num("QUARRY_BATCH_LEASE_SECS", d.lease.as_secs())?),
            config_max_age: Duration::from_secs(num(
                "QUARRY_CONFIG_MAX_AGE_SECS",
                d.config_max_age.as_secs(),
            )?),
            retry: d.retry,
            results_queue: get("QUARRY_RESULTS_QUEUE_URL").filter(|v| !v.is_empty()),
            budget_max_age: Duration::from_secs(num(
                "QUARRY_BUDGET_MAX_AGE_SECS",
                d.budget_max_age.as_secs(),
            )?),
        })
    }
}

/// The ports a worker runs on.
pub struct WorkerPorts {
    pub params: Arc<dyn ParameterStore>,
    pub models: Arc<dyn ModelClient>,
    pub cache: Arc<dyn ResponseCache>,
    pub jobs: Arc<dyn JobStore>,
    /// Where refused messages are kept (never in the job they name).
    pub quarantine: Arc<dyn Quarantine>,
    pub admission: Arc<dyn AdmissionControl>,
    pub ledger: Arc<dyn UsageLedger>,
    pub results: Option<Arc<dyn ResultsSink>>,
    pub retrieval: quarry_core::retrieval::RetrievalPorts,
    /// Jobs' plans and the items kept for bulk jobs.
    pub bulk: Arc<dyn BulkJobs>,
    pub audit: Arc<dyn quarry_core::ports::AuditTrail>,
}

impl WorkerPorts {
    /// The adapters of the shared bundle a worker runs on, and the results queue when one
    /// is configured.
    pub fn from_sdk_ports(ports: &SdkPorts, results_queue: Option<&str>) -> Self {
        Self {
            params: ports.params(),
            models: ports.bedrock(),
            cache: ports.cache(),
            jobs: ports.jobs(),
            quarantine: ports.jobs(),
            admission: ports.admission(),
            ledger: ports.ledger(),
            results: results_queue
                .map(|url| Arc::new(SqsResults::new(ports.sdk(), url)) as Arc<dyn ResultsSink>),
            retrieval: ports.retrieval(),
            bulk: ports.jobs(),
            audit: ports.audit(),
        }
    }
}

pub struct Worker {
    options: WorkerOptions,
    service: ChatService,
    jobs: Arc<dyn JobStore>,
    quarantine: Arc<dyn Quarantine>,
    results: Option<Arc<dyn ResultsSink>>,
    /// Jobs' plans (online or bulk), read once per job.
    plans: Plans,
    bulk: Arc<dyn BulkJobs>,
    /// Who holds leases taken by this process.
    owner: String,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Per-batch state shared by its items.
struct Batch {
    deadline: Instant,
    throttled: AtomicBool,
}

impl Worker {
    /// Production wiring: SSM, Bedrock, DynamoDB, SQS.
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings, options: WorkerOptions) -> Self {
        let shared = ports_from_sdk(sdk, settings).with_budget_max_age(options.budget_max_age);
        let ports = WorkerPorts::from_sdk_ports(&shared, options.results_queue.as_deref());
        Self::with_ports(ports, settings, options)
    }

    pub fn with_ports(ports: WorkerPorts, settings: &Settings, options: WorkerOptions) -> Self {
        let preparer =
            Preparer::from_params(ports.params, &settings.param_prefix, options.config_max_age);
        let service = ChatService::new(
            Ports {
                preparer,
                invoker: Arc::new(Invoker::new(ports.models, options.retry.clone())),
                cache: ports.cache,
                admission: ports.admission,
                ledger: ports.ledger,
                applier: Arc::new(NoApplier),
                retrieval: ports.retrieval,
                audit: ports.audit,
            },
            ServiceOptions::default(),
        );
        let owner = format!(
            "worker-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Self {
            options,
            service,
            jobs: ports.jobs,
            quarantine: ports.quarantine,
            results: ports.results,
            plans: Plans::new(ports.bulk.clone()),
            bulk: ports.bulk,
            owner,
        }
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

    /// One Lambda invocation: the batch within the invocation's deadline, then the batch's
    /// metrics (cost, tokens, throttles) flushed before the response is returned: Lambda may
    /// freeze the process once it is sent, so unflushed metrics would wait for the next
    /// invocation, or die with the instance.
    pub async fn invoke(
        &self,
        metrics: &Metrics,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let remaining = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let response = self.handle(event.payload, Instant::now() + remaining).await;
        metrics.flush();
        Ok(response)
    }

    /// Handles one SQS batch; `deadline` is the Lambda's, before the margin.
    pub async fn handle(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let batch = Batch {
            deadline: deadline
                .checked_sub(self.options.deadline_margin)
                .unwrap_or_else(Instant::now),
            throttled: AtomicBool::new(false),
        };
        // Job headers first: an item in the same batch as its job's header follows it.
        let (headers, items): (Vec<_>, Vec<_>) = event
            .records
            .into_iter()
            .partition(|m| m.body.as_deref().is_some_and(message::is_job_header));
        let of = |records| {
            let mut e = SqsEvent::default();
            e.records = records;
            e
        };
        let mut response = process_batch(of(headers), self.options.concurrency, |m| {
            self.item(m, &batch)
        })
        .await;
        let rest = process_batch(of(items), self.options.concurrency, |m| {
            self.item(m, &batch)
        })
        .await;
        response
            .batch_item_failures
            .extend(rest.batch_item_failures);
        response
    }

    async fn notify(&self, message: serde_json::Value) {
        crate::outcomes::notify(self.results.as_deref(), &message).await;
    }

    /// Keeps a refused message for the operator; if the store is down the message returns
    /// (nothing lost: after the queue's receive limit it reaches the dead-letter queue).
    async fn quarantine(
        &self,
        message_id: &str,
        sender: Option<&str>,
        reason: &str,
        claimed: Option<String>,
        body: &str,
    ) -> Disposition {
        metrics::counter!("QuarantinedMessages").increment(1);
        tracing::warn!(message_id, sender, claimed = claimed.as_deref(), %reason, "batch message refused and quarantined");
        let held = Quarantined::new(message_id, sender, reason, claimed, body, now_ms());
        match self.quarantine.hold(&held).await {
            Ok(()) => Disposition::Ack,
            Err(e) => Disposition::Retry(format!("refused message not quarantined: {e}")),
        }
    }

    /// Records a final failure; if the store is down the message returns (nothing lost).
    async fn poison(&self, item: &ItemRef, reason: &str) -> Disposition {
        metrics::counter!("PoisonMessages").increment(1);
        tracing::warn!(tenant = %item.tenant, job = %item.job_id, item = %item.item_id, %reason, "item failed for good");
        match self.jobs.fail(item, reason, None).await {
            Ok(()) => {
                self.notify(json!({"type": "item", "tenant": item.tenant, "job_id": item.job_id, "item_id": item.item_id, "status": "failed", "reason": reason})).await;
                self.job_finished(item).await;
                Disposition::Ack
            }
            Err(e) => Disposition::Retry(format!("failure not recorded: {e}")),
        }
    }

    async fn item(&self, m: SqsMessage, batch: &Batch) -> Disposition {
        let message_id = m.message_id.clone().unwrap_or_default();
        let sender = m.attributes.get("SenderId").cloned();
        let body = m.body.unwrap_or_default();
        // Nothing is written under the tenant a message names before it is established
        // that the message is valid and its sender may speak for that tenant.
        let msg = match message::parse_incoming(&body) {
            Ok(Incoming::Item(msg)) => *msg,
            Ok(Incoming::Job(job)) => {
                return self
                    .open_job(job, &message_id, sender.as_deref(), &body)
                    .await;
            }
            Err(invalid) => {
                let claimed = invalid
                    .ids
                    .map(|ids| format!("{}/{}/{}", ids.tenant, ids.job_id, ids.item_id));
                let reason = format!("invalid message: {}", invalid.reason);
                return self
                    .quarantine(&message_id, sender.as_deref(), &reason, claimed, &body)
                    .await;
            }
        };
        let claimed = || Some(format!("{}/{}/{}", msg.tenant, msg.job_id, msg.item_id));
        let caller = match self.authorise(&msg.tenant, sender.as_deref()).await {
            Ok(c) => c,
            Err(Refusal::Retry(e)) => return Disposition::Retry(e),
            Err(Refusal::Quarantine(reason)) => {
                return self
                    .quarantine(&message_id, sender.as_deref(), &reason, claimed(), &body)
                    .await;
            }
        };
        let item = ItemRef {
            tenant: msg.tenant.clone(),
            job_id: msg.job_id.clone(),
            item_id: msg.item_id.clone(),
        };
        if let Some(done) = self.to_bulk(&msg, &item, &body).await {
            return done;
        }
        if batch.throttled.load(Ordering::Relaxed) {
            return Disposition::Retry("not started: Bedrock is throttling this batch".into());
        }
        if Instant::now() + self.options.min_item_time > batch.deadline {
            return Disposition::Retry(
                "not started: too little time left in this invocation".into(),
            );
        }
        let attempt = match self
            .jobs
            .claim(&item, &self.owner, self.options.lease)
            .await
        {
            Ok(ItemClaim::Run { attempt }) => attempt,
            Ok(ItemClaim::Done(status)) => {
                tracing::info!(job = %item.job_id, item = %item.item_id, ?status, "duplicate delivery of a finished item acknowledged");
                return Disposition::Ack;
            }
            Ok(ItemClaim::Busy) => {
                return Disposition::Retry("running under another invocation's lease".into());
            }
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let request = AnswerRequest {
            // One ledger record per run of the item: each claim is a new attempt and a new
            // model call (after a release, or a result that could not be recorded), so each
            // is charged; a finished item's redelivery runs nothing. JSON keeps IDs that
            // contain ':' apart.
            id: serde_json::json!(["batch", item.job_id, item.item_id, attempt]).to_string(),
            input: msg.into_input(),
            cache: CacheMode::Auto,
            deadline: batch.deadline,
        };
        match self.service.answer(&caller, request).await {
            Ok(answer) => {
                let result = ItemResult::from(&answer);
                match self.record_success(&item, &result).await {
                    Ok(()) => {
                        tracing::info!(job = %item.job_id, item = %item.item_id, attempt, model = %answer.model, "item succeeded");
                        self.notify(json!({
                            "type": "item", "tenant": item.tenant, "job_id": item.job_id, "item_id": item.item_id,
                            "status": "succeeded", "model": answer.model,
                            "cost_usd": answer.cost.map(|c| c.to_usd_string()),
                        }))
                        .await;
                        self.job_finished(&item).await;
                        Disposition::Ack
                    }
                    // Another invocation took the item over: it records the outcome.
                    Err(JobError::LeaseLost(_)) => Disposition::Ack,
                    Err(e) => Disposition::Retry(format!("result not recorded: {e}")),
                }
            }
            Err(Error::BudgetExceeded(_)) => {
                let disposition = self.poison(&item, "budget_blocked").await;
                // Its cause can be fixed (the budget raised, the month over): kept for
                // `quarry batch retry`.
                if matches!(disposition, Disposition::Ack)
                    && let Err(e) = self.jobs.keep_for_retry(&item, &body).await
                {
                    tracing::warn!(error = %e, item = %item.item_id, "budget-blocked item not kept for retry");
                }
                disposition
            }
            Err(e) if e.is_retryable() => {
                if let Error::Invoke(f) = &e
                    && f.was_throttled()
                {
                    batch.throttled.store(true, Ordering::Relaxed);
                }
                let reason = format!("{}: {e}", e.error_type());
                if let Err(err) = self.jobs.release(&item, &self.owner, &reason).await {
                    tracing::warn!(error = %err, "claim not released; it expires with its lease");
                }
                Disposition::Retry(reason)
            }
            Err(e) => {
                self.poison(&item, &format!("{}: {e}", e.error_type()))
                    .await
            }
        }
    }

    /// The result write, retried briefly: the answer is paid for, so losing it would mean
    /// running (and paying for) the item again.
    async fn record_success(&self, item: &ItemRef, result: &ItemResult) -> Result<(), JobError> {
        let mut last = None;
        for delay_ms in [0u64, 100, 400] {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            match self.jobs.succeed(item, &self.owner, result).await {
                Ok(()) => return Ok(()),
                Err(e @ JobError::LeaseLost(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            JobError::Store(quarry_core::ports::StoreError::unavailable(
                quarry_core::ports::Dependency::DynamoDb,
                "jobs store",
                "no attempt was made",
            ))
        }))
    }

    /// Sends the job's completion message once, when every announced item has an outcome.
    async fn job_finished(&self, item: &ItemRef) {
        crate::outcomes::job_finished(
            self.jobs.as_ref(),
            self.results.as_deref(),
            &item.tenant,
            &item.job_id,
            false,
        )
        .await;
    }
}
