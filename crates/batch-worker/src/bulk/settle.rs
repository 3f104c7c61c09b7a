//! Settling: Bedrock's output read back, item by item. An answered record is charged at the
//! batch price and checked (structured output, output guardrails) like any answer, then
//! stored in the jobs table and sent to the results queue. A record Bedrock failed runs
//! online (a retryable error) or fails with Bedrock's error. Items with no record (a job
//! stopped, failed or expired before them) run online, or fail as cancelled. Each item is
//! claimed before its outcome is stored, so a second settle of the same output changes
//! nothing.

use quarry_aws::bedrock::native;
use quarry_core::bulk::{
    BulkJob, BulkPhase, BulkPolicy, BulkState, Manifest, OutputRecord, parse_output_line,
};
use quarry_core::jobs::ItemResult;
use quarry_core::prompts::PromptSelector;
use quarry_core::routing::ModelTarget;
use quarry_core::service::BulkFit;
use quarry_core::tenancy::Caller;
use serde_json::json;
use tokio::time::Instant;

use super::Tracker;
use super::submit::{pin_key, request_id};
use crate::message;

/// A record error worth running online: throttling, Bedrock's own failures, or a line no
/// one could read. A 4xx other than 429 is the record's own fault and is reported.
fn retryable(code: u16) -> bool {
    code == 0 || code == 408 || code == 429 || code >= 500
}

