//! Submission: every kept item rendered through the answer pipeline, the job's estimate held
//! against the tenant's budget, the records written to S3 and the Bedrock job created.
//! Items that cannot run in bulk go online; items the pipeline refuses fail as they would
//! online. Each step repeats safely: the hold is per job, the input file is rewritten the
//! same, and the client token makes Bedrock return the job it already created.

use std::collections::BTreeMap;

use quarry_aws::bedrock::native;
use quarry_core::bulk::{BulkJob, BulkPhase, BulkPolicy, BulkSubmission, record_line};
use quarry_core::ports::StoreErrorKind;
use quarry_core::pricing::{MicroUsd, Priced};
use quarry_core::prompts::PromptSelector;
use quarry_core::service::{BulkFit, BulkItem};
use sha2::Digest;

use super::Tracker;
use crate::message;

/// A prompt reference as the item named it: the key of the job's version pins.
pub(super) fn pin_key(name: &str, selector: Option<&PromptSelector>) -> String {
    match selector {
        Some(PromptSelector::Version(v)) => format!("{name}@{v}"),
        Some(PromptSelector::Label(l)) => format!("{name}@label:{l}"),
        _ => format!("{name}@default"),
    }
}

/// Bedrock's job name: `[a-zA-Z0-9](-*[a-zA-Z0-9+\-.])*`, at most 63 characters; the
/// hash keeps it unique for any tenant and job ID.
fn job_name(tenant: &str, job_id: &str) -> String {
    let digest = hex::encode(&sha2::Sha256::digest(format!("{tenant}/{job_id}"))[..8]);
    let readable: String = format!("{tenant}-{job_id}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(36)
        .collect();
    format!("quarry-{readable}-{digest}")
}

impl Tracker {
    /// Location of a job's files in the batch bucket.
    pub(super) fn prefix(&self, job: &BulkJob) -> String {
        format!(
            "s3://{}/quarry-bulk/{}/{}/",
            self.options.bucket, job.tenant, job.job_id
        )
    }

    pub(super) async fn submit(
        &self,
        job: &mut BulkJob,
        policy: &BulkPolicy,
    ) -> Result<(), String> {
        let caller = match self.caller(&job.tenant).await {
            Ok(c) => c,
            Err(reason) => {
                job.phase = BulkPhase::Refused;
                job.message = Some(reason.clone());
                self.save(job).await?;
                return self.fail_all(job, &reason).await;
            }
        };
        let staged = self
            .bulk_jobs
            .staged(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?;
        let mut ready: Vec<(String, BulkItem)> = Vec::new();
        let mut pins = BTreeMap::new();
        for (item_id, body) in staged {
            let input = match message::parse(&body) {
                Ok(m) => m.into_input(),
                Err(e) => {
                    self.take_and_fail(job, &item_id, &format!("invalid message: {}", e.reason))
                        .await?;
                    continue;
                }
            };
            let key = input
                .prompt
                .as_ref()
                .map(|p| pin_key(&p.name, p.selector.as_ref()));
            match self
                .service
                .prepare_bulk(&caller, input, &request_id(job, &item_id))
                .await
            {
                Ok(BulkFit::Bulk(item)) => {
                    if let (Some(k), Some(p)) = (key, &item.prompt) {
                        pins.insert(k, p.version);
                    }
                    ready.push((item_id, *item));
                }
                Ok(BulkFit::Online(why)) => {
                    job.online += u64::from(self.send_online(job, &item_id, &why).await?);
                }
                // Configuration or a dependency unreadable: the whole submission waits.
                Err(e) if e.is_retryable() => return Err(format!("item {item_id}: {e}")),
                Err(e) => {
                    let reason = format!("{}: {e}", e.error_type());
                    self.take_and_fail(job, &item_id, &reason).await?;
                }
            }
        }
        // One Bedrock job runs one model: the model most items route to; the rest online.
        let mut per_model: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, item) in &ready {
            *per_model.entry(item.target.invoke_id.as_str()).or_default() += 1;
        }
        let model = per_model
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(m, _)| (*m).to_owned());
        let (bulk, other): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|(_, item)| Some(&item.target.invoke_id) == model.as_ref());
        for (item_id, item) in &other {
            let why = format!(
                "its route's batch model {} is not the job's",
                item.target.invoke_id
            );
            job.online += u64::from(self.send_online(job, item_id, &why).await?);
        }
        let (Some(first), true) = (bulk.first(), bulk.len() as u64 >= policy.min_items) else {
            let why = format!(
                "{} items can run in bulk; Bedrock needs at least {}",
                bulk.len(),
                policy.min_items
            );
            for (item_id, _) in &bulk {
                job.online += u64::from(self.send_online(job, item_id, &why).await?);
            }
            job.phase = BulkPhase::Settled;
            job.message = Some(format!("ran online: {why}"));
            return self.save(job).await;
        };
        let target = first.1.target.clone();
        let Some(estimate) = self.estimate(&bulk).await? else {
            let why = format!(
                "{} has no batch price in pricing.yaml (add `batch:`): it ran online",
                target.base_id
            );
            for (item_id, _) in &bulk {
                job.online += u64::from(self.send_online(job, item_id, &why).await?);
            }
            job.phase = BulkPhase::Settled;
            job.message = Some(why);
            return self.save(job).await;
        };
        if let Some(refusal) = self.reserve(job, estimate).await? {
            job.phase = BulkPhase::Refused;
            job.message = Some(refusal.clone());
            self.save(job).await?;
            return self
                .fail_all(job, &format!("budget_blocked: {refusal}"))
                .await;
        }
        job.reserved = estimate;
        let mut lines = String::new();
        for (item_id, item) in &bulk {
            let body = native::body(&item.target.base_id, &item.request).map_err(|e| e.message)?;
            lines.push_str(&record_line(item_id, &body));
            lines.push('\n');
        }
        let prefix = self.prefix(job);
        let input_uri = format!("{prefix}input/records.jsonl");
        self.files
            .put(&input_uri, lines.into_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let Some(role_arn) = self.options.role_arn.clone() else {
            let why = "no batch service role is configured (QUARRY_BATCH_ROLE_ARN, the stack's BedrockBatchRole)";
            return self.abandon(job, why, &bulk).await;
        };
        // Bedrock's completion window: the job's deadline when it is further than a day
        // (Bedrock takes 24 to 168 hours), else the turnaround.
        let now = self.clock.now_ms();
        let deadline = self
            .bulk_jobs
            .plan(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|p| p.deadline_ms);
        let timeout_hours = deadline
            .map(|d| u32::try_from(d.saturating_sub(now) / 3_600_000).unwrap_or(u32::MAX))
            .unwrap_or(policy.turnaround_hours)
            .clamp(24, 168);
        let submitted = self
            .bedrock
            .submit(&BulkSubmission {
                job_name: job_name(&job.tenant, &job.job_id),
                model_id: target.invoke_id.clone(),
                role_arn,
                input_uri,
                output_uri: format!("{prefix}output/"),
                client_token: job_name(&job.tenant, &job.job_id),
                timeout_hours,
            })
            .await;
        let arn = match submitted {
            Ok(arn) => arn,
            // Refused for good (a validation error, access denied, a quota): its items run
            // online rather than wait for a job that will never start.
            Err(e) if e.kind == StoreErrorKind::Invalid => {
                return self
                    .abandon(job, &format!("Bedrock refused the job: {e}"), &bulk)
                    .await;
            }
            Err(e) => return Err(e.to_string()),
        };
        let now = self.clock.now_ms();
        job.job_arn = Some(arn);
        job.model = Some(target.invoke_id);
        job.base_model = Some(target.base_id);
        job.records = bulk.len() as u64;
        job.pins = pins;
        job.submitted_ms = Some(now);
        job.bedrock_state = Some(quarry_core::bulk::BulkState::Submitted);
        job.schedule_poll(true, now, policy.poll_secs, policy.max_poll_secs);
        tracing::info!(tenant = %job.tenant, job = %job.job_id, records = job.records, estimate_usd = %estimate.to_usd_string(), "bulk job submitted");
        self.save(job).await
    }

    /// Gives up on bulk for this job: its hold released, its items sent online, the reason
    /// kept in its status.
    async fn abandon(
        &self,
        job: &mut BulkJob,
        why: &str,
        items: &[(String, BulkItem)],
    ) -> Result<(), String> {
        tracing::error!(tenant = %job.tenant, job = %job.job_id, reason = why, "bulk job not submitted; its items run online");
        self.reservations
            .release(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?;
        for (item_id, _) in items {
            job.online += u64::from(self.send_online(job, item_id, why).await?);
        }
        job.reserved = MicroUsd::ZERO;
        job.phase = BulkPhase::Settled;
        job.message = Some(format!("ran online: {why}"));
        self.save(job).await
    }

    /// The job's cost if every record used all its output tokens, at the batch price.
    /// `None`: a model has no batch price (never estimated as free).
    async fn estimate(&self, items: &[(String, BulkItem)]) -> Result<Option<MicroUsd>, String> {
        let pricing = self
            .service
            .configs()
            .pricing()
            .await
            .map_err(|e| e.to_string())?;
        let mut total = MicroUsd::ZERO;
        for (_, item) in items {
            let usage = quarry_core::model::TokenUsage {
                input: item.input_tokens,
                output: item.max_output_tokens,
                ..Default::default()
            };
            match pricing.cost_in_batch(&item.target.base_id, &usage) {
                Priced::Cost(c) => total = total + c,
                Priced::Unpriced => return Ok(None),
            }
        }
        Ok(Some(total))
    }

    /// Holds the estimate against the tenant's monthly budget, beside what the month has
    /// spent and what other bulk jobs hold. `Some(reason)`: refused.
    async fn reserve(&self, job: &BulkJob, estimate: MicroUsd) -> Result<Option<String>, String> {
        let budgets = self
            .service
            .configs()
            .budgets()
            .await
            .map_err(|e| e.to_string())?;
        let limit = budgets
            .as_ref()
            .and_then(|b| b.tenants.get(&job.tenant))
            .map(|b| b.monthly_usd.0);
        let cap = match limit {
            None => MicroUsd(u64::MAX / 4),
            Some(limit) => {
                let month = quarry_core::admission::month_of(self.clock.now_ms());
                let spent = self
                    .reservations
                    .spent(&job.tenant, &month)
                    .await
                    .map_err(|e| e.to_string())?;
                MicroUsd(limit.0.saturating_sub(spent.0))
            }
        };
        let held = self
            .reservations
            .reserve(&job.tenant, &job.job_id, estimate, cap)
            .await
            .map_err(|e| e.to_string())?;
        if held {
            return Ok(None);
        }
        let others = self
            .reservations
            .reserved(&job.tenant)
            .await
            .map_or(MicroUsd::ZERO, |r| r);
        Ok(Some(format!(
            "the job's estimate ${} does not fit the monthly budget: ${} left after this month's spend, ${} of it held by other bulk jobs",
            estimate.to_usd_string(),
            cap.to_usd_string(),
            others.to_usd_string()
        )))
    }

    /// Fails one kept item for good.
    pub(super) async fn take_and_fail(
        &self,
        job: &BulkJob,
        item_id: &str,
        reason: &str,
    ) -> Result<(), String> {
        let item = Self::item(job, item_id);
        if self
            .bulk_jobs
            .take(&item, &self.owner, self.options.lease)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            self.fail_item(job, item_id, reason, None).await?;
        }
        Ok(())
    }
}

/// The ledger ID of a bulk item's record: once per item, whatever reruns.
pub(super) fn request_id(job: &BulkJob, item_id: &str) -> String {
    serde_json::json!(["bulk", job.job_id, item_id]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_bedrock_for_any_ids() {
        let pattern = |s: &str| {
            s.len() <= 63
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
        };
        let long = "x".repeat(128);
        for (t, j) in [
            ("acme", "job-1"),
            ("a.b:c", "j_1:2"),
            (long.as_str(), long.as_str()),
        ] {
            let name = job_name(t, j);
            assert!(pattern(&name), "{name}");
        }
        assert_ne!(job_name("a", "b-c"), job_name("a-b", "c"));
    }
}
