//! Helpers shared by the end-to-end tests: the chat API in-process, called through its
//! router exactly as lambda_http or `quarry serve` would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chat_handler::{AppState, Options, app};
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::Stack;
use serde_json::Value;
use tower::ServiceExt;

/// Options for tests: configuration re-read on every request (so pushes and promotions show
/// at once) and short backoffs.
pub fn options() -> Options {
    Options {
        config_max_age: Duration::ZERO,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            min_attempt_time: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..Options::default()
    }
}

pub fn state(stack: &Stack, options: Options) -> Arc<AppState> {
    Arc::new(AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        options,
    ))
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

pub async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(k) = key {
        request = request.header("authorization", format!("Bearer {k}"));
    }
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => request.body(axum::body::Body::empty()),
    }
    .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        body,
        headers,
    }
}

pub async fn chat(state: &Arc<AppState>, key: &str, body: Value) -> Reply {
    call(state, "POST", "/v1/chat", Some(key), Some(body)).await
}

/// Sets faults on the stack's emulator.
pub fn fault(stack: &Stack, model: &str, f: impl FnOnce(&mut bedrock_emulator::FaultSpec)) {
    stack
        .emulator
        .state()
        .update_faults(|faults| f(faults.entry(model.to_owned()).or_default()));
}

/// The tenant directory as stored.
pub async fn directory(stack: &Stack) -> quarry_core::tenancy::TenantDirectory {
    use quarry_core::ports::ParameterStore;
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    let p = ssm
        .get(&stack.settings.param("tenants"), true)
        .await
        .unwrap();
    serde_json::from_str(&p.value).unwrap()
}

/// Adds (or replaces) a tenant with its own key; returns the key.
/// Changes the tenant directory in place (as `quarry tenants` does).
pub async fn edit_directory(
    stack: &Stack,
    edit: impl FnOnce(&mut quarry_core::tenancy::TenantDirectory),
) {
    let mut dir = directory(stack).await;
    edit(&mut dir);
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    quarry_admin::tenants::write(&ssm, &stack.settings, &dir)
        .await
        .unwrap();
}

pub async fn add_tenant(stack: &Stack, tenant: &str, policy: serde_json::Value) -> String {
    let mut dir = directory(stack).await;
    dir.tenants
        .insert(tenant.to_owned(), serde_json::from_value(policy).unwrap());
    let key = quarry_admin::tenants::new_api_key();
    dir.keys.insert(
        quarry_core::tenancy::hash_key(&key),
        quarry_core::tenancy::KeyEntry {
            tenant: tenant.to_owned(),
            admin: false,
            operator: false,
            label: None,
        },
    );
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    quarry_admin::tenants::write(&ssm, &stack.settings, &dir)
        .await
        .unwrap();
    key
}

/// Log lines written while the guard lives (this thread: tokio tests run on one).
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The `request` lines, parsed.
    pub fn requests(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request")
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on other threads without a subscriber: a callsite they
    // registered while this one was being set up can keep a stale "never" interest.
    tracing::callsite::rebuild_interest_cache();
    (guard, logs)
}

/// Serves the chat API on a free loopback port (for streaming, timed from outside).
pub async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app(state)).await;
    });
    url
}

/// Server-Sent Events of a response: (event name or "", data) in order, with arrival times.
pub async fn sse_events(
    mut response: reqwest::Response,
) -> Vec<(std::time::Instant, String, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        let now = std::time::Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_owned();
                }
            }
            out.push((now, event, data));
        }
    }
    out
}

/// The routing as stored, edited, and stored again.
pub async fn edit_routing(
    stack: &Stack,
    edit: impl FnOnce(&mut quarry_core::routing::RoutingConfig),
) {
    use quarry_core::ports::ParameterStore;
    let name = stack.settings.param("routing");
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    let mut routing: quarry_core::routing::RoutingConfig =
        serde_json::from_str(&ssm.get(&name, false).await.unwrap().value).unwrap();
    edit(&mut routing);
    aws_sdk_ssm::Client::new(&stack.sdk)
        .put_parameter()
        .name(name)
        .value(serde_json::to_string(&routing).unwrap())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}
