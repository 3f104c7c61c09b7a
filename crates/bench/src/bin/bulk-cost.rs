//! What a batch job costs in each mode at the configured prices (`infra/pricing.yaml`), and
//! what the bulk tracker does per poll of an open job, measured on moto and the emulator.
//!
//! `bulk-cost [--items 1000] [--input-tokens 1000] [--output-tokens 300] [--polls 20]`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::bulk::{Tracker, TrackerOptions};
use batch_worker::{Worker, WorkerOptions};
use clap::Parser;
use quarry_core::model::{ServiceTier, TokenUsage};
use quarry_core::ports::BulkJobs;
use quarry_core::pricing::{MicroUsd, Priced};
use quarry_testkit::{Stack, workspace_root};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    items: u64,
    #[arg(long, default_value_t = 1000)]
    input_tokens: u64,
    #[arg(long, default_value_t = 300)]
    output_tokens: u64,
    /// Status polls of a running job to time.
    #[arg(long, default_value_t = 20)]
    polls: u32,
}

fn usd(p: Priced) -> String {
    match p {
        Priced::Cost(c) => format!("${}", c.to_usd_string()),
        Priced::Unpriced => "unpriced".into(),
    }
}

fn times(p: Priced, n: u64) -> Priced {
    match p {
        Priced::Cost(c) => Priced::Cost(MicroUsd(c.0 * n)),
        Priced::Unpriced => Priced::Unpriced,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let infra =
        quarry_admin::infra::InfraSources::load(&workspace_root().join("infra")).expect("infra/");
    let pricing = &infra.pricing;
    let usage = TokenUsage {
        input: args.input_tokens,
        output: args.output_tokens,
        ..TokenUsage::default()
    };
    println!(
        "A job of {} items, {} input and {} output tokens each, at infra/pricing.yaml's prices:\n",
        args.items, args.input_tokens, args.output_tokens
    );
    println!("| model | online (standard) | online (flex) | bulk (batch inference) |");
    println!("|---|---:|---:|---:|");
    for model in [
        "amazon.nova-micro-v1:0",
        "amazon.nova-lite-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
    ] {
        let each = |p| times(p, args.items);
        // Flex only where routing.yaml says the model serves it.
        let flex = infra
            .routing
            .models
            .get(model)
            .is_some_and(|c| c.serves_tier(ServiceTier::Flex));
        let flex = if flex {
            usd(each(pricing.cost_in_tier(
                model,
                &usage,
                Some(ServiceTier::Flex),
            )))
        } else {
            "no flex tier".into()
        };
        println!(
            "| {model} | {} | {flex} | {} |",
            usd(each(pricing.cost_in_tier(model, &usage, None))),
            usd(each(pricing.cost_in_batch(model, &usage))),
        );
    }

    // The tracker's work per poll of a running job.
    let mut emulator = bedrock_emulator::EmulatorConfig::builtin();
    emulator.batch.step_ms = 3_600_000;
    let stack = Stack::start_with(quarry_testkit::Moto::shared().url(), emulator).await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, WorkerOptions::default());
    let mut bodies = vec![json!({"schema_version": 1, "job_id": "bench", "tenant": "acme", "job": {"items": 100, "mode": "bulk"}}).to_string()];
    bodies.extend((0..100).map(|n| {
        json!({"schema_version": 1, "job_id": "bench", "item_id": format!("i{n}"), "tenant": "acme",
               "messages": [{"role": "user", "content": "Summarize: numbers."}], "tier": "batch"})
        .to_string()
    }));
    for chunk in bodies.chunks(10) {
        let mut e = SqsEvent::default();
        for (n, b) in chunk.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{n}"));
            m.body = Some(b.clone());
            e.records.push(m);
        }
        worker
            .handle(e, tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
    }
    let tracker = Tracker::from_sdk(
        &stack.sdk,
        &stack.settings,
        TrackerOptions {
            bucket: stack.settings.batch_bucket.clone(),
            role_arn: Some("arn:aws:iam::123456789012:role/quarry-bench-batch".into()),
            poll_secs: Some(0),
            ..TrackerOptions::default()
        },
        None,
    );
    let jobs = quarry_aws::jobs::DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table);
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);
    let submitted = Instant::now();
    tracker.run(deadline()).await;
    let submit_ms = submitted.elapsed().as_millis();
    assert!(
        jobs.tracked("acme", "bench")
            .await
            .unwrap()
            .unwrap()
            .job_arn
            .is_some(),
        "the job was not submitted"
    );
    let before = stack.emulator.state().calls(None, None);
    let started = Instant::now();
    for _ in 0..args.polls {
        let run = tracker.run(deadline()).await;
        assert_eq!(run.polls, 1, "{run:?}");
    }
    let per_poll = started.elapsed() / args.polls;
    let bedrock =
        (stack.emulator.state().calls(None, None) - before) as f64 / f64::from(args.polls);
    println!(
        "\nTracker: submitting a 100-item job took {submit_ms} ms; one poll of a running job took {:.1} ms (moto and the emulator on loopback) and made {bedrock:.0} Bedrock call(s) (GetModelInvocationJob), 2 DynamoDB reads (open jobs; tracking record and header) and 2 writes (record, index).",
        per_poll.as_secs_f64() * 1000.0
    );
}
