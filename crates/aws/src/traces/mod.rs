//! Traces: the request's `tracing` spans ([`quarry_core::trace`]) as OpenTelemetry spans.
//!
//! ## Overview
//!
//! `OTEL_TRACES_EXPORTER` picks the exporter, as the OpenTelemetry SDKs read it:
//!
//! * `none` (the default): no exporter and no OpenTelemetry layer; the spans are disabled
//!   and cost a branch each;
//! * `console`: each span as one JSON line on stderr, as it ends (`quarry dev`);
//! * `otlp`: OTLP over HTTP (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//!   `http://localhost:4318`): in AWS, the ADOT collector layer, which forwards to X-Ray.
//!
//! Only Quarry's spans are exported ([`quarry_core::trace::TARGET`]); the SDK's and the
//! runtime's spans and every log event stay out, so no event text reaches a span. A Lambda
//! flushes at the end of each invocation ([`flush`]), before the process may be frozen.
//! Building the exporter makes no network call: the first export happens at that flush.
//!
//! The request's span joins the caller's trace from `X-Amzn-Trace-Id` ([`join`], [`xray`]);
//! each Bedrock call carries the header on, naming its attempt's span ([`outbound_header`]).

mod console;
pub mod xray;

use std::sync::OnceLock;

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider};
use opentelemetry::{SpanId, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// Where spans go, from `OTEL_TRACES_EXPORTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    None,
    Console,
    Otlp,
}

impl Exporter {
    /// The exporter `OTEL_TRACES_EXPORTER` names; an unknown name is `None` (a typo in a
    /// setting must not stop a Lambda from serving) with a warning.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        match get("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("" | "none") => Self::None,
            Some("console") => Self::Console,
            Some("otlp") => Self::Otlp,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "OTEL_TRACES_EXPORTER is not none, console or otlp; no traces are exported"
                );
                Self::None
            }
        }
    }
}

/// The process's tracer provider, built once (the first [`layer`] call), none for
/// [`Exporter::None`].
static PROVIDER: OnceLock<Option<SdkTracerProvider>> = OnceLock::new();

/// The exporting layer `OTEL_TRACES_EXPORTER` asks for, or none.
pub fn layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let provider =
        PROVIDER.get_or_init(|| provider(Exporter::from_lookup(|k| std::env::var(k).ok())));
    provider.as_ref().map(|p| Box::new(layer_for(p)) as _)
}

/// The layer that turns Quarry's spans, and only them, into `provider`'s spans (tests give
/// it a provider of their own).
pub fn layer_for<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("quarry"))
        // Spans only: an event inside a span would become a span event with its fields,
        // and a log line may say more than a span may.
        .with_filter(filter_fn(|meta| {
            meta.is_span() && meta.target() == quarry_core::trace::TARGET
        }))
}

fn provider(exporter: Exporter) -> Option<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder().with_resource(resource());
    let builder = match exporter {
        Exporter::None => return None,
        // Printed as each span ends: nothing to lose to a process that stops.
        Exporter::Console => builder.with_simple_exporter(console::ConsoleExporter),
        // Batched on the processor's own thread (with a blocking client: no async runtime
        // involved); flushed at the end of each invocation.
        Exporter::Otlp => {
            let otlp = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build();
            match otlp {
                Ok(e) => builder.with_batch_exporter(e),
                Err(e) => {
                    tracing::warn!(error = %e, "OTLP trace exporter not built; no traces are exported");
                    return None;
                }
            }
        }
    };
    Some(builder.build())
}

/// `service.name`: `OTEL_SERVICE_NAME` when set (the SDK reads it), else the Lambda's name,
/// else `quarry`.
fn resource() -> Resource {
    let builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        return builder.build();
    }
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "quarry".into());
    builder.with_service_name(name).build()
}

/// Exports what has ended and not yet left; a no-op without an exporter. Blocks until the
/// export is done (or fails: traces are never worth an invocation's error).
pub fn flush() {
    if let Some(Some(provider)) = PROVIDER.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::warn!(error = %e, "trace flush failed");
    }
}

/// Makes `span` (not yet entered) a child of the span the X-Ray `header` names, under its
/// sampling decision. A header that names no span (API Gateway's names only a trace), or
/// is not one, leaves `span` the root of a trace of its own.
pub fn join(span: &Span, header: Option<&str>) {
    let Some(h) = header.and_then(xray::parse) else {
        return;
    };
    let Some(parent) = h.parent else {
        return;
    };
    // Undecided (`Sampled=?` or absent): the decision is ours, and ours is to sample.
    let flags = if h.sampled.unwrap_or(true) {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(h.trace_id),
        SpanId::from_bytes(parent),
        flags,
        true,
        TraceState::default(),
    );
    // Fails only when traces are off (no layer) or the span already started: then the
    // span simply has no parent.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Renames a span that has started (a `tracing` field cannot: OpenTelemetry names a span
/// when it starts); a no-op when traces are off.
pub fn rename(span: &Span, name: String) {
    if !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// The X-Ray header for a call made in the current span: its trace, itself as the parent,
/// its sampling decision. `None` when traces are off.
pub fn outbound_header() -> Option<String> {
    let cx = Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        xray::format(
            sc.trace_id().to_bytes(),
            sc.span_id().to_bytes(),
            sc.is_sampled(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_is_none_unless_asked_for() {
        let from = |v: Option<&str>| {
            Exporter::from_lookup(|k| {
                (k == "OTEL_TRACES_EXPORTER").then(|| v.map(str::to_owned))?
            })
        };
        assert_eq!(from(None), Exporter::None);
        assert_eq!(from(Some("none")), Exporter::None);
        assert_eq!(from(Some("jaeger")), Exporter::None);
        assert_eq!(from(Some("console")), Exporter::Console);
        assert_eq!(from(Some(" otlp ")), Exporter::Otlp);
        // None builds nothing: no provider, no layer, no thread.
        assert!(provider(Exporter::None).is_none());
    }

    #[test]
    fn without_traces_nothing_is_joined_or_sent_on() {
        let span = tracing::info_span!("untraced");
        join(
            &span,
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"),
        );
        join(&span, Some("garbage"));
        let _entered = span.enter();
        assert_eq!(outbound_header(), None);
    }
}
