//! `bedrock-emulator`: a local Amazon Bedrock Runtime on loopback.

use std::io::Write;
use std::path::PathBuf;

use bedrock_emulator::{EmulatorConfig, ErrorKind, FaultSpec, Latency};
use clap::Parser;

/// A local Amazon Bedrock Runtime that the unmodified AWS SDKs accept.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "BEDROCK_EMULATOR_HOST")]
    host: String,
    /// Port to bind; 0 picks a free port (printed on start).
    #[arg(long, default_value_t = 8787, env = "BEDROCK_EMULATOR_PORT")]
    port: u16,
    /// YAML or JSON configuration laid over the built-in catalog.
    #[arg(long, env = "BEDROCK_EMULATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Time to first token, in milliseconds (every model without its own latency).
    #[arg(long)]
    ttft_ms: Option<u64>,
    /// Delay per further output token, in milliseconds.
    #[arg(long)]
    per_token_ms: Option<u64>,
    /// The model the fault flags below apply to (a base model ID, or `*` for every model).
    #[arg(long, default_value = "*")]
    fault_model: String,
    /// Limit the fault flags below to calls signed for this region (every region when absent).
    #[arg(long)]
    fault_region: Option<String>,
    /// Throttle the fault model's calls with this probability (0..1).
    #[arg(long)]
    throttle_probability: Option<f64>,
    /// Throttle the fault model's next N calls.
    #[arg(long)]
    throttle_next: Option<u32>,
    /// Fail every call of the fault model with this error (e.g. ServiceUnavailableException).
    #[arg(long)]
    outage: Option<String>,
    /// Extra delay before the fault model's first token, in milliseconds.
    #[arg(long)]
    slow_ms: Option<u64>,
    /// End the fault model's streams with an exception after this many content deltas.
    #[arg(long)]
    mid_stream_error_after: Option<u32>,
    /// Seed of probabilistic faults.
    #[arg(long)]
    seed: Option<u64>,
    /// Folder whose every subfolder `{id}/` is a knowledge base (Retrieve,
    /// RetrieveAndGenerate).
    #[arg(long, env = "BEDROCK_EMULATOR_KNOWLEDGE_BASES")]
    knowledge_bases: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bedrock-emulator: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bedrock-emulator: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => EmulatorConfig::from_file(path).map_err(|e| e.to_string())?,
        None => EmulatorConfig::builtin(),
    };
    if args.ttft_ms.is_some() || args.per_token_ms.is_some() {
        config.latency = Latency {
            ttft_ms: args.ttft_ms.unwrap_or(config.latency.ttft_ms),
            per_token_ms: args.per_token_ms.unwrap_or(config.latency.per_token_ms),
        };
    }
    if args.fault_model != "*" && !config.models.contains_key(&args.fault_model) {
        return Err(format!(
            "--fault-model {} is not a base model of the catalog",
            args.fault_model
        ));
    }
    let faults = match &args.fault_region {
        Some(region) => config.region_faults.entry(region.clone()).or_default(),
        None => &mut config.faults,
    };
    let fault = faults
        .entry(args.fault_model.clone())
        .or_insert_with(FaultSpec::default);
    if let Some(p) = args.throttle_probability {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!(
                "--throttle-probability must be between 0 and 1, not {p}"
            ));
        }
        fault.throttle_probability = p;
    }
    if let Some(n) = args.throttle_next {
        fault.throttle_next = n;
    }
    if let Some(kind) = &args.outage {
        let parsed: ErrorKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
            .map_err(|_| {
                format!(
                    "--outage {kind} is not a Bedrock error type (e.g. ServiceUnavailableException)"
                )
            })?;
        fault.outage = Some(parsed);
    }
    if let Some(ms) = args.slow_ms {
        fault.slow_ms = ms;
    }
    if let Some(n) = args.mid_stream_error_after {
        fault.mid_stream_error_after = Some(n);
    }

    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(dir) = args.knowledge_bases {
        config.knowledge_bases_dir = Some(dir);
    }
    let addr = format!("{}:{}", args.host, args.port);
    let emulator = bedrock_emulator::start(config, addr.as_str())
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    println!("bedrock-emulator listening on {}", emulator.url());
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    emulator.stop().await;
    Ok(())
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}
