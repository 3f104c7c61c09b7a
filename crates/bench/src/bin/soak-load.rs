//! The load soak (`make soak-load`): starts `quarry dev` (moto, the emulator, the API, the
//! batch poller, the cost-alarm schedule), makes every model throttle 20% of its calls, sends
//! 10,000 distinct chat requests at concurrency 100, then checks that none was lost, that no
//! 5xx other than a deliberate 503/504 came back, and that the ledger equals the sum of the
//! answers' costs exactly (after the spill, if any, is replayed by the schedule).

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use quarry_bench::client;
use quarry_core::pricing::MicroUsd;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Probability that any model call is throttled.
    #[arg(long, default_value_t = 0.2)]
    throttle: f64,
    /// The quarry binary.
    #[arg(long, default_value = "target/release/quarry")]
    quarry: String,
}

/// What `quarry dev` printed.
struct Dev {
    api: String,
    key: String,
    moto: String,
    bedrock: String,
    _child: tokio::process::Child,
}

async fn start_dev(quarry: &str) -> Dev {
    // The stack's own logs (moto, the server) go to a file, for a run that goes wrong.
    let log = std::fs::File::create("target/soak-load-dev.log").expect("target/soak-load-dev.log");
    let mut child = tokio::process::Command::new(quarry)
        .args(["dev", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(log)
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start quarry dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut api, mut key, mut moto, mut bedrock) = (None, None, None, None);
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(v) = line.strip_prefix("Quarry listening on ") {
            api = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("API key (tenant acme): ") {
            key = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("AWS endpoint (moto): ") {
            moto = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Bedrock endpoint: ") {
            bedrock = Some(v.trim().to_owned());
        } else if line.starts_with("Ctrl-C stops everything") {
            break;
        }
    }
    // Keep reading, so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Dev {
        api: api.expect("API URL"),
        key: key.expect("acme key"),
        moto: moto.expect("moto URL"),
        bedrock: bedrock.expect("Bedrock URL"),
        _child: child,
    }
}

#[derive(Default)]
struct Outcome {
    served: u64,
    reported_micros: u64,
    /// `status type` -> count.
    errors: BTreeMap<String, u64>,
    /// `status type` -> the message of its first occurrence.
    examples: BTreeMap<String, String>,
    /// No HTTP response at all.
    transport_errors: u64,
    unexpected_5xx: u64,
    latencies: Vec<Duration>,
}

fn ledger(quarry: &str, dev: &Dev) -> (u64, u64) {
    let out = std::process::Command::new(quarry)
        .args([
            "cost",
            "--aws-endpoint",
            &dev.moto,
            "--stage",
            "dev",
            "report",
            "--tenant",
            "acme",
            "--json",
        ])
        .output()
        .expect("quarry cost report");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        eprintln!(
            "quarry cost report: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Value::Null
    });
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["key"] == "total"))
        .cloned()
        .unwrap_or(Value::Null);
    let cost = row["cost_usd"]
        .as_str()
        .and_then(|c| MicroUsd::parse_usd(c).ok())
        .map_or(0, |m| m.0);
    (row["requests"].as_u64().unwrap_or(0), cost)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let dev = start_dev(&args.quarry).await;
    let http = client(args.concurrency);
    let fault = json!({"model": "*", "throttle_probability": args.throttle});
    let request = http::Request::post(format!("{}/_emulator/faults", dev.bedrock))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(fault.to_string())))
        .expect("fault request");
    let status = http.request(request).await.expect("set faults").status();
    assert!(status.is_success(), "setting the throttle: {status}");

    let next = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, next, outcome) = (http.clone(), next.clone(), outcome.clone());
        let (url, key, total) = (
            format!("{}/v1/chat", dev.api),
            dev.key.clone(),
            args.requests,
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = json!({"messages": [{"role": "user", "content": format!("soak request {i}")}], "temperature": 0.3});
                let request = http::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("request");
                let sent = Instant::now();
                let reply = match http.request(request).await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let bytes = r.into_body().collect().await.map(|b| b.to_bytes());
                        bytes.ok().map(|b| (status, b))
                    }
                    Err(_) => None,
                };
                let mut o = outcome.lock().await;
                o.latencies.push(sent.elapsed());
                let Some((status, bytes)) = reply else {
                    o.transport_errors += 1;
                    continue;
                };
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if status == 200 {
                    o.served += 1;
                    o.reported_micros += body["cost_usd"]
                        .as_str()
                        .and_then(|c| MicroUsd::parse_usd(c).ok())
                        .map_or(0, |m| m.0);
                } else {
                    let kind = body["error"]["type"].as_str().unwrap_or("untyped").to_owned();
                    if status >= 500 && status != 503 && status != 504 {
                        o.unexpected_5xx += 1;
                    }
                    let key = format!("{status} {kind}");
                    let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
                    o.examples.entry(key.clone()).or_insert(message);
                    *o.errors.entry(key).or_default() += 1;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let mut o = outcome.lock().await;

    // The ledger, once any spilled record has been replayed by the cost-alarm schedule.
    let mut ledger_now = ledger(&args.quarry, &dev);
    let waited = Instant::now();
    while ledger_now != (o.served, o.reported_micros) && waited.elapsed() < Duration::from_secs(150)
    {
        tokio::time::sleep(Duration::from_secs(10)).await;
        ledger_now = ledger(&args.quarry, &dev);
    }
    let (ledger_requests, ledger_micros) = ledger_now;
    let lost = o.served.saturating_sub(ledger_requests) + o.transport_errors;
    let double = ledger_requests.saturating_sub(o.served);
    o.latencies.sort();
    let pct = |p: f64| {
        let i = ((p / 100.0) * (o.latencies.len().saturating_sub(1)) as f64).round() as usize;
        o.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let errors: Vec<String> = o.errors.iter().map(|(k, v)| format!("{v} x {k}")).collect();
    println!("| Figure | Value |\n| --- | --- |");
    println!(
        "| Requests (concurrency {}) | {} |",
        args.concurrency, args.requests
    );
    println!(
        "| Throttled model calls | {:.0}% of every model's calls |",
        args.throttle * 100.0
    );
    println!("| Served (200) | {} |", o.served);
    println!(
        "| Errors | {} |",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    for (kind, message) in &o.examples {
        println!(
            "| First {kind} | {} |",
            message.chars().take(240).collect::<String>()
        );
    }
    println!("| Unexpected 5xx (not 503/504) | {} |", o.unexpected_5xx);
    println!("| Requests without a response | {} |", o.transport_errors);
    println!(
        "| Ledger requests / served | {ledger_requests} / {} |",
        o.served
    );
    println!(
        "| Ledger cost / sum of answers | {} / {} |",
        MicroUsd(ledger_micros),
        MicroUsd(o.reported_micros)
    );
    println!("| Records lost / double charges | {lost} / {double} |");
    println!(
        "| Wall time, rate | {:.1} s, {:.0} req/s |",
        elapsed.as_secs_f64(),
        args.requests as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| Latency p50 / p99 | {:.0} ms / {:.0} ms |",
        pct(50.0),
        pct(99.0)
    );
    let ok = lost == 0
        && double == 0
        && o.unexpected_5xx == 0
        && ledger_micros == o.reported_micros
        && o.served > 0;
    if !ok {
        eprintln!("soak-load: FAILED");
        return 1;
    }
    0
}
