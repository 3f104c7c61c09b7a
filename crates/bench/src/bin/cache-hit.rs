//! Cache-hit latency against a direct DynamoDB GetItem on the same endpoint (moto).
//!
//! `quarry_testkit::Stack` starts moto (from `.venv`, or `QUARRY_PYTHON`), the emulator in
//! process, and provisions a stage (tables, SSM configuration, tenants and keys). A
//! `/v1/chat` request at temperature 0 is answered once by the model and stored in the cache
//! table; every later identical request is a hit. The bench then measures, interleaved one
//! by one on one connection pool:
//!
//! - a hit through the chat-handler router (`chat_handler::app(state)` driven in process with
//!   tower's `oneshot`), production wiring: SSM configuration (cached in memory), budget
//!   admission (cached), the cache `GetItem`, and the ledger write of the hit;
//! - the same hit with the ledger as a no-op (everything else identical), to separate the
//!   ledger write from the router's own work;
//! - `GetItem` of the very same cache item straight from DynamoDB with aws-sdk-dynamodb,
//!   through the same endpoint and SDK configuration.
//!
//! Prints a markdown table; `--json PATH` writes the raw figures.
//! `cargo build --release -p quarry-bench && QUARRY_PYTHON=.venv/bin/python ./target/release/cache-hit`

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chat_handler::{AppState, HandlerPorts, Options};
use clap::Parser;
use quarry_aws::ports_from_sdk;
use quarry_bench::{Run, chat_in_process as chat};
use quarry_core::usage::NoLedger;
use quarry_testkit::Stack;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Measured samples of each kind (interleaved).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Unmeasured rounds first (connections, configuration and budget caches warm).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Writes the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// p50 (ms) of the first and of the last tenth of the samples: the usage table grows with every
/// ledger write, so a drift in moto would show here.
fn p50_tenths(run: &Run) -> (f64, f64) {
    let n = run.latencies.len();
    let tenth = (n / 10).max(1).min(n);
    let p50 = |latencies: &[Duration]| {
        Run {
            latencies: latencies.to_vec(),
            ..Run::default()
        }
        .percentile(50.0)
        .as_secs_f64()
            * 1000.0
    };
    (
        p50(&run.latencies[..tenth]),
        p50(&run.latencies[n - tenth..]),
    )
}

