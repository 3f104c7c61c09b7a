//! Batch drain rate: items sent to the batch queue (moto), drained by batch-worker through
//! the local SQS event source mapping, each item a 200 ms model call on the emulator.
//! Compared with the serial rate (one item at a time), for several batch sizes, item
//! concurrencies and numbers of concurrent invocations (pollers).
//! `cargo build --release -p quarry-bench && ./target/release/batch-drain` (needs `make venv`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions};
use bedrock_emulator::{EmulatorConfig, Latency};
use clap::Parser;
use quarry_core::jobs::JobStore;
use quarry_testkit::{Moto, Stack};

#[derive(Parser)]
struct Args {
    /// Items of the main run.
    #[arg(long, default_value_t = 1000)]
    items: u64,
    /// Items of each comparison run.
    #[arg(long, default_value_t = 300)]
    comparison_items: u64,
    #[arg(long, default_value_t = 200)]
    model_ms: u64,
}

struct Run {
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
    for chunk in (0..run.items).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                let body = serde_json::json!({
                    "schema_version": 1, "job_id": job, "item_id": format!("i{i}"), "tenant": "acme",
                    "messages": [{"role": "user", "content": format!("item {i}")}], "model": "amazon.nova-micro-v1:0"
                });
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(format!("e{i}")).message_body(body.to_string()).build().unwrap()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let arn = quarry_aws::provision::queue_arn(&sqs, &queue)
        .await
        .unwrap();
    let options = WorkerOptions {
        concurrency: run.concurrency,
        ..WorkerOptions::default()
    };
    let worker = Arc::new(Worker::from_sdk(&stack.sdk, &stack.settings, options));
    let jobs = quarry_aws::jobs::DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let moto = Moto::start();
        let serial = drain(
            &moto,
            &Run {
                batch_size: 1,
                concurrency: 1,
                pollers: 1,
                items: 20,
            },
            args.model_ms,
            "serial",
        )
        .await;
        println!(
            "batch drain, {} ms per model call; serial rate {serial:.2} items/s",
            args.model_ms
        );
        let runs = [
            Run {
                batch_size: 10,
                concurrency: 10,
                pollers: 1,
                items: args.items,
            },
            Run {
                batch_size: 10,
                concurrency: 5,
                pollers: 1,
                items: args.comparison_items,
            },
            Run {
                batch_size: 5,
                concurrency: 5,
                pollers: 1,
                items: args.comparison_items,
            },
            Run {
                batch_size: 10,
                concurrency: 10,
                pollers: 2,
                items: args.comparison_items,
            },
            Run {
                batch_size: 10,
                concurrency: 10,
                pollers: 4,
                items: args.comparison_items,
            },
        ];
        println!(
            "  items  batch  concurrency  pollers   items/s   vs concurrency x pollers x serial"
        );
        for (n, run) in runs.iter().enumerate() {
            let rate = drain(&moto, run, args.model_ms, &format!("drain-{n}")).await;
            let ideal =
                run.concurrency.min(run.batch_size as usize) as f64 * run.pollers as f64 * serial;
            println!(
                "  {:>5}  {:>5}  {:>11}  {:>7}  {:>8.1}   {:.2}",
                run.items,
                run.batch_size,
                run.concurrency,
                run.pollers,
                rate,
                rate / ideal
            );
        }
    });
}
