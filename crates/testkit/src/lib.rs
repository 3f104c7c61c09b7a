//! The local stack for tests: moto server (from the workspace's `.venv`, started on a free
//! loopback port) and the Bedrock emulator (in-process, free port), with a fresh stage per
//! test so tests run in parallel against one moto without seeing each other's data.
//!
//! The SDK reaches them through the standard variables only (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, ...), handed to aws-config as a simulated
//! environment, or to child processes as their real one.

#![allow(clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_types::os_shim_internal::{Env, Fs};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use quarry_admin::provision::Provisioned;
use quarry_aws::Settings;

mod emf;
pub use emf::EmfCapture;

pub mod capacity;
pub mod template;
pub mod tls;

/// A sample event of `events/` (the shapes AWS sends), as text.
pub fn event(name: &str) -> String {
    let path = workspace_root().join("events").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The virtualenv's python (`QUARRY_PYTHON` overrides): `make venv` creates it.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("QUARRY_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/python");
    if !p.exists() {
        panic!(
            "{} is missing: run `make venv` (or `make test`, which creates it) first",
            p.display()
        );
    }
    p
}

/// A moto server process. It exits when dropped, and also when this process dies (it
/// watches its stdin, which only this process holds).
pub struct Moto {
    url: String,
    port: u16,
    child: Mutex<Option<(Child, ChildStdin)>>,
}

impl Moto {
    /// Starts a dedicated moto on `port` (0: a free one). Its own errors (tracebacks) go to
    /// the file `QUARRY_MOTO_LOG` names, when set.
    pub fn start_on(port: u16) -> Moto {
        let script = workspace_root().join("infra/local/moto_server.py");
        let stderr = std::env::var_os("QUARRY_MOTO_LOG")
            .and_then(|path| std::fs::File::create(path).ok())
            .map_or_else(Stdio::null, Stdio::from);
        let mut child = Command::new(python())
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto ({}): {e}", script.display()));
        let stdin = child.stdin.take().expect("moto stdin");
        let stdout = child.stdout.take().expect("moto stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("moto output");
        let url = line
            .trim()
            .strip_prefix("moto listening on ")
            .unwrap_or_else(|| panic!("moto did not start: {line:?}"))
            .to_owned();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("moto port");
        Moto {
            url,
            port,
            child: Mutex::new(Some((child, stdin))),
        }
    }

    pub fn start() -> Moto {
        Self::start_on(0)
    }

    /// One moto per test binary, shared by its tests (each uses its own stage).
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (for outage tests); `start_on(self.port())` brings one back.
    pub fn stop(&self) {
        if let Some((mut child, stdin)) =
            self.child.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The standard variables that point the SDK at moto and the emulator, with dummy
/// credentials and SDK retries turned down (moto answers unimplemented calls with a 500).
pub fn aws_env(moto_url: &str, bedrock_url: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto_url),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock_url),
        ("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", bedrock_url),
        ("AWS_ENDPOINT_URL_BEDROCK", bedrock_url),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// SdkConfig resolved by aws-config from a simulated environment (no real variables, no
/// profile files): exactly what a Lambda with those variables would load.
pub async fn sdk_config(env: &[(String, String)]) -> SdkConfig {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .env(Env::from_slice(&pairs))
        .fs(Fs::from_slice(&[]));
    quarry_aws::sdk::load_with(loader).await
}

static STAGES: AtomicU64 = AtomicU64::new(0);

/// A unique stage name for this process.
pub fn unique_stage() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        STAGES.fetch_add(1, Ordering::Relaxed)
    )
}

/// The emulator's grounding guardrail, the deployment's default under `quarry dev`.
pub const DEV_GROUNDING_GUARDRAIL: &str = "quarrygrounding:DRAFT";