impl Tracker {
    /// Stores the outcome of every item it can before `stop`; returns how many it settled.
    /// The job is `settled` once no item is left in bulk.
    pub(super) async fn settle(
        &self,
        job: &mut BulkJob,
        policy: &BulkPolicy,
        stop: Instant,
    ) -> Result<u64, String> {
        let caller = self.caller(&job.tenant).await?;
        let mut settled = 0;
        if job.bedrock_state.is_some_and(BulkState::has_output) {
            let arn = job.job_arn.clone().unwrap_or_default();
            let prefix = format!(
                "{}output/{}/",
                self.prefix(job),
                quarry_core::bulk::job_id_of(&arn)
            );
            let files = self.files.list(&prefix).await.map_err(|e| e.to_string())?;
            for uri in &files {
                let Some(bytes) = self.files.get(uri).await.map_err(|e| e.to_string())? else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes);
                if uri.ends_with("manifest.json.out") {
                    job.manifest = serde_json::from_str::<Manifest>(&text).ok();
                    continue;
                }
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if Instant::now() >= stop {
                        self.save(job).await?;
                        return Ok(settled);
                    }
                    match parse_output_line(line) {
                        Ok(record) => {
                            settled +=
                                u64::from(self.settle_record(job, &caller, policy, record).await?);
                        }
                        // No record ID: nothing to attribute it to. Its item is still in
                        // bulk below, and goes online or fails with the others.
                        Err(e) => {
                            tracing::error!(job = %job.job_id, error = %e, "unreadable line in bulk output")
                        }
                    }
                }
            }
        }
        // Items Bedrock gave no record for.
        let left = self
            .bulk_jobs
            .staged(&job.tenant, &job.job_id)
            .await
            .map_err(|e| e.to_string())?;
        let state = job.status();
        for (item_id, _) in left {
            if job.cancel_requested {
                self.take_and_fail(job, &item_id, "cancelled").await?;
            } else if policy.retry_failed_online {
                let why = format!("Bedrock returned no record for it (job {state})");
                job.online += u64::from(self.send_online(job, &item_id, &why).await?);
            } else {
                let reason = format!(
                    "bedrock: no record for this item (job {state}): {}",
                    job.message.as_deref().unwrap_or("no message")
                );
                self.take_and_fail(job, &item_id, &reason).await?;
            }
            settled += 1;
        }
        // Items a stopped tracker claimed are stored once their claims expire (a later run
        // takes them); until then the job is not settled.
        let held = self
            .bulk_jobs
            .claimed(&job.tenant, &job.job_id, super::OWNER_PREFIX)
            .await
            .map_err(|e| e.to_string())?;
        if held > 0 {
            tracing::info!(job = %job.job_id, held, "items claimed by a stopped tracker: settled when their claims expire");
            self.save(job).await?;
            return Ok(settled);
        }
        if let Err(e) = self.reservations.release(&job.tenant, &job.job_id).await {
            return Err(format!("budget hold not released: {e}"));
        }
        job.phase = BulkPhase::Settled;
        self.save(job).await?;
        self.job_finished(job).await;
        tracing::info!(tenant = %job.tenant, job = %job.job_id, state = %job.status(), online = job.online, "bulk job settled");
        Ok(settled)
    }

    /// One record's outcome; `false` when it had one already.
    async fn settle_record(
        &self,
        job: &mut BulkJob,
        caller: &Caller,
        policy: &BulkPolicy,
        record: OutputRecord,
    ) -> Result<bool, String> {
        let item_id = record.record_id;
        let item = Self::item(job, &item_id);
        let output = match record.outcome {
            Ok(output) => output,
            Err(e) if policy.retry_failed_online && retryable(e.code) => {
                let why = format!("Bedrock failed the record ({}: {})", e.code, e.message);
                let sent = self.send_online(job, &item_id, &why).await?;
                job.online += u64::from(sent);
                return Ok(sent);
            }
            Err(e) => {
                let reason = format!("bedrock: {} {}", e.code, e.message);
                let taken = self.take(&item).await?;
                if taken.is_some() {
                    self.fail_item(job, &item_id, &reason, None).await?;
                }
                return Ok(taken.is_some());
            }
        };
        let Some(body) = self.take(&item).await? else {
            return Ok(false);
        };
        let base = job.base_model.clone().unwrap_or_default();
        let target = ModelTarget::new(
            job.model.as_deref().unwrap_or(&base),
            &base,
            Default::default(),
        );
        let id = request_id(job, &item_id);
        let response = match native::answer(&base, &output) {
            Ok(r) => r,
            Err(e) => {
                // Billed by Bedrock whatever it says: charged on what the output reports.
                let usage = output_usage(&output);
                let cost = self.service.charge_bulk(caller, &target, &id, usage).await;
                let reason = format!("invalid_output: {}", e.message);
                self.fail_item(job, &item_id, &reason, cost).await?;
                return Ok(true);
            }
        };
        let mut input = match message::parse(&body) {
            Ok(m) => m.into_input(),
            Err(e) => {
                let cost = self
                    .service
                    .charge_bulk(caller, &target, &id, response.usage)
                    .await;
                self.fail_item(
                    job,
                    &item_id,
                    &format!("invalid message: {}", e.reason),
                    cost,
                )
                .await?;
                return Ok(true);
            }
        };
        // Checked against the prompt version that was sent, whatever its label says now.
        if let Some(p) = input.prompt.as_mut()
            && let Some(v) = job.pins.get(&pin_key(&p.name, p.selector.as_ref()))
        {
            p.selector = Some(PromptSelector::Version(*v));
        }
        let prepared = self.service.prepare_bulk(caller, input, &id).await;
        let prepared = match prepared {
            Ok(BulkFit::Bulk(item)) => item,
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "it no longer runs in bulk".into(),
                };
                let cost = self
                    .service
                    .charge_bulk(caller, &target, &id, response.usage)
                    .await;
                let reason = format!("its answer could not be checked: {why}");
                self.fail_item(job, &item_id, &reason, cost).await?;
                return Ok(true);
            }
        };
        let (answer, cost) = self
            .service
            .finish_bulk(caller, *prepared, &id, response)
            .await;
        match answer {
            Ok(answer) => {
                let result = ItemResult::from(&answer);
                self.jobs
                    .succeed(&item, &self.owner, &result)
                    .await
                    .map_err(|e| e.to_string())?;
                self.notify(json!({
                    "type": "item", "tenant": job.tenant, "job_id": job.job_id, "item_id": item_id,
                    "status": "succeeded", "model": answer.model, "mode": "bulk",
                    "cost_usd": answer.cost.map(|c| c.to_usd_string()),
                }))
                .await;
            }
            Err(e) => {
                let reason = format!("{}: {e}", e.error_type());
                self.fail_item(job, &item_id, &reason, cost).await?;
            }
        }
        Ok(true)
    }

    async fn take(&self, item: &quarry_core::jobs::ItemRef) -> Result<Option<String>, String> {
        self.bulk_jobs
            .take(item, &self.owner, self.options.lease)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The usage a model's own output body reports, when it could not be read as an answer.
fn output_usage(output: &serde_json::Value) -> quarry_core::model::TokenUsage {
    let n = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
    let usage = output.get("usage");
    quarry_core::model::TokenUsage {
        input: n(usage.and_then(|u| u.get("input_tokens").or_else(|| u.get("inputTokens"))))
            + n(output.get("prompt_token_count")),
        output: n(usage.and_then(|u| u.get("output_tokens").or_else(|| u.get("outputTokens"))))
            + n(output.get("generation_token_count")),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_bedrock_failures_run_online_a_records_own_fault_is_reported() {
        for code in [0, 408, 429, 500, 503] {
            assert!(retryable(code), "{code}");
        }
        for code in [400, 403, 404, 413, 424] {
            assert!(!retryable(code), "{code}");
        }
    }

    #[test]
    fn usage_is_read_from_any_family_of_output() {
        let claude = serde_json::json!({"usage": {"input_tokens": 12, "output_tokens": 5}});
        let nova = serde_json::json!({"usage": {"inputTokens": 7, "outputTokens": 3}});
        let llama = serde_json::json!({"prompt_token_count": 9, "generation_token_count": 4});
        let u = |v| {
            let u = output_usage(&v);
            (u.input, u.output)
        };
        assert_eq!(u(claude), (12, 5));
        assert_eq!(u(nova), (7, 3));
        assert_eq!(u(llama), (9, 4));
    }
}
