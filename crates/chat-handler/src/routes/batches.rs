//! `GET /v1/batches/{job_id}`: a batch job of the caller's tenant. The job is looked up
//! under the caller's tenant, so another tenant's job is simply not found.

use axum::Json;
use axum::extract::{Path, State};
use quarry_core::Error;
use quarry_core::jobs::JobError;
use quarry_http::batches::BatchStatus;
use quarry_http::{ApiError, Caller, RequestMeta, WithEnvelope};

use crate::routes::Shared;

pub async fn handler(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    WithEnvelope(Path(job_id)): WithEnvelope<Path<String>>,
) -> Result<Json<BatchStatus>, ApiError> {
    let refuse = |e: Error| ApiError::new(e, &meta.request_id);
    let unavailable = |e: JobError| {
        refuse(match e {
            JobError::Store(e) => Error::Dependency(e),
            JobError::LeaseLost(m) => Error::Internal(format!("lost the lease on {m}")),
        })
    };
    if !quarry_core::jobs::id_ok(&job_id) {
        return Err(refuse(Error::bad_request(
            "job_id",
            "a job ID is 1 to 128 characters of A-Z a-z 0-9 - _ . :",
        )));
    }
    let counts = state
        .jobs
        .counts(&caller.tenant, &job_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            refuse(Error::NotFound(format!(
                "no batch job '{job_id}' for tenant '{}'",
                caller.tenant
            )))
        })?;
    let items = state
        .jobs
        .items(&caller.tenant, &job_id)
        .await
        .map_err(unavailable)?;
    let plan = state
        .bulk_jobs
        .plan(&caller.tenant, &job_id)
        .await
        .map_err(unavailable)?;
    let bulk = match &plan {
        Some(p) if p.mode == quarry_core::bulk::JobMode::Bulk => state
            .bulk_jobs
            .tracked(&caller.tenant, &job_id)
            .await
            .map_err(unavailable)?,
        _ => None,
    };
    Ok(Json(
        BatchStatus::new(&job_id, &counts, &items).with_plan(plan.as_ref(), bulk.as_ref()),
    ))
}
