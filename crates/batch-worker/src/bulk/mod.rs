//! The bulk tracker: takes each open bulk job one step further, on a schedule (its own
//! Lambda, `bulk-tracker`, every minute; `quarry serve` runs it in-process).
//!
//! ```text
//! collecting --(all items in, or quiet)--> submit: render, estimate, reserve, JSONL, Create
//! running    --(poll with backoff)-------> Bedrock's state, until final
//! settling   --(read output)-------------> per item: charge at batch price, check, store
//! settled
//! ```
//!
//! Every step is written to the job's tracking record before the next begins, and every
//! step can run twice without effect (client token, holds, item claims, ledger IDs): a
//! tracker stopped anywhere resumes from the record and loses nothing.

mod settle;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use quarry_core::bulk::{BulkJob, BulkPhase, BulkPolicy, JobPlan};
use quarry_core::chat::Preparer;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::jobs::ItemRef;
use quarry_core::ports::{
    BatchFiles, BulkInference, BulkJobs, Clock, JobStore, Reservations, ResultsSink, SystemClock,
};
use quarry_core::service::{ChatService, NoApplier, Ports, ServiceOptions};
use quarry_core::tenancy::Caller;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::WorkerPorts;

/// How the tracker's claims on items are named (`tracker-{pid}-{random}`): a claim of a
/// tracker that stopped is found by it.
const OWNER_PREFIX: &str = "tracker-";

/// What the tracker runs on besides the answer pipeline's ports.
pub struct TrackerPorts {
    pub worker: WorkerPorts,
    pub bulk_jobs: Arc<dyn BulkJobs>,
    pub bedrock: Arc<dyn BulkInference>,
    pub files: Arc<dyn BatchFiles>,
    pub reservations: Arc<dyn Reservations>,
    /// The batch queue: items that run online after all are sent back to it.
    pub batch_queue: Arc<dyn ResultsSink>,
}

#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// The batch bucket (`s3://{bucket}/quarry-bulk/{tenant}/{job}/...`).
    pub bucket: String,
    /// The service role Bedrock assumes for the job.
    pub role_arn: Option<String>,
    /// How long an item's outcome is claimed while it is stored.
    pub lease: Duration,
    /// Kept back from the invocation's deadline.
    pub margin: Duration,
    pub config_max_age: Duration,
    /// Overrides routing's `bulk.poll_secs` (and caps `max_poll_secs` at ten times it):
    /// `QUARRY_BULK_POLL_SECS`, for local runs that should not wait minutes.
    pub poll_secs: Option<u64>,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            role_arn: None,
            lease: Duration::from_secs(300),
            margin: Duration::from_secs(10),
            config_max_age: Duration::from_secs(60),
            poll_secs: None,
        }
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackerRun {
    /// Open jobs looked at.
    pub jobs: u64,
    pub submitted: u64,
    /// GetModelInvocationJob calls.
    pub polls: u64,
    /// Items given their outcome.
    pub settled_items: u64,
    pub settled_jobs: u64,
    pub errors: Vec<String>,
}

pub struct Tracker {
    service: ChatService,
    jobs: Arc<dyn JobStore>,
    bulk_jobs: Arc<dyn BulkJobs>,
    bedrock: Arc<dyn BulkInference>,
    files: Arc<dyn BatchFiles>,
    reservations: Arc<dyn Reservations>,
    batch_queue: Arc<dyn ResultsSink>,
    results: Option<Arc<dyn ResultsSink>>,
    clock: Arc<dyn Clock>,
    options: TrackerOptions,
    owner: String,
}

impl TrackerOptions {
    /// From the settings (`QUARRY_BATCH_BUCKET`, `QUARRY_BATCH_ROLE_ARN`) and
    /// `QUARRY_CONFIG_MAX_AGE_SECS`.
    pub fn from_settings(
        settings: &quarry_aws::Settings,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let d = Self::default();
        Ok(Self {
            bucket: settings.batch_bucket.clone(),
            role_arn: settings.batch_role_arn.clone(),
            config_max_age: Duration::from_secs(quarry_aws::settings::env_u64(
                &get,
                "QUARRY_CONFIG_MAX_AGE_SECS",
                d.config_max_age.as_secs(),
            )?),
            poll_secs: get("QUARRY_BULK_POLL_SECS")
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("QUARRY_BULK_POLL_SECS: '{v}' is not a number"))
                })
                .transpose()?,
            ..d
        })
    }
}

