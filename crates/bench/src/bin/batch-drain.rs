//! Batch drain rate: items sent to the batch queue (moto), drained by batch-worker through
//! the local SQS event source mapping, each item a 200 ms model call on the emulator, against
//! the serial rate (one item at a time), for several batch sizes, item concurrencies and
//! numbers of concurrent invocations (pollers).
//!
//! Three set-ups. `lambda`: batches handed to the worker as the Lambda service does (no SQS
//! polling, which is Lambda's job in AWS), job store and ledger in process, SSM and Bedrock
//! over the wire: the worker's own rate. `worker`: the same, fed by the local event source
//! mapping polling SQS on moto, whose receives slow down as the queue grows. `moto`:
//! everything on moto, which bounds the rate: one Python process serving every DynamoDB
//! transaction (three per item: claim, result, ledger) one at a time.
//! `cargo build --release -p quarry-bench && ./target/release/batch-drain` (needs `make venv`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions, WorkerPorts};
use bedrock_emulator::{EmulatorConfig, Latency};
use clap::Parser;
use quarry_aws::bedrock::BedrockModels;
use quarry_aws::ssm::SsmParams;
use quarry_bench::memory_jobs::MemoryJobs;
use quarry_core::admission::AdmitAll;
use quarry_core::cache::NoCache;
use quarry_core::ports::JobStore;
use quarry_core::usage::NoLedger;
use quarry_testkit::{Moto, Stack};

