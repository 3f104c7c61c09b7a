//! A local Amazon Bedrock Runtime.
//!
//! It speaks Bedrock's REST-JSON protocol and its `application/vnd.amazon.eventstream`
//! framing, so the unmodified AWS SDKs (aws-sdk-bedrockruntime, boto3) work against it
//! through an endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
//!
//! Operations: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream,
//! CountTokens and ApplyGuardrail. Output is deterministic (the same request gets the same
//! answer), usage is realistic (about four characters a token, prompt-cache reads and writes
//! when `cachePoint` blocks are sent), latency and faults are configurable per model, and an
//! admin API under `/_emulator/` exposes call counters and the requests received.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = bedrock_emulator::start(bedrock_emulator::EmulatorConfig::builtin(), "127.0.0.1:0").await?;
//! println!("{}", emulator.url());
//! # Ok(()) }
//! ```

pub mod admin;
pub mod catalog;
pub mod citations;
pub mod config;
pub mod content;
pub mod converse;
pub mod error;
pub mod eventstream;
pub mod faults;
pub mod generate;
pub mod guarded;
pub mod guardrail;
pub mod invoke;
pub mod output;
pub mod reasoning;
pub mod render;
pub mod request;
pub mod router;
pub mod server;
pub mod serving;
pub mod state;
pub mod tally;
pub mod tools;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{EmulatorConfig, Latency, ModelSpec};
pub use error::{BedrockError, ErrorKind};
pub use faults::FaultSpec;
pub use output::StopReason;
pub use state::EmulatorState;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    addr: SocketAddr,
    state: Arc<EmulatorState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters, faults and configuration, for tests running in the same process.
    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server ends (it ends when stopped, or on a fatal accept error).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves in a background task.
pub async fn start(
    config: EmulatorConfig,
    addr: impl ToSocketAddrs,
) -> std::io::Result<RunningEmulator> {
    let listener = TcpListener::bind(addr).await?;
    serve(config, listener)
}

/// Serves on an already bound listener.
pub fn serve(config: EmulatorConfig, listener: TcpListener) -> std::io::Result<RunningEmulator> {
    let addr = listener.local_addr()?;
    let state = Arc::new(EmulatorState::new(config));
    let app = server::router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "bedrock-emulator server stopped");
        }
    });
    Ok(RunningEmulator {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}
