//! A message's way in: whether its tenant exists and its producer may speak for it, a job
//! header that opens a job, and an item that belongs to a bulk job (kept for it, not run).

use quarry_core::bulk::{JobMode, Staged};
use quarry_core::jobs::ItemRef;
use quarry_core::tenancy::Caller;

use super::{Worker, now_ms};
use crate::job_mode::Path;
use crate::message::{self, BatchMessage, JobMessage};
use crate::partial::Disposition;

/// Why a message is not run for the tenant it names.
pub(super) enum Refusal {
    /// The directory could not be read: try again.
    Retry(String),
    /// Refused for good: kept for the operator.
    Quarantine(String),
}

impl Worker {
    /// Whether the tenant exists and this producer may speak for it.
    pub(super) async fn authorise(
        &self,
        tenant: &str,
        sender: Option<&str>,
    ) -> Result<Caller, Refusal> {
        let directory = self
            .service
            .configs()
            .tenants()
            .await
            .map_err(|e| Refusal::Retry(e.to_string()))?;
        let caller = directory
            .caller(tenant, false, Some("batch".into()))
            .map_err(|e| Refusal::Quarantine(format!("tenant_not_allowed: {e}")))?;
        if !caller.policy.allows_sender(sender) {
            return Err(Refusal::Quarantine(format!(
                "tenant_not_allowed: this producer may not submit for tenant '{tenant}'"
            )));
        }
        Ok(caller)
    }

    /// A job header: decides the job's mode, once.
    pub(super) async fn open_job(
        &self,
        job: JobMessage,
        message_id: &str,
        sender: Option<&str>,
        body: &str,
    ) -> Disposition {
        let claimed = Some(format!("{}/{}", job.tenant, job.job_id));
        match self.authorise(&job.tenant, sender).await {
            Ok(_) => {}
            Err(Refusal::Retry(e)) => return Disposition::Retry(e),
            Err(Refusal::Quarantine(reason)) => {
                return self
                    .quarantine(message_id, sender, &reason, claimed, body)
                    .await;
            }
        }
        let policy = match self.service.configs().routing().await {
            Ok(r) => r.bulk.clone(),
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let deadline = job
            .job
            .deadline
            .as_deref()
            .and_then(|d| message::deadline_ms(d).ok());
        let plan = quarry_core::bulk::resolve(
            job.job.mode.unwrap_or_default(),
            job.job.items,
            deadline,
            now_ms(),
            &policy,
        );
        match self.plans.open(&job.tenant, &job.job_id, &plan).await {
            Ok(in_force) => {
                tracing::info!(tenant = %job.tenant, job = %job.job_id, mode = in_force.mode.as_str(), reason = %in_force.reason, "job opened");
                Disposition::Ack
            }
            Err(e) => Disposition::Retry(format!("job not opened: {e}")),
        }
    }

    /// Keeps the item for its bulk job when that is its path: `Some` is the message's
    /// disposition; `None` runs it online.
    pub(super) async fn to_bulk(
        &self,
        msg: &BatchMessage,
        item: &ItemRef,
        body: &str,
    ) -> Option<Disposition> {
        let path = match self.plans.path(msg).await {
            Ok(p) => p,
            Err(e) => return Some(Disposition::Retry(format!("job plan unreadable: {e}"))),
        };
        match path {
            Path::Online => return None,
            Path::Bulk => {}
            Path::Wait => {
                return Some(Disposition::Retry(
                    "mode auto: waiting for the job's header message".into(),
                ));
            }
            Path::OpenBulk => {
                let policy = match self.service.configs().routing().await {
                    Ok(r) => r.bulk.clone(),
                    Err(e) => return Some(Disposition::Retry(e.to_string())),
                };
                let deadline = msg
                    .deadline
                    .as_deref()
                    .and_then(|d| message::deadline_ms(d).ok());
                let plan =
                    quarry_core::bulk::resolve(JobMode::Bulk, None, deadline, now_ms(), &policy);
                match self.plans.open(&item.tenant, &item.job_id, &plan).await {
                    Ok(p) if p.mode == JobMode::Bulk => {}
                    Ok(_) => return None,
                    Err(e) => return Some(Disposition::Retry(format!("job not opened: {e}"))),
                }
            }
        }
        match self.bulk.stage(item, body).await {
            Ok(Staged::Kept) => {
                tracing::info!(job = %item.job_id, item = %item.item_id, "item kept for its bulk job");
                Some(Disposition::Ack)
            }
            Ok(Staged::Known) => Some(Disposition::Ack),
            // Its job was submitted before it arrived: it runs online.
            Ok(Staged::Closed) => None,
            Err(e) => Some(Disposition::Retry(format!("item not kept for bulk: {e}"))),
        }
    }
}
