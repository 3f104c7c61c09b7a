//! The results queue's messages, the same from the online worker and the bulk tracker: one
//! per item (sent by each) and one per job, sent once when the job is done.

use quarry_core::ports::{JobStore, ResultsSink};
use serde_json::{Value, json};

/// Sends a message, logging (not failing) when the queue refuses it: results are in the
/// jobs table either way.
pub(crate) async fn notify(sink: Option<&dyn ResultsSink>, message: &Value) {
    if let Some(sink) = sink
        && let Err(e) = sink.send(message).await
    {
        tracing::warn!(error = %e, "results queue message not sent");
    }
}

/// The job's completion message, once: when every announced item has an outcome, or, with
/// `all_settled` (a bulk job's items all have one), when none is in flight.
pub(crate) async fn job_finished(
    jobs: &dyn JobStore,
    sink: Option<&dyn ResultsSink>,
    tenant: &str,
    job_id: &str,
    all_settled: bool,
) {
    if sink.is_none() {
        return;
    }
    let Ok(Some(counts)) = jobs.counts(tenant, job_id).await else {
        return;
    };
    let done = counts.finished() || (all_settled && counts.in_flight() == 0);
    if done && jobs.mark_notified(tenant, job_id).await.unwrap_or(false) {
        notify(
            sink,
            &json!({
                "type": "job", "tenant": tenant, "job_id": job_id,
                "counts": {"submitted": counts.submitted, "succeeded": counts.succeeded, "failed": counts.failed, "in_flight": counts.in_flight()},
                "cost_usd": counts.cost.to_usd_string(),
            }),
        )
        .await;
    }
}
