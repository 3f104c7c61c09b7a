//! What every Lambda does before its first event, in one call: [`init`].
//!
//! ## Overview
//!
//! Each Lambda's `main.rs` is the same three steps: [`init`] (logs, metrics, SDK
//! configuration, resource names), its own state from [`Bootstrap`], its handler handed to the
//! runtime. Keeping the first step here means no Lambda can forget a part of it: the metrics
//! recorder in particular, without which the `metrics` facade is a no-op and a Lambda's
//! traffic never reaches CloudWatch (nor the alarms on `CostMicroUSD` and `Throttles`).
//!
//! Init makes no network call and reads no certificate store: logs and metrics go to
//! stderr/stdout, a trace exporter is only built (it first connects when flushed), the SDK configuration comes from the environment (aws-config only looks
//! for the profile files, which a Lambda does not have), and the HTTPS client's trust roots
//! are compiled in (see [`crate::sdk`]).

use std::io::Write;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;
use metrics_cloudwatch_embedded::Collector;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Settings;

/// Everything a Lambda's state is built from.
pub struct Bootstrap {
    pub sdk: SdkConfig,
    pub settings: Settings,
    /// Flush at the end of each invocation (or request): the recorder only collects.
    pub metrics: Metrics,
}

/// Logs, metrics and configuration from the process environment, as a Lambda starts.
pub async fn init() -> Bootstrap {
    init_tracing();
    let settings = Settings::from_env();
    let metrics = Metrics::install(&settings.stage);
    let sdk = crate::sdk::load().await;
    Bootstrap {
        sdk,
        settings,
        metrics,
    }
}

/// JSON logs on stderr (what CloudWatch and the Lambda JSON log format expect), filtered by
/// `RUST_LOG` (default `info`), and the trace exporter `OTEL_TRACES_EXPORTER` asks for
/// ([`crate::traces`]; none by default). A second call keeps the first subscriber.
///
/// Spans stay out of log lines: a line carries its own fields only, so its shape does not
/// depend on where it was written from, and the request's spans are the exporter's alone.
pub fn init_tracing() {
    let _ = tracing_subscriber::registry()
        .with(log_layer(std::io::stderr))
        .with(crate::traces::layer())
        .try_init();
}

/// The JSON log lines, written to `writer`: no time (Lambda adds it), no target, no span.
fn log_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The request's spans are the trace exporter's: the log layer does not even see them.
    let filter = match format!("{}=off", quarry_core::trace::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(writer)
        .with_filter(filter)
}

/// Produces the writer of one flush.
pub type MetricsWriter = Arc<dyn Fn() -> Box<dyn Write + Send> + Send + Sync>;

/// The process's CloudWatch EMF recorder (namespace `Quarry`, dimension `Stage`), or none.
///
/// The recorder collects what the `metrics` facade records; [`Metrics::flush`] writes it as
/// EMF documents to stdout, which CloudWatch Logs turns into metrics. Without a recorder
/// (local runs, most tests), flushing does nothing: a disabled capability, not an `Option`.
#[derive(Clone)]
pub struct Metrics {
    collector: Option<&'static Collector>,
    writer: MetricsWriter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("installed", &self.is_installed())
            .finish()
    }
}

/// The recorder is process-global (`metrics::set_global_recorder` succeeds once), so the
/// first installation is kept and shared by every later [`Metrics::install`].
static INSTALLED: OnceLock<Result<&'static Collector, String>> = OnceLock::new();

impl Metrics {
    /// Installs the recorder as the process's global one (once per process: later calls
    /// share the first recorder and its `Stage`), flushing to stdout.
    pub fn install(stage: &str) -> Self {
        let installed = INSTALLED.get_or_init(|| {
            metrics_cloudwatch_embedded::Builder::new()
                .cloudwatch_namespace("Quarry")
                .with_dimension("Stage", stage.to_owned())
                .init()
                .map_err(|e| e.to_string())
        });
        let collector = match installed {
            Ok(collector) => Some(*collector),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; metrics are dropped");
                None
            }
        };
        Self {
            collector,
            writer: stdout_writer(),
        }
    }

    /// No recorder: flushing does nothing.
    pub fn disabled() -> Self {
        Self {
            collector: None,
            writer: stdout_writer(),
        }
    }

    /// The same recorder, flushed to the writers `writer` makes (tests read the documents).
    pub fn writing_to(
        self,
        writer: impl Fn() -> Box<dyn Write + Send> + Send + Sync + 'static,
    ) -> Self {
        Self {
            writer: Arc::new(writer),
            ..self
        }
    }

    pub fn is_installed(&self) -> bool {
        self.collector.is_some()
    }

    /// Writes what was collected since the last flush, and resets it.
    pub fn flush(&self) {
        if let Some(collector) = self.collector {
            let mut out = (self.writer)();
            if let Err(e) = collector.flush(&mut out).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "metrics flush failed");
            }
        }
    }

    /// [`Metrics::flush`] as a callback (state that holds a flush hook rather than this type).
    pub fn flush_fn(&self) -> Arc<dyn Fn() + Send + Sync> {
        let metrics = self.clone();
        Arc::new(move || metrics.flush())
    }
}

fn stdout_writer() -> MetricsWriter {
    Arc::new(|| Box::new(std::io::stdout()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_inside_a_request_span_is_the_line_alone() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(log_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = quarry_core::trace::request("chat", "POST /v1/chat");
            span.in_scope(|| tracing::info!(tenant = "acme", "request"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"level": "INFO", "fields": {"message": "request", "tenant": "acme"}})
        );
    }
}
