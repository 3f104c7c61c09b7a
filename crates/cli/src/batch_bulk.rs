//! `quarry batch` for bulk jobs (Bedrock batch inference): opening a job with its mode,
//! its bulk status, and cancelling it.

use quarry_aws::jobs::DynamoJobs;
use quarry_core::bulk::{JobMode, JobPlan};
use quarry_core::ports::{BulkInference, BulkJobs};

use crate::aws::AwsArgs;

/// Opens the job: announces its items and decides its mode, as the worker would for a job
/// header message. A job opened before keeps its plan (said so).
#[allow(clippy::too_many_arguments)]
pub async fn open_job(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    settings: &quarry_aws::Settings,
    jobs: &DynamoJobs,
    tenant: &str,
    job_id: &str,
    items: u64,
    mode: &str,
    deadline: Option<&str>,
) -> Result<JobPlan, String> {
    let now = chrono::Utc::now().timestamp_millis();
    let deadline = deadline
        .map(|d| quarry_core::bulk::parse_deadline(d, now))
        .transpose()?;
    let requested = JobMode::parse(mode).unwrap_or_default();
    let configs = quarry_core::config::Configs::new(
        std::sync::Arc::new(quarry_aws::ssm::SsmParams::new(sdk)),
        &settings.param_prefix,
        std::time::Duration::from_secs(60),
    );
    let policy = match configs.routing().await {
        Ok(r) => r.bulk.clone(),
        Err(quarry_core::Error::Config(e)) => return Err(aws.failure("the routing", &e)),
        Err(e) => return Err(e.to_string()),
    };
    let plan = quarry_core::bulk::resolve(requested, Some(items), deadline, now, &policy);
    if requested == JobMode::Bulk && plan.mode != JobMode::Bulk {
        return Err(format!(
            "nothing sent: job {job_id} cannot run in bulk: {}",
            plan.reason
        ));
    }
    let in_force = jobs
        .open(tenant, job_id, &plan)
        .await
        .map_err(|e| e.to_string())?;
    if in_force != plan {
        eprintln!(
            "warning: job {job_id} exists already ({} items announced): its count and mode ({}) are kept, and its items that already finished will not run again",
            in_force.expected.map_or("no".into(), |e| e.to_string()),
            in_force.mode.as_str()
        );
    }
    Ok(in_force)
}

/// A bulk job's mode, Bedrock job and counts (after the job's counts).
pub async fn print_status(jobs: &DynamoJobs, tenant: &str, job_id: &str) -> Result<(), String> {
    let plan = jobs.plan(tenant, job_id).await.map_err(|e| e.to_string())?;
    if let Some(p) = &plan {
        println!("mode       {} ({})", p.mode.as_str(), p.reason);
    }
    if plan.is_some_and(|p| p.mode == JobMode::Bulk)
        && let Some(b) = jobs
            .tracked(tenant, job_id)
            .await
            .map_err(|e| e.to_string())?
    {
        println!("bulk       {}", b.status());
        if let Some(arn) = &b.job_arn {
            println!(
                "bedrock    {arn} ({} records, model {})",
                b.records,
                b.model.as_deref().unwrap_or("-")
            );
        }
        if let Some(m) = &b.manifest {
            println!(
                "records    {} processed, {} succeeded, {} failed",
                m.processed_record_count, m.success_record_count, m.error_record_count
            );
        }
        if b.online > 0 {
            println!("online     {} items ran online instead", b.online);
        }
        println!(
            "estimate   ${} (held against the budget until the results are charged)",
            b.reserved.to_usd_string()
        );
        if let Some(msg) = &b.message {
            println!("message    {msg}");
        }
    }
    Ok(())
}

/// Stops a bulk job's Bedrock job (the tracker fails what it did not finish as cancelled).
pub async fn cancel(
    sdk: &aws_config::SdkConfig,
    jobs: &DynamoJobs,
    tenant: &str,
    job_id: &str,
) -> Result<(), String> {
    let job = jobs
        .request_cancel(tenant, job_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("no bulk job {job_id} for tenant {tenant} (online jobs run item by item and cannot be cancelled)")
        })?;
    if !job.is_open() {
        return Err(format!(
            "job {job_id} is {} already: nothing to cancel",
            job.status()
        ));
    }
    match &job.job_arn {
        Some(arn) => {
            quarry_aws::bulk::BedrockBulk::new(sdk)
                .stop(arn)
                .await
                .map_err(|e| format!("{e} (the tracker asks again at its next run)"))?;
            println!(
                "job {job_id}: stopping {arn}; records Bedrock finished keep their results, the others fail as cancelled"
            );
        }
        None => println!("job {job_id}: cancelled before submission; its items fail as cancelled"),
    }
    Ok(())
}
