//! Cold start of each Lambda binary under a local Lambda Runtime API: the time from the
//! process start (just before `spawn`) to its first `GET /runtime/invocation/next`, which is
//! what Lambda reports as Init Duration. The process gets the environment Lambda gives a
//! `provided.al2023` function (see [`lambda_env`]): region and temporary credentials in
//! `AWS_*` variables, the `AWS_LAMBDA_*` ones, no `HOME`, and the template's own variables.
//! Then one invocation with the sample event, to show the runtime loop works: it answers (an
//! error, since no AWS is reachable, after the SDK's own connection retries; its time is not
//! a figure of interest).
//!
//! One variable Lambda does not set: `AWS_ENDPOINT_URL`, pointing every AWS client at a
//! closed port on loopback, so that the invocation after init sends nothing off this machine
//! (and any AWS call during init would fail or stall visibly). Endpoints are resolved per
//! request: init takes the same time with and without it.
//!
//! `cargo build --release -p chat-handler -p batch-worker -p cache-lookup -p cost-alarm -p ledger-aggregator`, then
//! `cargo build --release -p quarry-bench --bin cold-start` (separately: built together, the
//! Lambdas would get the test harness's features), then `./target/release/cold-start`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release")]
    dir: String,
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

/// What the runtime API saw of one process.
#[derive(Default)]
struct Seen {
    first_next: Option<Instant>,
    response: Option<Vec<u8>>,
    init_error: Option<String>,
}

struct Api {
    event: Vec<u8>,
    seen: Mutex<Seen>,
    done: Notify,
}

async fn handle(
    api: Arc<Api>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let now = Instant::now();
    if path.ends_with("/invocation/next") {
        let first = {
            let mut seen = api.seen.lock().unwrap();
            let first = seen.first_next.is_none();
            if first {
                seen.first_next = Some(now);
            }
            first
        };
        if !first {
            // The one invocation is over: hold the runtime here until it is killed.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 30_000;
        let response = Response::builder()
            .header(
                "lambda-runtime-aws-request-id",
                "00000000-0000-0000-0000-000000000001",
            )
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000001",
            )
            .body(Full::new(Bytes::from(api.event.clone())))
            .unwrap();
        return Ok(response);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    {
        let mut seen = api.seen.lock().unwrap();
        if path.ends_with("/init/error") {
            seen.init_error = Some(String::from_utf8_lossy(&body).into_owned());
        } else {
            seen.response = Some(body);
        }
    }
    api.done.notify_one();
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::new()))
        .unwrap())
}

async fn serve(api: Arc<Api>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let api = api.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(api.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The environment of a `provided.al2023` function (256 MB, JSON logs) with the template's
/// variables; the credentials are dummies of the shape Lambda passes (a session token too).
fn lambda_env(runtime_api: SocketAddr) -> Vec<(&'static str, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string().as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef",
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAQUARRYBENCHCOLDSTART"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "quarry/bench/cold/start/secret/access/key0",
        ),
        (
            "AWS_SESSION_TOKEN",
            "IQoJb3JpZ2luX2VjEQARYnVuY2hvZmJ5dGVzdGhhdGxvb2tsaWtlYXRva2Vu",
        ),
        ("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR"),
        ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", "bootstrap"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
        (
            "LD_LIBRARY_PATH",
            "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
        ),
        // template.yaml's Globals.
        ("QUARRY_STAGE", "bench"),
        ("RUST_LOG", "info"),
        // Not Lambda's: keeps the invocation after init on loopback (see the module doc).
        ("AWS_ENDPOINT_URL", "https://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// One cold start: its init duration, or what went wrong.
async fn cold_start(binary: &str, event: &[u8]) -> Result<Duration, String> {
    let api = Arc::new(Api {
        event: event.to_vec(),
        seen: Mutex::new(Seen::default()),
        done: Notify::new(),
    });
    let addr = serve(api.clone()).await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(lambda_env(addr))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{binary}: {e}"))?;
    let _ = tokio::time::timeout(Duration::from_secs(20), api.done.notified()).await;
    let _ = child.kill().await;
    let seen = api.seen.lock().unwrap();
    if let Some(e) = &seen.init_error {
        return Err(format!("init error: {e}"));
    }
    let init = seen
        .first_next
        .ok_or("the runtime never asked for an event")?
        - started;
    if seen.response.is_none() {
        return Err("no response to the event".into());
    }
    Ok(init)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        let cases = [
            ("chat-handler", "apigw-http-chat.json"),
            ("cache-lookup", "apigw-http-cache-lookup.json"),
            ("batch-worker", "sqs-batch.json"),
            ("cost-alarm", "eventbridge-schedule.json"),
            // A change the aggregator ignores (a marker's update): the run measures start-up,
            // not DynamoDB's retries against the unreachable endpoint.
            ("ledger-aggregator", "dynamodb-stream-modify.json"),
        ];
        println!(
            "Cold start (process start to the first /next) under a local Lambda Runtime API, Lambda's environment ({} runs each; release builds):",
            args.runs
        );
        println!(
            "  {:<14} {:>12} {:>12}  {:>10}",
            "binary", "init p50", "init max", "size"
        );
        for (name, event) in cases {
            let binary = format!("{}/{name}", args.dir);
            let event = std::fs::read(events.join(event)).expect("event");
            let mut inits = Vec::new();
            for _ in 0..args.runs {
                match cold_start(&binary, &event).await {
                    Ok(init) => inits.push(init),
                    Err(e) => {
                        println!("  {name}: {e}");
                        break;
                    }
                }
            }
            if inits.is_empty() {
                continue;
            }
            inits.sort();
            let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
            println!(
                "  {:<14} {:>9.1} ms {:>9.1} ms  {:>7} KiB",
                name,
                inits[inits.len() / 2].as_secs_f64() * 1000.0,
                inits[inits.len() - 1].as_secs_f64() * 1000.0,
                size / 1024
            );
        }
    });
}