impl Tracker {
    /// Production wiring: SSM, DynamoDB, Bedrock's control plane, S3 and SQS.
    pub fn from_sdk(
        sdk: &aws_config::SdkConfig,
        settings: &quarry_aws::Settings,
        options: TrackerOptions,
        results_queue: Option<&str>,
    ) -> Self {
        let shared = quarry_aws::ports_from_sdk(sdk, settings);
        let ports = TrackerPorts {
            worker: WorkerPorts::from_sdk_ports(&shared, results_queue),
            bulk_jobs: shared.jobs(),
            bedrock: Arc::new(quarry_aws::bulk::BedrockBulk::new(sdk)),
            files: Arc::new(quarry_aws::bulk::S3BatchFiles::new(sdk)),
            reservations: shared.budgets(),
            batch_queue: Arc::new(quarry_aws::results::SqsResults::named(
                sdk,
                &settings.batch_queue,
                "batch queue",
            )),
        };
        Self::new(ports, &settings.param_prefix, options)
    }

    pub fn new(ports: TrackerPorts, param_prefix: &str, options: TrackerOptions) -> Self {
        let w = ports.worker;
        let preparer = Preparer::from_params(w.params, param_prefix, options.config_max_age);
        let service = ChatService::new(
            Ports {
                preparer,
                // Bulk items are never invoked one by one here; the invoker is the pipeline's.
                invoker: Arc::new(Invoker::new(w.models, RetryPolicy::default())),
                cache: w.cache,
                admission: w.admission,
                ledger: w.ledger,
                applier: Arc::new(NoApplier),
                retrieval: w.retrieval,
                audit: w.audit,
            },
            ServiceOptions::default(),
        );
        Self {
            service,
            jobs: w.jobs,
            bulk_jobs: ports.bulk_jobs,
            bedrock: ports.bedrock,
            files: ports.files,
            reservations: ports.reservations,
            batch_queue: ports.batch_queue,
            results: w.results,
            clock: Arc::new(SystemClock),
            options,
            owner: format!(
                "tracker-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
        }
    }

    /// One scheduled run: every open job taken one step (or more) further, until the
    /// deadline. A job that fails is reported and retried next run; the others go on.
    pub async fn run(&self, deadline: Instant) -> TrackerRun {
        let mut run = TrackerRun::default();
        let open = match self.bulk_jobs.open_jobs().await {
            Ok(o) => o,
            Err(e) => {
                run.errors.push(format!("open bulk jobs unreadable: {e}"));
                return run;
            }
        };
        let stop = deadline
            .checked_sub(self.options.margin)
            .unwrap_or_else(Instant::now);
        for (tenant, job_id) in open {
            if Instant::now() >= stop {
                break;
            }
            run.jobs += 1;
            if let Err(e) = self.advance(&tenant, &job_id, stop, &mut run).await {
                tracing::error!(%tenant, job = %job_id, error = %e, "bulk job step failed; retried next run");
                run.errors.push(format!("{tenant}/{job_id}: {e}"));
            }
        }
        metrics::gauge!("BulkJobsOpen").set(run.jobs as f64);
        run
    }

    async fn advance(
        &self,
        tenant: &str,
        job_id: &str,
        stop: Instant,
        run: &mut TrackerRun,
    ) -> Result<(), String> {
        let Some(mut job) = self
            .bulk_jobs
            .tracked(tenant, job_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let policy = self.policy().await?;
        let now = self.clock.now_ms();
        if job.phase == BulkPhase::Collecting {
            let plan = self
                .bulk_jobs
                .plan(tenant, job_id)
                .await
                .map_err(|e| e.to_string())?;
            if job.cancel_requested {
                job.phase = BulkPhase::Cancelled;
                job.message = Some("cancelled before it was submitted".into());
                self.save(&job).await?;
                return self.fail_all(&job, "cancelled before submission").await;
            }
            if !self.ready(&job, plan.as_ref(), &policy, now).await? {
                return Ok(());
            }
            job.phase = BulkPhase::Running;
            // No item joins from here on: what is kept now is what is submitted.
            self.save(&job).await?;
        }
        if job.phase == BulkPhase::Running && job.job_arn.is_none() {
            self.submit(&mut job, &policy).await?;
            run.submitted += u64::from(job.job_arn.is_some());
            return Ok(());
        }
        if job.phase == BulkPhase::Running && now >= job.next_poll_ms {
            self.poll(&mut job, &policy, now).await?;
            run.polls += 1;
        }
        if job.phase == BulkPhase::Settling {
            let settled = self.settle(&mut job, &policy, stop).await?;
            run.settled_items += settled;
            run.settled_jobs += u64::from(job.phase == BulkPhase::Settled);
        }
        Ok(())
    }

    /// Whether a collecting job is complete: every announced item is in, or (count not
    /// announced, or items missing) none arrived for the quiet time.
    async fn ready(
        &self,
        job: &BulkJob,
        plan: Option<&JobPlan>,
        policy: &BulkPolicy,
        now: i64,
    ) -> Result<bool, String> {
        let counts = self
            .jobs
            .counts(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if counts.submitted == 0 {
            return Ok(false);
        }
        let all_in = plan
            .and_then(|p| p.expected)
            .is_some_and(|e| counts.submitted >= e);
        let quiet_ms = i64::try_from(policy.quiet_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(all_in || now.saturating_sub(job.last_item_ms) >= quiet_ms)
    }

    /// Asks Bedrock where the job stands; a final state moves it to settling.
    async fn poll(&self, job: &mut BulkJob, policy: &BulkPolicy, now: i64) -> Result<(), String> {
        let Some(arn) = job.job_arn.clone() else {
            return Ok(());
        };
        if job.cancel_requested
            && job
                .bedrock_state
                .is_some_and(|s| !s.is_final() && s != quarry_core::bulk::BulkState::Stopping)
        {
            // `quarry batch cancel` stops it too; asked again here in case that failed.
            if let Err(e) = self.bedrock.stop(&arn).await {
                tracing::warn!(job = %job.job_id, error = %e, "stop not accepted; polled again");
            }
        }
        let status = self.bedrock.status(&arn).await.map_err(|e| e.to_string())?;
        let changed = job.bedrock_state != Some(status.state);
        job.bedrock_state = Some(status.state);
        if status.message.is_some() {
            job.message = status.message;
        }
        job.schedule_poll(changed, now, policy.poll_secs, policy.max_poll_secs);
        if status.state.is_final() {
            job.phase = BulkPhase::Settling;
        }
        tracing::info!(tenant = %job.tenant, job = %job.job_id, state = %job.status(), "bulk job polled");
        self.save(job).await
    }

    async fn policy(&self) -> Result<BulkPolicy, String> {
        let mut policy = self
            .service
            .configs()
            .routing()
            .await
            .map(|r| r.bulk.clone())
            .map_err(|e| e.to_string())?;
        if let Some(p) = self.options.poll_secs {
            policy.poll_secs = p;
            policy.max_poll_secs = policy.max_poll_secs.min(p.saturating_mul(10)).max(p);
        }
        Ok(policy)
    }

    async fn save(&self, job: &BulkJob) -> Result<(), String> {
        self.bulk_jobs.track(job).await.map_err(|e| e.to_string())
    }

    async fn caller(&self, tenant: &str) -> Result<Caller, String> {
        let directory = self
            .service
            .configs()
            .tenants()
            .await
            .map_err(|e| e.to_string())?;
        directory
            .caller(tenant, false, Some("batch".into()))
            .map_err(|e| format!("tenant_not_allowed: {e}"))
    }

    fn item(job: &BulkJob, item_id: &str) -> ItemRef {
        ItemRef {
            tenant: job.tenant.clone(),
            job_id: job.job_id.clone(),
            item_id: item_id.to_owned(),
        }
    }

    /// Sends a bulk item to the online path: marked, then its message sent again with
    /// `mode: online` (a stop between the two is repaired by the next settle, which sends
    /// it again; the worker runs an item once).
    async fn send_online(&self, job: &BulkJob, item_id: &str, why: &str) -> Result<bool, String> {
        let item = Self::item(job, item_id);
        let Some(body) = self
            .bulk_jobs
            .to_online(&item)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let mut message: Value =
            serde_json::from_str(&body).map_err(|e| format!("kept message unreadable: {e}"))?;
        if let Some(m) = message.as_object_mut() {
            m.insert("mode".into(), json!("online"));
        }
        self.batch_queue
            .send(&message)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(job = %job.job_id, item = %item_id, reason = why, "bulk item sent online");
        Ok(true)
    }

    /// Fails an item for good (its claim taken first, so it is counted once).
    async fn fail_item(
        &self,
        job: &BulkJob,
        item_id: &str,
        reason: &str,
        cost: Option<quarry_core::pricing::MicroUsd>,
    ) -> Result<(), String> {
        let item = Self::item(job, item_id);
        self.jobs
            .fail(&item, reason, cost)
            .await
            .map_err(|e| e.to_string())?;
        self.notify(json!({"type": "item", "tenant": job.tenant, "job_id": job.job_id, "item_id": item_id, "status": "failed", "reason": reason}))
            .await;
        Ok(())
    }

    /// Fails every item still kept for the job.
    async fn fail_all(&self, job: &BulkJob, reason: &str) -> Result<(), String> {
        let staged = self
            .bulk_jobs
            .staged(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?;
        for (item_id, _) in staged {
            let item = Self::item(job, &item_id);
            if self
                .bulk_jobs
                .take(&item, &self.owner, self.options.lease)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                self.fail_item(job, &item_id, reason, None).await?;
            }
        }
        self.job_finished(job).await;
        Ok(())
    }

    async fn notify(&self, message: Value) {
        crate::outcomes::notify(self.results.as_deref(), &message).await;
    }

    /// The job's completion message, once, when its items all have an outcome.
    async fn job_finished(&self, job: &BulkJob) {
        crate::outcomes::job_finished(
            self.jobs.as_ref(),
            self.results.as_deref(),
            &job.tenant,
            &job.job_id,
            true,
        )
        .await;
    }
}
