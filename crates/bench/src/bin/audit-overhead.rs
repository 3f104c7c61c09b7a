//! What `full` auditing adds to a request, and the memory its record holds.
//!
//! `quarry_testkit::Stack` starts moto (Firehose delivering to S3) and the emulator with a
//! provisioned stage. Two demo tenants send the same requests through the chat-handler
//! router (production wiring, response cache bypassed): `acme` with auditing off, `globex`
//! with `audit: full`, interleaved round by round. Each request carries about 2 KB of text,
//! so a record holds real content. The added latency is one Firehose PutRecord, here to
//! moto on loopback (a Python server that also writes the S3 object in the call: in AWS,
//! Firehose answers before its buffer reaches S3). The memory is the record itself, held
//! from the end of the answer until PutRecord returns: its size is measured on what arrived
//! in the bucket. Prints a markdown table; `--json PATH` writes the figures.
//! `cargo build --release -p quarry-bench && QUARRY_PYTHON=.venv/bin/python ./target/release/audit-overhead`

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_handler::{AppState, Options};
use clap::Parser;
use quarry_admin::audit::{AuditQuery, AuditReader};
use quarry_bench::{Run, chat_in_process as chat};
use quarry_core::audit::AuditLevel;
use quarry_core::ports::ParameterStore;
use quarry_core::tenancy::TenantDirectory;
use quarry_testkit::Stack;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Measured rounds (one request of each tenant per round).
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 30)]
    warmup: usize,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stack = Stack::start().await;
        let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
        let name = stack.settings.param("tenants");
        let mut directory: TenantDirectory =
            serde_json::from_str(&ssm.get(&name, true).await.expect("tenants").value)
                .expect("directory");
        directory
            .tenants
            .get_mut("globex")
            .expect("globex")
            .audit = Some(AuditLevel::Full);
        quarry_admin::tenants::write(&ssm, &stack.settings, &directory)
            .await
            .expect("write tenants");
        let state = Arc::new(AppState::from_sdk(
            &stack.sdk,
            stack.settings.clone(),
            Options::default(),
        ));
        let text = "The quarterly report covers revenue, costs and hiring across the regions. "
            .repeat(28);
        let body = json!({
            "messages": [{"role": "user", "content": format!("Summarise this: {text}")}],
            "max_tokens": 128, "cache": "bypass"
        });
        let (plain_key, audited_key) = (stack.key("acme").to_owned(), stack.key("globex").to_owned());

        let mut runs: [Run; 2] = Default::default();
        let started = Instant::now();
        for round in 0..args.warmup + args.requests {
            for (run, key) in runs.iter_mut().zip([&plain_key, &audited_key]) {
                let (status, _, elapsed) = chat(&state, key, &body).await;
                if round < args.warmup {
                    continue;
                }
                if status == 200 {
                    run.latencies.push(elapsed);
                } else {
                    run.errors += 1;
                }
            }
        }
        let wall = started.elapsed();

        let today = chrono::Utc::now().date_naive();
        let records = AuditReader::new(&stack.sdk, &stack.settings.audit_bucket)
            .read(&AuditQuery {
                tenant: Some("globex".into()),
                from: today,
                to: today,
                request_id: None,
            })
            .await
            .expect("read the audit bucket");
        let sizes: Vec<usize> = records.iter().map(|r| r.to_string().len() + 1).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        let max = sizes.iter().copied().max().unwrap_or(0);
        let expected = args.warmup + args.requests;

        let [plain, audited] = &runs;
        let added = |p: f64| ms(audited.percentile(p)) - ms(plain.percentile(p));
        println!("### `full` auditing's added latency and memory (moto Firehose on loopback)");
        println!();
        println!("| Tenant | Samples | p50 (ms) | p99 (ms) | Errors |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        for (name, run) in [("audit off", plain), ("audit: full", audited)] {
            println!(
                "| {name} | {} | {:.3} | {:.3} | {} |",
                run.latencies.len(),
                ms(run.percentile(50.0)),
                ms(run.percentile(99.0)),
                run.errors
            );
        }
        println!();
        println!(
            "Added by `full` auditing: {:+.3} ms at p50, {:+.3} ms at p99. Record held per request: {:.0} bytes on average, {max} at most. Records delivered: {} of {expected}. {} rounds in {:.1} s.",
            added(50.0),
            added(99.0),
            mean,
            records.len(),
            args.requests,
            wall.as_secs_f64()
        );
        if let Some(path) = &args.json {
            let figures = |run: &Run| {
                json!({"samples": run.latencies.len(), "errors": run.errors,
                       "p50_ms": ms(run.percentile(50.0)), "p99_ms": ms(run.percentile(99.0))})
            };
            let out = json!({
                "off": figures(plain),
                "full": figures(audited),
                "added_p50_ms": added(50.0),
                "added_p99_ms": added(99.0),
                "record_bytes_mean": mean,
                "record_bytes_max": max,
                "records_delivered": records.len(),
                "requests": expected,
            });
            std::fs::write(path, serde_json::to_vec_pretty(&out).expect("json"))
                .expect("write --json");
        }
    });
}
