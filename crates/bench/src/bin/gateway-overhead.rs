//! Warm gateway overhead: latency through one of Quarry's APIs minus latency straight to the
//! emulator (zero model latency), p50 and p99, at concurrency 1 and 64 (or `--concurrency`)
//! on loopback, cache bypassed; and the gateway's peak RSS under that load.
//! `cargo build --release -p bedrock-emulator -p quarry-bench && ./target/release/gateway-overhead`
//! (`--api chat|messages|embeddings`: the native chat API, Anthropic's Messages API, or
//! OpenAI's embeddings against Titan v2 through InvokeModel).

#![allow(clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use quarry_bench::{Server, Target, client, load, ms, peak_rss_kib};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/bedrock-emulator")]
    emulator: String,
    #[arg(long, default_value = "target/release/gateway-server")]
    gateway: String,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// The emulator's time to first token: 0 measures the gateway at saturation; a
    /// realistic model latency measures it with 64 requests waiting on models, as in
    /// production.
    #[arg(long, default_value_t = 0)]
    model_latency_ms: u64,
    #[arg(long, value_enum, default_value_t = Api::Chat)]
    api: Api,
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    concurrency: Vec<usize>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Api {
    Chat,
    Messages,
    Embeddings,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ttft = args.model_latency_ms.to_string();
        let emulator = Server::start(&args.emulator, &["--port", "0", "--ttft-ms", &ttft], "bedrock-emulator listening on ")
            .await
            .expect("emulator");
        // The gateway reaches the emulator through the SDK's standard variable only.
        let gateway = {
            let mut cmd = tokio::process::Command::new(&args.gateway);
            cmd.env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &emulator.url)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "bench")
                .env("AWS_SECRET_ACCESS_KEY", "bench")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("RUST_LOG", "warn");
            Server::start_command(cmd, "gateway listening on ").await.expect("gateway")
        };
        let message = "Give me a short status update.";
        let key = vec![("authorization".into(), "Bearer qk_bench_key".into())];
        let converse = Target {
            uri: format!("{}/model/us.anthropic.claude-3-5-haiku-20241022-v1:0/converse", emulator.url).parse().expect("uri"),
            body: Bytes::from(
                serde_json::json!({
                    "messages": [{"role": "user", "content": [{"text": message}]}],
                    "inferenceConfig": {"maxTokens": 256}
                })
                .to_string(),
            ),
            headers: Vec::new(),
        };
        let (direct, through) = match args.api {
            Api::Chat => (converse, Target {
                uri: format!("{}/v1/chat", gateway.url).parse().expect("uri"),
                body: Bytes::from(
                    serde_json::json!({"messages": [{"role": "user", "content": message}], "max_tokens": 256, "cache": "bypass", "tier": "fast"}).to_string(),
                ),
                headers: key,
            }),
            Api::Messages => (converse, Target {
                uri: format!("{}/v1/messages", gateway.url).parse().expect("uri"),
                body: Bytes::from(
                    serde_json::json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 256, "messages": [{"role": "user", "content": message}]}).to_string(),
                ),
                headers: vec![("x-api-key".into(), "qk_bench_key".into()), ("anthropic-version".into(), "2023-06-01".into())],
            }),
            Api::Embeddings => (Target {
                uri: format!("{}/model/amazon.titan-embed-text-v2:0/invoke", emulator.url).parse().expect("uri"),
                body: Bytes::from(serde_json::json!({"inputText": message}).to_string()),
                headers: Vec::new(),
            }, Target {
                uri: format!("{}/v1/embeddings", gateway.url).parse().expect("uri"),
                body: Bytes::from(
                    serde_json::json!({"model": "amazon.titan-embed-text-v2:0", "input": message}).to_string(),
                ),
                headers: key,
            }),
        };
        println!("Gateway overhead ({:?} API: chat-handler router + Bedrock SDK call vs. the direct call to the emulator),", args.api);
        println!(
            "cache bypassed, configuration/cache/ledger in memory, model latency {} ms, {} s per run:",
            args.model_latency_ms, args.seconds
        );
        for &concurrency in &args.concurrency {
            let http = client(concurrency);
            let d = load(&http, &direct, concurrency, Duration::from_secs(1), Duration::from_secs(args.seconds)).await;
            let g = load(&http, &through, concurrency, Duration::from_secs(1), Duration::from_secs(args.seconds)).await;
            let over = |p: f64| g.percentile(p).saturating_sub(d.percentile(p));
            println!(
                "  concurrency {concurrency:>2}: direct p50 {} p99 {} | gateway p50 {} p99 {} | overhead p50 {} p99 {} | {:.0} req/s through the gateway, errors {}",
                ms(d.percentile(50.0)),
                ms(d.percentile(99.0)),
                ms(g.percentile(50.0)),
                ms(g.percentile(99.0)),
                ms(over(50.0)),
                ms(over(99.0)),
                g.throughput(),
                g.errors + d.errors,
            );
        }
        if let Some(kib) = gateway.pid().and_then(peak_rss_kib) {
            println!("  gateway peak RSS: {:.1} MB", kib as f64 / 1024.0);
        }
    });
}