/// moto + emulator + a provisioned stage with `infra/` pushed.
pub struct Stack {
    pub moto_url: String,
    pub emulator: RunningEmulator,
    pub settings: Settings,
    pub provisioned: Provisioned,
    pub env: Vec<(String, String)>,
    pub sdk: SdkConfig,
    /// API keys of the demo tenants `acme` and `globex` (and an admin key for `acme`).
    pub keys: Vec<quarry_admin::tenants::IssuedKey>,
    /// The usage table's stream, aggregated on [`Stack::settle`] (the ledger-aggregator
    /// Lambda's work in AWS).
    pub ledger_stream: std::sync::Arc<quarry_aws::ledger::stream::LocalStream>,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(Moto::shared().url(), EmulatorConfig::builtin()).await
    }

    pub async fn start_with(moto_url: &str, emulator: EmulatorConfig) -> Stack {
        Self::start_custom(moto_url, emulator, &[]).await
    }

    /// With extra standard variables (e.g. `AWS_ENDPOINT_URL_DYNAMODB` through a proxy).
    pub async fn start_custom(
        moto_url: &str,
        emulator: EmulatorConfig,
        extra_env: &[(&str, &str)],
    ) -> Stack {
        let mut emulator = emulator;
        // Batch inference jobs read and write the stack's S3 (moto).
        if emulator.batch.s3_endpoint.is_none() {
            emulator.batch.s3_endpoint = Some(moto_url.to_owned());
        }
        // The sample Knowledge Bases, as `quarry dev` serves them.
        if emulator.knowledge_bases.is_empty() && emulator.knowledge_bases_dir.is_none() {
            emulator.knowledge_bases_dir = Some(workspace_root().join("infra/knowledge-bases"));
        }
        let emulator = bedrock_emulator::start(emulator, "127.0.0.1:0")
            .await
            .expect("emulator");
        let mut settings = Settings::for_stage(&unique_stage());
        settings.grounding_guardrail = Some(DEV_GROUNDING_GUARDRAIL.to_owned());
        let mut env = aws_env(moto_url, &emulator.url());
        env.push(("QUARRY_STAGE".into(), settings.stage.clone()));
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let sdk = sdk_config(&env).await;
        let provisioned = quarry_admin::provision::provision(&sdk, &settings)
            .await
            .expect("provision");
        let ssm = quarry_aws::ssm::SsmParams::new(&sdk);
        let sources = quarry_admin::infra::InfraSources::load(&workspace_root().join("infra"))
            .expect("infra");
        quarry_admin::infra::push_config(&ssm, &settings, &sources)
            .await
            .expect("push config");
        quarry_admin::infra::push_prompts(&ssm, &settings, &sources.prompts)
            .await
            .expect("push prompts");
        let knowledge_bases: Vec<String> =
            sources.routing.knowledge_bases.keys().cloned().collect();
        let keys =
            quarry_admin::tenants::seed(&ssm, &settings, &["acme", "globex"], &knowledge_bases)
                .await
                .expect("tenants");
        let ledger_stream = std::sync::Arc::new(quarry_aws::ledger::stream::LocalStream::new(
            &sdk,
            &settings.usage_table,
        ));
        Stack {
            moto_url: moto_url.to_owned(),
            emulator,
            settings,
            provisioned,
            env,
            sdk,
            keys,
            ledger_stream,
        }
    }

    /// The ledger's counters, each read after the markers written so far are aggregated.
    pub fn ledger(&self) -> SettledLedger<'_> {
        SettledLedger {
            stack: self,
            reader: quarry_aws::ledger::LedgerReader::new(&self.sdk, &self.settings.usage_table),
        }
    }

    /// Aggregates every ledger marker written so far into the counters, as the stream's
    /// Lambda does in AWS: what a test does before it reads counters.
    pub async fn settle(&self) -> quarry_aws::ledger::Aggregated {
        let done = self.ledger_stream.drain(500).await.expect("ledger stream");
        assert!(
            done.failed.is_empty(),
            "ledger aggregation failed: {done:?}"
        );
        done
    }

    /// The (non-admin) key of `tenant`.
    pub fn key(&self, tenant: &str) -> &str {
        self.keys
            .iter()
            .find(|k| k.tenant == tenant && !k.admin)
            .map(|k| k.key.as_str())
            .expect("demo tenant")
    }

    pub fn admin_key(&self) -> &str {
        self.keys
            .iter()
            .find(|k| k.admin)
            .map(|k| k.key.as_str())
            .expect("admin key")
    }

    /// Emulator calls so far (all operations and models).
    pub fn model_calls(&self) -> u64 {
        self.emulator.state().calls(None, None)
    }
}

/// The ledger's reader, settling the stream before each read (what a test means by "the
/// ledger now").
pub struct SettledLedger<'a> {
    stack: &'a Stack,
    reader: quarry_aws::ledger::LedgerReader,
}

impl SettledLedger<'_> {
    pub async fn get(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<quarry_aws::ledger::Totals, quarry_core::ports::StoreError> {
        self.stack.settle().await;
        self.reader.get(pk, sk).await
    }

    pub async fn list(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<(String, quarry_aws::ledger::Totals)>, quarry_core::ports::StoreError> {
        self.stack.settle().await;
        self.reader.list(pk, prefix).await
    }
}

/// Polls `check` until it returns Some, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy that can go down and come back, standing in for a service outage while the
/// service behind it (moto) keeps its state.
pub struct Proxy {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let url = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watch.borrow() {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut down = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Going down cuts open connections too.
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { url, up }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }
}

/// The status and JSON body of an in-process router's response (a JSON string when the body is
/// not JSON, so a failing assertion shows it).
pub async fn json_reply(response: axum::response::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("response body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

impl Stack {
    /// Runs the `quarry` binary at `bin` as an operator would against this stack:
    /// `bin COMMAND.. --aws-endpoint MOTO --stage STAGE ARGS..`, with no ambient AWS identity.
    /// Returns whether it succeeded and its stdout and stderr together.
    pub fn cli(&self, bin: &str, command: &[&str], args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(bin)
            .args(command)
            .args([
                "--aws-endpoint",
                &self.moto_url,
                "--stage",
                &self.settings.stage,
            ])
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_PROFILE")
            .env_remove("QUARRY_KMS_KEY_ID")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run the quarry binary");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}