fn figures(run: &Run) -> Value {
    let (first, last) = p50_tenths(run);
    json!({
        "samples": run.latencies.len(),
        "errors": run.errors,
        "p50_ms": run.percentile(50.0).as_secs_f64() * 1000.0,
        "p99_ms": run.percentile(99.0).as_secs_f64() * 1000.0,
        "p50_first_tenth_ms": first,
        "p50_last_tenth_ms": last,
    })
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stack = Stack::start().await;
        let key = stack.key("acme").to_owned();
        let production = Arc::new(AppState::from_sdk(
            &stack.sdk,
            stack.settings.clone(),
            Options::default(),
        ));
        // The production wiring, with the ledger as a no-op.
        let no_ledger = {
            let settings = &stack.settings;
            let options = Options::default();
            let ports = HandlerPorts {
                ledger: Arc::new(NoLedger),
                ..HandlerPorts::from_sdk_ports(
                    &ports_from_sdk(&stack.sdk, settings)
                        .with_budget_max_age(options.budget_max_age),
                )
            };
            Arc::new(AppState::with_ports(ports, settings.clone(), options))
        };
        let body = json!({
            "messages": [{"role": "user", "content": "Give me a short status update."}],
            "model": "us.amazon.nova-lite-v1:0",
            "max_tokens": 256,
            "temperature": 0
        });

        let (status, first, _) = chat(&production, &key, &body).await;
        assert_eq!(status, 200, "first answer: {first}");
        assert_eq!(first["cached"], false, "first answer: {first}");
        let (_, second, _) = chat(&production, &key, &body).await;
        assert_eq!(second["cached"], true, "second answer: {second}");
        assert_eq!(stack.model_calls(), 1, "a hit makes no model call");

        // The cached item: the only cache entry of this fresh stage.
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk);
        let table = stack.settings.cache_table.clone();
        let scan = dynamo
            .scan()
            .table_name(&table)
            .send()
            .await
            .expect("scan the cache table");
        let entries: Vec<_> = scan
            .items()
            .iter()
            .filter(|i| i.contains_key("answer"))
            .collect();
        assert_eq!(entries.len(), 1, "one cache entry expected");
        let pk = entries[0]
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .expect("pk")
            .clone();
        let get_item = || {
            let dynamo = dynamo.clone();
            let (table, pk) = (table.clone(), pk.clone());
            async move {
                let started = Instant::now();
                let out = dynamo
                    .get_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(pk))
                    .send()
                    .await;
                let elapsed = started.elapsed();
                let ok = out.is_ok_and(|o| o.item().is_some_and(|i| i.contains_key("answer")));
                (ok, elapsed)
            }
        };

        let (mut hit, mut hit_no_ledger, mut direct) =
            (Run::default(), Run::default(), Run::default());
        let started = Instant::now();
        for round in 0..args.warmup + args.requests {
            let measured = round >= args.warmup;
            let (status, reply, elapsed) = chat(&production, &key, &body).await;
            let ok = status == 200 && reply["cached"] == true;
            let (status2, reply2, elapsed2) = chat(&no_ledger, &key, &body).await;
            let ok2 = status2 == 200 && reply2["cached"] == true;
            let (ok3, elapsed3) = get_item().await;
            if measured {
                for (run, ok, elapsed) in [
                    (&mut hit, ok, elapsed),
                    (&mut hit_no_ledger, ok2, elapsed2),
                    (&mut direct, ok3, elapsed3),
                ] {
                    if ok {
                        run.latencies.push(elapsed);
                    } else {
                        run.errors += 1;
                    }
                }
            }
        }
        let wall = started.elapsed();
        assert_eq!(stack.model_calls(), 1, "every measured request was a hit");

        let ratio = |a: &Run, p: f64| {
            a.percentile(p).as_secs_f64() / direct.percentile(p).as_secs_f64().max(1e-9)
        };
        let row = |name: &str, run: &Run, with_ratio: bool| {
            let r = if with_ratio {
                format!(
                    "{:.2}x | {:.2}x",
                    ratio(run, 50.0),
                    ratio(run, 99.0)
                )
            } else {
                "1 | 1".to_owned()
            };
            format!(
                "| {name} | {} | {:.3} | {:.3} | {r} | {} |",
                run.latencies.len(),
                run.percentile(50.0).as_secs_f64() * 1000.0,
                run.percentile(99.0).as_secs_f64() * 1000.0,
                run.errors
            )
        };
        println!(
            "### Cache hit vs. direct DynamoDB GetItem (moto on loopback, same endpoint and item)"
        );
        println!();
        println!(
            "| Request | Samples | p50 (ms) | p99 (ms) | Ratio to GetItem, p50 | Ratio, p99 | Errors |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "{}",
            row("`GetItem` of the cached item (aws-sdk-dynamodb)", &direct, false)
        );
        println!(
            "{}",
            row(
                "Cache hit through the chat-handler router (production wiring: `GetItem` + ledger transaction)",
                &hit,
                true
            )
        );
        println!(
            "{}",
            row("Cache hit, ledger a no-op (`GetItem` only)", &hit_no_ledger, true)
        );
        println!();
        let (first, last) = p50_tenths(&hit);
        println!(
            "The ledger write is a DynamoDB transaction (usage counters and a marker item per record); p50 of the hit {first:.3} ms over the first tenth of the samples, {last:.3} ms over the last (a drift would come from moto as its usage table grows)."
        );
        println!();
        println!(
            "In process (`chat_handler::app` + tower `oneshot`), sequential, the three kinds interleaved one by one, {} warm-up rounds, {:.1} s; moto is Python, so the absolute figures are moto's, the ratio is what the router adds.",
            args.warmup,
            wall.as_secs_f64()
        );

        if let Some(path) = &args.json {
            let out = json!({
                "get_item": figures(&direct),
                "cache_hit": figures(&hit),
                "cache_hit_no_ledger": figures(&hit_no_ledger),
                "ratio_p50": ratio(&hit, 50.0),
                "ratio_p99": ratio(&hit, 99.0),
                "ratio_no_ledger_p50": ratio(&hit_no_ledger, 50.0),
                "ratio_no_ledger_p99": ratio(&hit_no_ledger, 99.0),
                "warmup": args.warmup,
                "seconds": wall.as_secs_f64(),
            });
            std::fs::write(
                path,
                serde_json::to_string_pretty(&out).expect("json") + "\n",
            )
            .expect("write the JSON figures");
        }
    });
}
