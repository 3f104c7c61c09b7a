//! Load generation and latency statistics shared by the benchmark binaries.

pub mod capacity;
pub mod legacy;
pub mod memory_jobs;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1 client with a pool large enough for `concurrency` connections.
pub fn client(concurrency: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector)
}

/// One request to send repeatedly.
#[derive(Clone)]
pub struct Target {
    pub uri: http::Uri,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
}

impl Target {
    fn request(&self) -> Result<http::Request<Full<Bytes>>, http::Error> {
        let mut b =
            http::Request::post(self.uri.clone()).header("content-type", "application/json");
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone()))
    }
}

/// Latencies of successful requests and the count of failures.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Run {
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The p-th percentile (0..=100) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }
}

/// `concurrency` loops sending `target` for `duration` (after `warmup`).
pub async fn load(
    client: &HttpClient,
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, target, stop, measuring) = (
            client.clone(),
            target.clone(),
            stop.clone(),
            measuring.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = match target.request() {
                    Ok(req) => match client.request(req).await {
                        Ok(resp) => {
                            let success = resp.status().is_success();
                            success && resp.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        run.latencies.push(started.elapsed());
                    } else {
                        run.errors += 1;
                    }
                }
            }
            run
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = Run {
        elapsed,
        ..Run::default()
    };
    for t in tasks {
        if let Ok(run) = t.await {
            total.latencies.extend(run.latencies);
            total.errors += run.errors;
        }
    }
    total
}

/// A server process started for a benchmark; killed when dropped.
pub struct Server {
    pub url: String,
    child: tokio::process::Child,
}

impl Server {
    /// Runs `program args`, waiting for a stdout line starting with `ready_prefix` followed
    /// by the URL.
    pub async fn start(program: &str, args: &[&str], ready_prefix: &str) -> Result<Server, String> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        Self::start_command(cmd, ready_prefix).await
    }

    /// The same with a prepared command (environment, arguments).
    pub async fn start_command(
        mut cmd: tokio::process::Command,
        ready_prefix: &str,
    ) -> Result<Server, String> {
        let program = format!("{:?}", cmd.as_std().get_program());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix(ready_prefix) {
                return Ok(Server {
                    url: url.trim().to_owned(),
                    child,
                });
            }
        }
        Err(format!("{program} exited before it was ready"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Peak resident memory of a process (VmHWM), in KiB, on Linux.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One `/v1/chat` call through the chat-handler router, in process (tower's `oneshot`), as
/// lambda_http would drive it: (status, body, elapsed).
pub async fn chat_in_process(
    state: &Arc<chat_handler::AppState>,
    key: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value, Duration) {
    use tower::ServiceExt;
    let Ok(request) = http::Request::post("/v1/chat")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
    else {
        return (0, serde_json::Value::Null, Duration::ZERO);
    };
    let started = Instant::now();
    let Ok(response) = chat_handler::app(state.clone()).oneshot(request).await;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let elapsed = started.elapsed();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, body, elapsed)
}
