//! Converse requests per second against the Bedrock emulator on loopback, zero latency
//! configured: `cargo run --release -p quarry-bench --bin emulator-load` (or `make bench`).

#![allow(clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use quarry_bench::{Server, Target, client, load, ms};

#[derive(Parser)]
struct Args {
    /// The emulator binary (release build).
    #[arg(long, default_value = "target/release/bedrock-emulator")]
    emulator: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Client worker threads (the emulator has its own process and threads).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = Server::start(&args.emulator, &["--port", "0"], "bedrock-emulator listening on ")
            .await
            .expect("emulator");
        let target = Target {
            uri: format!("{}/model/amazon.nova-lite-v1:0/converse", server.url).parse().expect("uri"),
            body: Bytes::from(
                serde_json::json!({
                    "messages": [{"role": "user", "content": [{"text": "Give me a short status update."}]}],
                    "inferenceConfig": {"maxTokens": 256}
                })
                .to_string(),
            ),
            headers: Vec::new(),
        };
        let http = client(args.concurrency);
        let run = load(&http, &target, args.concurrency, Duration::from_secs(2), Duration::from_secs(args.seconds)).await;
        println!("bedrock-emulator Converse, concurrency {}, zero latency, {} s", args.concurrency, args.seconds);
        println!("  requests/s: {:.0}", run.throughput());
        println!("  p50 {}  p99 {}  errors {}", ms(run.percentile(50.0)), ms(run.percentile(99.0)), run.errors);
    });
}
