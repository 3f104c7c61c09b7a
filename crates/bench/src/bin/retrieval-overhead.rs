//! What retrieval adds to a request, cached and uncached, against the emulator's sample
//! Knowledge Base and moto.
//!
//! `quarry_testkit::Stack` starts moto, the emulator in process (serving
//! `infra/knowledge-bases`) and a provisioned stage. Three prompts share one template; they
//! differ only in retrieval:
//!
//! - `bench-plain`: no Knowledge Base;
//! - `bench-rag-fresh`: retrieval with `cache_ttl_seconds: 0`, so every request calls
//!   Retrieve, writes its ledger line and gives the passages to the model;
//! - `bench-rag`: the same retrieval, cached per tenant (one `GetItem`).
//!
//! Each round sends one request of each, interleaved, through the chat-handler router
//! (production wiring), with the response cache bypassed so the model is called every time.
//! The same three run again with the ledger as a no-op (everything else identical): moto
//! serves DynamoDB from one Python process, so the retrieval's ledger transaction queues
//! behind the model call's there, where DynamoDB would run them side by side. A last row
//! times Retrieve alone, through the SDK adapter. Prints a markdown table; `--json PATH`
//! writes the figures.
//! `cargo build --release -p quarry-bench && QUARRY_PYTHON=.venv/bin/python ./target/release/retrieval-overhead`

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_handler::{AppState, HandlerPorts, Options};
use clap::Parser;
use quarry_aws::knowledge::BedrockRetriever;
use quarry_bench::{Run, chat_in_process as chat};
use quarry_core::ports::Retriever;
use quarry_core::retrieval::RetrievalQuery;
use quarry_core::usage::NoLedger;
use quarry_testkit::Stack;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Measured rounds (one request of each kind per round).
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 30)]
    warmup: usize,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn prompt(name: &str, ttl: Option<u64>) -> quarry_core::prompts::PromptSpec {
    let mut spec = json!({
        "name": name,
        "template": "{{ question }}",
        "tier": "fast",
        "parameters": {"max_tokens": 64, "temperature": 0},
        "variables": {"question": {"type": "string"}},
    });
    if let Some(ttl) = ttl {
        spec["knowledge_base"] = json!({"id": "QUARRYDOCS", "top_k": 4, "cache_ttl_seconds": ttl});
    }
    serde_json::from_value(spec).expect("prompt")
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
        let key = stack.key("acme").to_owned();
        let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
        quarry_admin::infra::push_prompts(
            &ssm,
            &stack.settings,
            &[
                prompt("bench-plain", None),
                prompt("bench-rag-fresh", Some(0)),
                prompt("bench-rag", Some(300)),
            ],
        )
        .await
        .expect("push prompts");
        let state = Arc::new(AppState::from_sdk(
            &stack.sdk,
            stack.settings.clone(),
            Options::default(),
        ));
        let no_ledger = {
            let options = Options::default();
            let ports = HandlerPorts {
                ledger: Arc::new(NoLedger),
                ..HandlerPorts::from_sdk_ports(
                    &quarry_aws::ports_from_sdk(&stack.sdk, &stack.settings)
                        .with_budget_max_age(options.budget_max_age),
                )
            };
            Arc::new(AppState::with_ports(ports, stack.settings.clone(), options))
        };
        let body = |name: &str| {
            json!({"prompt": name, "version": 1, "cache": "bypass",
                   "variables": {"question": "How much does Acme pay per sensor each month?"}})
        };
        let (plain_body, fresh_body, cached_body) =
            (body("bench-plain"), body("bench-rag-fresh"), body("bench-rag"));
        let retriever = BedrockRetriever::new(&stack.sdk);
        let query = RetrievalQuery {
            knowledge_base_id: "QUARRYDOCS".into(),
            text: "How much does Acme pay per sensor each month?".into(),
            top_k: 4,
            search_type: None,
            filter: Some(json!({"equals": {"key": "tenant", "value": "acme"}})),
            rerank: None,
        };

        let mut runs: [Run; 7] = Default::default();
        let started = Instant::now();
        for round in 0..args.warmup + args.requests {
            let measured = round >= args.warmup;
            let mut results = Vec::new();
            for (app, body, want_sources, want_cached) in [
                (&state, &plain_body, false, None),
                (&state, &fresh_body, true, Some(false)),
                (&state, &cached_body, true, Some(true)),
                (&no_ledger, &plain_body, false, None),
                (&no_ledger, &fresh_body, true, Some(false)),
                (&no_ledger, &cached_body, true, Some(true)),
            ] {
                let (status, reply, elapsed) = chat(app, &key, body).await;
                let ok = status == 200
                    && reply.get("sources").is_some() == want_sources
                    && (want_cached.is_none()
                        || reply["retrieval"]["cached"].as_bool() == want_cached
                        || round == 0);
                results.push((ok, elapsed));
            }
            let t = Instant::now();
            let ok = retriever
                .retrieve(&query, Duration::from_secs(10))
                .await
                .is_ok_and(|p| !p.is_empty());
            results.push((ok, t.elapsed()));
            if measured {
                for (run, (ok, elapsed)) in runs.iter_mut().zip(results) {
                    if ok {
                        run.latencies.push(elapsed);
                    } else {
                        run.errors += 1;
                    }
                }
            }
        }
        let wall = started.elapsed();
        let [plain, fresh, cached, plain_nl, fresh_nl, cached_nl, retrieve] = &runs;
        let added = |run: &Run, base: &Run, p: f64| ms(run.percentile(p)) - ms(base.percentile(p));
        println!("### Retrieval's added latency (emulator and moto on loopback)");
        println!();
        println!("| Request | Samples | p50 (ms) | p99 (ms) | Added to p50 (ms) | Added to p99 (ms) | Errors |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (name, run, base) in [
            ("Prompt without retrieval", plain, None),
            ("Retrieval, uncached (Retrieve + ledger line + cache write)", fresh, Some(plain)),
            ("Retrieval, cached (one `GetItem`)", cached, Some(plain)),
            ("Prompt without retrieval, ledger a no-op", plain_nl, None),
            ("Retrieval, uncached, ledger a no-op", fresh_nl, Some(plain_nl)),
            ("Retrieval, cached, ledger a no-op", cached_nl, Some(plain_nl)),
            ("Retrieve alone, through the SDK adapter", retrieve, None),
        ] {
            let (a50, a99) = match base {
                Some(b) => (
                    format!("{:+.3}", added(run, b, 50.0)),
                    format!("{:+.3}", added(run, b, 99.0)),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "| {name} | {} | {:.3} | {:.3} | {a50} | {a99} | {} |",
                run.latencies.len(),
                ms(run.percentile(50.0)),
                ms(run.percentile(99.0)),
                run.errors
            );
        }
        println!();
        println!("{} rounds in {:.1} s", args.requests, wall.as_secs_f64());
        if let Some(path) = &args.json {
            let figures = |run: &Run| {
                json!({"samples": run.latencies.len(), "errors": run.errors,
                       "p50_ms": ms(run.percentile(50.0)), "p99_ms": ms(run.percentile(99.0))})
            };
            let out = json!({
                "plain": figures(plain),
                "uncached": figures(fresh),
                "cached": figures(cached),
                "plain_no_ledger": figures(plain_nl),
                "uncached_no_ledger": figures(fresh_nl),
                "cached_no_ledger": figures(cached_nl),
                "retrieve": figures(retrieve),
            });
            std::fs::write(path, serde_json::to_string_pretty(&out).expect("json"))
                .expect("write the figures");
        }
    });
}
