//! `quarry serve`: the API Lambdas' routers on one port, the batch queue's event source
//! mapping and the cost-alarm schedule, configured from the environment exactly like the
//! Lambdas (`AWS_ENDPOINT_URL*`, `QUARRY_STAGE`, ...).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions, WorkerPorts};
use quarry_aws::Settings;
use quarry_aws::queues::{queue_arn, queue_url};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Seconds between cost-alarm runs.
    #[arg(long, default_value_t = 300, env = "QUARRY_COST_ALARM_INTERVAL_SECS")]
    pub cost_alarm_interval: u64,
    /// Do not poll the batch queue.
    #[arg(long)]
    pub no_batch: bool,
    /// Seconds between bulk-tracker runs (Bedrock batch inference jobs).
    #[arg(long, default_value_t = 60, env = "QUARRY_BULK_TRACKER_INTERVAL_SECS")]
    pub bulk_tracker_interval: u64,
    /// Stop when standard input closes (how `quarry dev` makes sure no server outlives it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    quarry_aws::bootstrap::init_tracing();
    let sdk = quarry_aws::sdk::load().await;
    let settings = Settings::from_env();

    let chat_options = chat_handler::Options::from_lookup(env_lookup)?;
    // The ledger-aggregator Lambda's stream, read here: at once after each answer's record
    // (so a report right after it includes it), and four times a second for the rest.
    let stream = Arc::new(quarry_aws::ledger::stream::LocalStream::new(
        &sdk,
        &settings.usage_table,
    ));
    let sdk_ports = quarry_aws::ports_from_sdk(&sdk, &settings)
        .with_budget_max_age(chat_options.budget_max_age);
    let chat_ports = chat_handler::HandlerPorts {
        ledger: Arc::new(quarry_aws::ledger::stream::SettlingLedger {
            ledger: sdk_ports.ledger(),
            stream: stream.clone(),
        }),
        ..chat_handler::HandlerPorts::from_sdk_ports(&sdk_ports)
    };
    let chat = Arc::new(chat_handler::AppState::with_ports(
        chat_ports,
        settings.clone(),
        chat_options,
    ));
    let cache_options = cache_lookup::CacheOptions::from_lookup(env_lookup)?;
    let cache = Arc::new(cache_lookup::CacheState::from_sdk(
        &sdk,
        &settings,
        cache_options,
    ));
    // `/healthz` exists only here: in AWS, API Gateway and Lambda answer for liveness.
    let app = chat_handler::app(chat)
        .merge(cache_lookup::app(cache))
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        );

    let mut tasks = Vec::new();
    if !args.no_batch {
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let url = queue_url(&sqs, &settings.batch_queue)
            .await
            .map_err(|e| e.to_string())?;
        let arn = queue_arn(&sqs, &url).await.map_err(|e| e.to_string())?;
        let worker_options = WorkerOptions::from_lookup(env_lookup)?;
        let worker_sdk_ports = quarry_aws::ports_from_sdk(&sdk, &settings)
            .with_budget_max_age(worker_options.budget_max_age);
        let worker_ports = WorkerPorts {
            ledger: Arc::new(quarry_aws::ledger::stream::SettlingLedger {
                ledger: worker_sdk_ports.ledger(),
                stream: stream.clone(),
            }),
            ..WorkerPorts::from_sdk_ports(
                &worker_sdk_ports,
                worker_options.results_queue.as_deref(),
            )
        };
        let worker = Arc::new(Worker::with_ports(worker_ports, &settings, worker_options));
        let mapping = EventSourceMapping::new(sqs, url, arn, worker, MappingOptions::default());
        tasks.push(tokio::spawn(mapping.run()));
        // The bulk-tracker Lambda's schedule.
        let options = batch_worker::bulk::TrackerOptions::from_settings(&settings, env_lookup)?;
        let results = env_lookup("QUARRY_RESULTS_QUEUE_URL").filter(|v| !v.is_empty());
        let tracker =
            batch_worker::bulk::Tracker::from_sdk(&sdk, &settings, options, results.as_deref());
        let every = Duration::from_secs(args.bulk_tracker_interval.max(1));
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let run = tracker
                    .run(tokio::time::Instant::now() + Duration::from_secs(300))
                    .await;
                for e in &run.errors {
                    tracing::warn!(error = %e, "bulk tracker");
                }
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        loop {
            ticks.tick().await;
            if let Err(e) = stream.drain(500).await {
                tracing::warn!(error = %e, "ledger stream");
            }
        }
    }));
    let interval = Duration::from_secs(args.cost_alarm_interval.max(1));
    let alarm = cost_alarm::CostAlarm::from_sdk(&sdk, &settings);
    tasks.push(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let now = chrono::Utc::now();
            let event = serde_json::json!({
                "version": "0", "id": "local", "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "000000000000", "region": "us-east-1", "resources": [], "detail": {},
                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            alarm.handle(&event, now).await;
        }
    }));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("Quarry listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let watch_stdin = args.exit_on_stdin_close;
    let stop = async move {
        if watch_stdin {
            tokio::select! {
                _ = shutdown() => {}
                _ = stdin_closed() => {}
            }
        } else {
            shutdown().await;
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    for t in tasks {
        t.abort();
    }
    served.map_err(|e| format!("server error: {e}"))
}

async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

pub async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