#[derive(Parser)]
struct Args {
    /// Items of the main run.
    #[arg(long, default_value_t = 1000)]
    items: u64,
    /// Items of each comparison run.
    #[arg(long, default_value_t = 300)]
    comparison_items: u64,
    /// Items of the all-moto runs.
    #[arg(long, default_value_t = 200)]
    moto_items: u64,
    #[arg(long, default_value_t = 200)]
    model_ms: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Stores {
    Lambda,
    Worker,
    Moto,
}

struct Run {
    stores: Stores,
    batch_size: i32,
    concurrency: usize,
    pollers: usize,
    items: u64,
}

async fn drain(moto: &Moto, run: &Run, model_ms: u64, job: &str) -> f64 {
    let config = EmulatorConfig {
        latency: Latency {
            ttft_ms: model_ms,
            per_token_ms: 0,
        },
        ..EmulatorConfig::builtin()
    };
    let stack = Stack::start_with(moto.url(), config).await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue = stack.provisioned.batch_queue_url.clone();
    let body = |i: u64| {
        serde_json::json!({
            "schema_version": 1, "job_id": job, "item_id": format!("i{i}"), "tenant": "acme",
            "messages": [{"role": "user", "content": format!("item {i}")}], "model": "amazon.nova-micro-v1:0"
        })
        .to_string()
    };
    let chunks = if run.stores == Stores::Lambda {
        Vec::new()
    } else {
        (0..run.items).collect::<Vec<_>>()
    };
    for chunk in chunks.chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(body(*i))
                    .build()
                    .unwrap()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let arn = quarry_aws::queues::queue_arn(&sqs, &queue).await.unwrap();
    let options = WorkerOptions {
        concurrency: run.concurrency,
        ..WorkerOptions::default()
    };
    let (worker, jobs): (Worker, Arc<dyn JobStore>) = match run.stores {
        Stores::Moto => (
            Worker::from_sdk(&stack.sdk, &stack.settings, options),
            Arc::new(quarry_aws::jobs::DynamoJobs::new(
                &stack.sdk,
                &stack.settings.jobs_table,
            )),
        ),
        Stores::Worker | Stores::Lambda => {
            let jobs = Arc::new(MemoryJobs::default());
            let ports = WorkerPorts {
                params: Arc::new(SsmParams::new(&stack.sdk)),
                models: Arc::new(BedrockModels::new(&stack.sdk)),
                cache: Arc::new(NoCache),
                jobs: jobs.clone(),
                quarantine: jobs.clone(),
                admission: Arc::new(AdmitAll),
                ledger: Arc::new(NoLedger),
                results: None,
                retrieval: Default::default(),
                bulk: jobs.clone(),
                audit: Arc::new(quarry_core::ports::NoAudit),
            };
            (Worker::with_ports(ports, &stack.settings, options), jobs)
        }
    };
    let worker = Arc::new(worker);
    if run.stores == Stores::Lambda {
        return invoke_directly(&worker, run, &body).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..run.pollers {
        let mapping = EventSourceMapping::new(
            sqs.clone(),
            queue.clone(),
            arn.clone(),
            worker.clone(),
            MappingOptions {
                batch_size: run.batch_size,
                visibility_timeout: 60,
                wait_seconds: 1,
                ..MappingOptions::default()
            },
        );
        tasks.push(tokio::spawn(mapping.run()));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = jobs
            .counts("acme", job)
            .await
            .ok()
            .flatten()
            .map_or(0, |c| c.succeeded + c.failed);
        if done >= run.items {
            break;
        }
    }
    let elapsed = started.elapsed();
    for t in tasks {
        t.abort();
    }
    run.items as f64 / elapsed.as_secs_f64()
}

/// `pollers` concurrent "invocations", each handing the worker one batch of `batch_size`
/// messages at a time, as the Lambda service does; the failures of a batch go back in line.
async fn invoke_directly(worker: &Arc<Worker>, run: &Run, body: &dyn Fn(u64) -> String) -> f64 {
    let pending: std::collections::VecDeque<SqsMessage> = (0..run.items)
        .map(|i| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(body(i));
            m.attributes
                .insert("SenderId".into(), "AIDAEXAMPLEPRODUCER".into());
            m
        })
        .collect();
    let queue = Arc::new(tokio::sync::Mutex::new(pending));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..run.pollers {
        let (worker, queue, batch) = (worker.clone(), queue.clone(), run.batch_size as usize);
        tasks.push(tokio::spawn(async move {
            loop {
                let records: Vec<SqsMessage> = {
                    let mut q = queue.lock().await;
                    let n = batch.min(q.len());
                    q.drain(..n).collect()
                };
                if records.is_empty() {
                    break;
                }
                let by_id: Vec<SqsMessage> = records.clone();
                let mut event = SqsEvent::default();
                event.records = records;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let response = worker.handle(event, deadline).await;
                let mut q = queue.lock().await;
                for failure in response.batch_item_failures {
                    if let Some(m) = by_id
                        .iter()
                        .find(|m| m.message_id.as_deref() == Some(failure.item_identifier.as_str()))
                    {
                        q.push_back(m.clone());
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    run.items as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        quarry_aws::bootstrap::init_tracing();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let moto = Moto::start();
        println!(
            "batch drain, {} ms per model call; rate against concurrency x pollers x serial rate",
            args.model_ms
        );
        println!("  stores  items  batch  concurrency  pollers   items/s   serial   ratio");
        let run = |stores, batch_size, concurrency, pollers, items| Run {
            stores,
            batch_size,
            concurrency,
            pollers,
            items,
        };
        let (main, comparison, on_moto) = (args.items, args.comparison_items, args.moto_items);
        for stores in [Stores::Lambda, Stores::Worker, Stores::Moto] {
            let name = match stores {
                Stores::Lambda => "lambda",
                Stores::Worker => "worker",
                Stores::Moto => "moto",
            };
            let serial = drain(&moto, &run(stores, 1, 1, 1, 20), args.model_ms, "serial").await;
            let runs = match stores {
                Stores::Lambda => vec![
                    run(stores, 10, 10, 1, main),
                    run(stores, 10, 5, 1, comparison),
                    run(stores, 5, 5, 1, comparison),
                    run(stores, 10, 10, 4, main),
                    run(stores, 10, 10, 10, main),
                ],
                Stores::Worker => vec![
                    run(stores, 10, 10, 1, main),
                    run(stores, 10, 5, 1, comparison),
                    run(stores, 5, 5, 1, comparison),
                    run(stores, 10, 10, 2, comparison),
                    run(stores, 10, 10, 4, comparison),
                ],
                Stores::Moto => vec![
                    run(stores, 10, 10, 1, on_moto),
                    run(stores, 10, 10, 2, on_moto),
                ],
            };
            for (n, r) in runs.iter().enumerate() {
                let rate = drain(&moto, r, args.model_ms, &format!("drain-{n}")).await;
                let ideal =
                    r.concurrency.min(r.batch_size as usize) as f64 * r.pollers as f64 * serial;
                println!(
                    "  {name:<6}  {:>5}  {:>5}  {:>11}  {:>7}  {:>8.1}  {:>7.2}   {:.2}",
                    r.items,
                    r.batch_size,
                    r.concurrency,
                    r.pollers,
                    rate,
                    serial,
                    rate / ideal
                );
            }
        }
    });
}
