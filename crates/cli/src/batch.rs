//! `quarry batch`: submit a JSONL file of items, follow a job, fetch its results.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use batch_worker::message::{self, SCHEMA_VERSION};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use quarry_aws::jobs::DynamoJobs;
use quarry_aws::queues::queue_url;
use quarry_aws::sdk::describe;
use quarry_core::jobs::ItemStatus;
use quarry_core::ports::{JobStore, Quarantine};
use serde_json::{Value, json};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: BatchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Validate every line of FILE.jsonl, then send them all to the batch queue.
    Submit {
        file: PathBuf,
        /// The job (lines without `job_id` get it; default: a new ID).
        #[arg(long)]
        job_id: Option<String>,
        /// The tenant (lines without `tenant` get it).
        #[arg(long)]
        tenant: Option<String>,
        /// The queue (default: the stage's batch queue).
        #[arg(long)]
        queue_url: Option<String>,
        /// The service tier of the job's items (lines without `service_tier` get it): `flex`
        /// is cheaper and may wait (a throttled or slow flex call is retried at standard).
        #[arg(long, value_parser = ["flex", "standard", "priority"])]
        service_tier: Option<String>,
        /// `online` (the SQS worker), `bulk` (Bedrock batch inference: half the price, done
        /// within a day) or `auto`: bulk when the job has at least routing's
        /// `bulk.min_items` items (default 100) and its deadline allows.
        #[arg(long, value_parser = ["online", "bulk", "auto"], default_value = "auto")]
        mode: String,
        /// When the job should be done: an RFC 3339 time, or a duration from now (`90m`,
        /// `36h`, `2d`). `auto` runs online when it is sooner than bulk's turnaround.
        #[arg(long)]
        deadline: Option<String>,
    },
    /// Cancel a bulk job: stops its Bedrock batch inference job (StopModelInvocationJob).
    /// Records Bedrock finished before it stopped keep their results; the others fail as
    /// cancelled.
    Cancel {
        job_id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Counts, cost and failures of a job.
    Status {
        job_id: String,
        #[arg(long)]
        tenant: String,
        /// Follow the job: a progress line with an ETA until it is done, then the status.
        #[arg(long)]
        watch: bool,
    },
    /// Every item of a job as JSON Lines.
    Results {
        job_id: String,
        #[arg(long)]
        tenant: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run again the items that failed for a reason their cause can fix (a budget, since
    /// raised): each is taken out of the job's failures and sent to the batch queue again.
    /// Items that failed for good (bad input, a model's refusal) are not.
    Retry {
        job_id: String,
        #[arg(long)]
        tenant: String,
        /// The queue (default: the stage's batch queue).
        #[arg(long)]
        queue_url: Option<String>,
    },
    /// Messages refused before anything was written under the tenant they named (invalid,
    /// unknown tenant, producer not allowed), one JSON object per line.
    Quarantine {
        /// The day (YYYY-MM-DD, UTC); today when absent.
        #[arg(long)]
        day: Option<String>,
    },
}

fn new_job_id() -> String {
    format!("job-{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// Reads and validates every line; returns the message bodies, or every problem found.
fn prepare(
    file: &PathBuf,
    job_id: &str,
    tenant: Option<&str>,
    service_tier: Option<&str>,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => return Err(vec![format!("{}: {e}", file.display())]),
    };
    let mut bodies = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in reader.lines().enumerate() {
        let number = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("line {number}: {e}"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("line {number}: not JSON: {e}"));
                continue;
            }
        };
        if let Some(obj) = value.as_object_mut() {
            obj.entry("schema_version").or_insert(json!(SCHEMA_VERSION));
            obj.entry("job_id").or_insert(json!(job_id));
            obj.entry("item_id")
                .or_insert(json!(format!("line-{number}")));
            if let Some(t) = tenant {
                obj.entry("tenant").or_insert(json!(t));
            }
            if let Some(t) = service_tier {
                obj.entry("service_tier").or_insert(json!(t));
            }
        }
        let body = value.to_string();
        match message::parse(&body) {
            Ok(m) => {
                if m.job_id != job_id {
                    problems.push(format!(
                        "line {number}: job_id '{}' differs from the job '{job_id}'",
                        m.job_id
                    ));
                } else if !seen.insert(m.item_id.clone()) {
                    problems.push(format!(
                        "line {number}: item_id '{}' is used twice",
                        m.item_id
                    ));
                } else {
                    bodies.push((m.tenant, body));
                }
            }
            Err(invalid) => problems.push(format!("line {number}: {}", invalid.reason)),
        }
    }
    if problems.is_empty() && bodies.is_empty() {
        problems.push(format!("{}: no items", file.display()));
    }
    if problems.is_empty() {
        Ok(bodies)
    } else {
        Err(problems)
    }
}

/// Follows a job until it is done: a progress bar over its announced (else started) items,
/// with the rate and an ETA.
async fn follow(jobs: &DynamoJobs, tenant: &str, job_id: &str) -> Result<(), String> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} items finished ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let counts = jobs
            .counts(tenant, job_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no job {job_id} for tenant {tenant}"))?;
        bar.set_length(counts.expected.unwrap_or(counts.submitted));
        bar.set_position(counts.succeeded + counts.failed);
        bar.set_message(format!(
            "{}, {} failed, {} in flight",
            counts.state().as_str(),
            counts.failed,
            counts.in_flight()
        ));
        if counts.state() == quarry_core::jobs::JobState::Done {
            bar.finish();
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Each item's prompt exists (at the version or label it names) and its variables fit, as
/// the worker will check them: a job is not sent to fail item by item.
async fn check_prompts(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    settings: &quarry_aws::Settings,
    items: &[(String, String)],
) -> Result<(), Vec<String>> {
    let store = quarry_core::prompts::PromptStore::new(
        std::sync::Arc::new(quarry_aws::ssm::SsmParams::new(sdk)),
        &settings.param_prefix,
        std::time::Duration::from_secs(300),
    );
    let mut problems = Vec::new();
    for (_, body) in items {
        let Ok(message) = message::parse(body) else {
            continue;
        };
        let item = message.item_id.clone();
        let input = message.into_input();
        let Some(prompt) = input.prompt else {
            continue;
        };
        let selector = prompt
            .selector
            .clone()
            .unwrap_or(quarry_core::prompts::PromptSelector::Default);
        match store.get(&prompt.name, &selector).await {
            Ok(version) => {
                if let Err(e) = version.prompt.render(&input.variables) {
                    problems.push(format!("item {item}: {e}"));
                }
            }
            Err(quarry_core::Error::Config(e)) => {
                problems.push(aws.failure("the prompts", &e));
                break;
            }
            Err(e) => problems.push(format!("item {item}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

pub async fn run(args: BatchArgs) -> Result<(), String> {
    let sdk = args.aws.sdk().await;
    let settings = args.aws.settings();
    let jobs = DynamoJobs::new(&sdk, &settings.jobs_table);
    match args.command {
        BatchCommand::Submit {
            file,
            job_id,
            tenant,
            queue_url: queue,
            service_tier,
            mode,
            deadline,
        } => {
            let job_id = job_id.unwrap_or_else(new_job_id);
            let items = prepare(&file, &job_id, tenant.as_deref(), service_tier.as_deref())
                .map_err(|problems| {
                    format!(
                        "nothing sent; fix these lines first:\n  {}",
                        problems.join("\n  ")
                    )
                })?;
            check_prompts(&args.aws, &sdk, &settings, &items)
                .await
                .map_err(|problems| {
                    format!(
                        "nothing sent; fix these items first:\n  {}",
                        problems.join("\n  ")
                    )
                })?;
            let tenants: std::collections::BTreeSet<&str> =
                items.iter().map(|(t, _)| t.as_str()).collect();
            let [tenant] = tenants.into_iter().collect::<Vec<_>>()[..] else {
                return Err("all items of a job must have the same tenant".into());
            };
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let url = match queue {
                Some(u) => u,
                None => queue_url(&sqs, &settings.batch_queue)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            let plan = crate::batch_bulk::open_job(
                &args.aws,
                &sdk,
                &settings,
                &jobs,
                tenant,
                &job_id,
                items.len() as u64,
                &mode,
                deadline.as_deref(),
            )
            .await?;
            println!("job {job_id}: {} ({})", plan.mode.as_str(), plan.reason);
            let bar = ProgressBar::new(items.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} items sent ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            for chunk in items.chunks(10) {
                let mut pending: Vec<SendMessageBatchRequestEntry> = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, body))| {
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("e{i}"))
                            .message_body(body)
                            .build()
                            .ok()
                    })
                    .collect();
                for attempt in 0..3 {
                    let out = sqs
                        .send_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(pending.clone()))
                        .send()
                        .await
                        .map_err(|e| describe(&e))?;
                    bar.inc(out.successful().len() as u64);
                    let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                    pending.retain(|e| failed.contains(&e.id()));
                    if pending.is_empty() {
                        break;
                    }
                    if attempt == 2 {
                        bar.abandon();
                        return Err(format!(
                            "{} items of job {job_id} could not be sent; resubmitting is safe",
                            pending.len()
                        ));
                    }
                }
            }
            bar.finish();
            println!(
                "job {job_id}: {} items submitted for tenant {tenant}",
                items.len()
            );
        }
        BatchCommand::Retry {
            job_id,
            tenant,
            queue_url: queue,
        } => {
            let items = jobs
                .items(&tenant, &job_id)
                .await
                .map_err(|e| e.to_string())?;
            if items.is_empty() {
                return Err(format!("no items for job {job_id} of tenant {tenant}"));
            }
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let url = match queue {
                Some(u) => u,
                None => queue_url(&sqs, &settings.batch_queue)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            let (mut sent, mut final_failures) = (0, 0);
            for item in &items {
                let item_ref = quarry_core::jobs::ItemRef {
                    tenant: tenant.clone(),
                    job_id: job_id.clone(),
                    item_id: item.item_id.clone(),
                };
                let body = match (item.status, item.retry_body.is_some()) {
                    (ItemStatus::Failed, false) => {
                        final_failures += 1;
                        continue;
                    }
                    (ItemStatus::Failed, true) => {
                        match jobs.reopen(&item_ref).await.map_err(|e| e.to_string())? {
                            Some(body) => body,
                            None => continue,
                        }
                    }
                    // Reopened by an earlier retry whose send failed: sent again (a second
                    // delivery of an item is safe: it runs once).
                    (ItemStatus::Retry, true) => match &item.retry_body {
                        Some(body) => body.clone(),
                        None => continue,
                    },
                    _ => continue,
                };
                if let Err(e) = sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(&body)
                    .send()
                    .await
                {
                    return Err(format!(
                        "item {} was reopened but not sent ({}); run `quarry batch retry` again",
                        item.item_id,
                        describe(&e)
                    ));
                }
                sent += 1;
            }
            println!(
                "job {job_id}: {sent} item(s) sent again; {final_failures} failed for good (not retried)"
            );
        }
        BatchCommand::Quarantine { day } => {
            let day = day.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
            let held = Quarantine::held(&jobs, &day)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            for message in &held {
                let line = serde_json::to_string(message).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            eprintln!("{} quarantined message(s) on {day}", held.len());
        }
        BatchCommand::Cancel { job_id, tenant } => {
            let bedrock = args.aws.bedrock_sdk().await;
            crate::batch_bulk::cancel(&bedrock, &jobs, &tenant, &job_id).await?;
        }
        BatchCommand::Status {
            job_id,
            tenant,
            watch,
        } => {
            if watch {
                follow(&jobs, &tenant, &job_id).await?;
            }
            let counts = jobs
                .counts(&tenant, &job_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no job {job_id} for tenant {tenant}"))?;
            println!("job        {job_id} (tenant {tenant})");
            println!("state      {}", counts.state().as_str());
            if let Some(e) = counts.expected {
                println!("expected   {e}");
            }
            println!("started    {}", counts.submitted);
            println!("succeeded  {}", counts.succeeded);
            println!("failed     {}", counts.failed);
            println!("in flight  {}", counts.in_flight());
            println!("cost       ${}", counts.cost.to_usd_string());
            crate::batch_bulk::print_status(&jobs, &tenant, &job_id).await?;
            let failures: Vec<_> = jobs
                .items(&tenant, &job_id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|i| i.status == ItemStatus::Failed)
                .collect();
            if !failures.is_empty() {
                println!("failures:");
                for f in failures {
                    println!("  {}: {}", f.item_id, f.reason.unwrap_or_default());
                }
            }
        }
        BatchCommand::Results {
            job_id,
            tenant,
            out,
        } => {
            let items = jobs
                .items(&tenant, &job_id)
                .await
                .map_err(|e| e.to_string())?;
            if items.is_empty() {
                return Err(format!("no items for job {job_id} of tenant {tenant}"));
            }
            let mut writer: Box<dyn Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            for item in &items {
                let result = item.result.as_ref();
                let line = json!({
                    "item_id": item.item_id,
                    "status": item.status,
                    "attempts": item.attempts,
                    "output": result.map(|r| r.output.clone()),
                    "json": result.and_then(|r| r.json.clone()),
                    // The field names of a chat answer's `usage`.
                    "usage": result.map(|r| json!({
                        "input_tokens": r.usage.input,
                        "output_tokens": r.usage.output,
                        "cache_read_tokens": r.usage.cache_read,
                        "cache_write_tokens": r.usage.cache_write,
                        "total_tokens": r.usage.input + r.usage.output + r.usage.cache_read + r.usage.cache_write,
                    })),
                    "cost_usd": result.and_then(|r| r.cost).map(|c| c.to_usd_string()),
                    "cached": result.is_some_and(|r| r.cached),
                    "model": result.map(|r| r.model.clone()),
                    "prompt": result.and_then(|r| r.prompt.clone()),
                    "reason": item.reason,
                    "truncated": item.truncated,
                });
                writeln!(writer, "{line}").map_err(|e| e.to_string())?;
            }
            if let Some(path) = out {
                eprintln!("{} items written to {}", items.len(), path.display());
            }
        }
    }
    Ok(())
}
