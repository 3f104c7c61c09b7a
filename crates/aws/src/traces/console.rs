//! `OTEL_TRACES_EXPORTER=console`: each span as one JSON line on stderr, beside the logs
//! (stdout carries the EMF metrics documents, and `quarry dev` its own lines).

use std::io::Write;
use std::time::SystemTime;

use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, json};

#[derive(Debug, Default)]
pub struct ConsoleExporter;

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = std::io::stderr().lock();
        for span in &batch {
            // A line that cannot be written is lost, like a log line: never the request's
            // failure.
            let _ = writeln!(out, "{}", line(span));
        }
        Ok(())
    }
}

/// One span as JSON: names, IDs, timing, status, attributes.
fn line(span: &SpanData) -> serde_json::Value {
    let attributes: Map<String, serde_json::Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), value(&kv.value)))
        .collect();
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let status = match &span.status {
        Status::Unset => "unset",
        Status::Ok => "ok",
        Status::Error { .. } => "error",
    };
    let start = span
        .start_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "span": span.name,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": span.parent_span_id.to_string(),
        "kind": format!("{:?}", span.span_kind).to_lowercase(),
        "start_unix_ms": start.as_millis() as u64,
        "duration_ms": duration.as_secs_f64() * 1000.0,
        "status": status,
        "attributes": attributes,
    })
}

fn value(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => json!(b),
        Value::I64(i) => json!(i),
        Value::F64(f) => json!(f),
        Value::String(s) => json!(s.as_str()),
        other => json!(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    #[test]
    fn a_span_is_one_json_object() {
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let span = SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([1; 16]),
                SpanId::from_bytes([2; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: "chat m".into(),
            start_time: start,
            end_time: start + std::time::Duration::from_millis(1500),
            attributes: vec![
                KeyValue::new("gen_ai.usage.output_tokens", 17),
                KeyValue::new("quarry.cache_hit", false),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error("throttled"),
            instrumentation_scope: Default::default(),
        };
        let line = line(&span);
        assert_eq!(line["span"], "chat m");
        assert_eq!(line["trace_id"], "01".repeat(16));
        assert_eq!(line["kind"], "client");
        assert_eq!(line["duration_ms"], 1500.0);
        assert_eq!(line["status"], "error");
        assert_eq!(line["attributes"]["gen_ai.usage.output_tokens"], 17);
        assert_eq!(line["attributes"]["quarry.cache_hit"], false);
    }
}
