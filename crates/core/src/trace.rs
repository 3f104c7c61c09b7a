//! The spans of a request, named and shaped after OpenTelemetry's GenAI semantic conventions.
//!
//! ## Overview
//!
//! Spans are plain `tracing` spans with the target [`TARGET`]: whoever installs the
//! subscriber decides whether they become OpenTelemetry spans (`quarry_aws::traces` bridges
//! them when an exporter is configured; otherwise they are disabled and cost a branch).
//!
//! * [`request`]: one per request, opened by the handler;
//! * [`attempt`]: one per model call, retries and fallbacks included (`chat {model}`, the
//!   GenAI client span);
//! * [`retrieval`]: one per Knowledge Base Retrieve call;
//! * [`guardrail`]: one per guardrail check (input or output, Quarry's own or Bedrock's).
//!
//! Only metadata goes into a span: identifiers, counts, parameters, outcomes. Never the text
//! of a prompt, message, variable, tool call or answer, nor a credential: span attributes
//! leave the process for a collector and a tracing backend, with their own retention and
//! readers, while Quarry's promise is that content leaves only where the tenant asked
//! (the request log keeps digests for the same reason). Error messages are not recorded
//! either (a model's validation error may quote the request): only the error's kind.

use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::model::{ModelRequest, StopReason, TokenUsage};
use crate::pricing::MicroUsd;
use crate::routing::ModelTarget;

/// The target of every span here; the trace exporter takes these spans and no others.
pub const TARGET: &str = "quarry::trace";

/// `gen_ai.system` for every model call.
pub const SYSTEM: &str = "aws.bedrock";

/// `otel.status_code` of a failed span.
const ERROR: &str = "ERROR";

/// The request's span. Its name is `{operation} {model}` once the model the route chose is
/// known ([`request_name`]), `{operation}` until then (the semantic conventions'
/// rule when the model is unknown: a request refused before routing keeps it).
pub fn request(operation: &'static str, route: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "request",
        "otel.name" = operation,
        "otel.kind" = "server",
        "otel.status_code" = Empty,
        "http.route" = route,
        "gen_ai.operation.name" = operation,
        "gen_ai.system" = SYSTEM,
        "gen_ai.request.model" = Empty,
        "gen_ai.request.max_tokens" = Empty,
        "gen_ai.request.temperature" = Empty,
        "gen_ai.response.model" = Empty,
        "gen_ai.response.finish_reasons" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
        "quarry.request_id" = Empty,
        "quarry.tenant" = Empty,
        "quarry.prompt.name" = Empty,
        "quarry.prompt.version" = Empty,
        "quarry.cache_hit" = Empty,
        "quarry.fallback" = Empty,
        "quarry.cost_usd" = Empty,
        "quarry.stream" = Empty,
        "error.type" = Empty,
    )
}

/// The request span's name once its model is known.
pub fn request_name(operation: &str, model: &str) -> String {
    format!("{operation} {model}")
}

/// Recording into a request span (a no-op on a disabled one).
pub struct Request<'a>(pub &'a Span);

impl Request<'_> {
    /// The model the route chose first (the answer may come from a fallback). The span's
    /// name, `{operation} {model}`, is the exporter's to set ([`request_name`]): a started
    /// span's name is no field.
    pub fn requested(&self, model: &str) {
        self.0.record("gen_ai.request.model", model);
    }

    /// The parameters the caller asked for.
    pub fn params(&self, max_tokens: Option<u32>, temperature: Option<f32>) {
        if let Some(m) = max_tokens {
            self.0.record("gen_ai.request.max_tokens", i64::from(m));
        }
        if let Some(t) = temperature {
            self.0.record("gen_ai.request.temperature", f64::from(t));
        }
    }

    /// The model that answered, how many models were left before it, the cache.
    pub fn served(&self, model: &str, fallbacks: usize, cache_hit: bool) {
        self.0.record("gen_ai.response.model", model);
        self.0.record("quarry.fallback", int(fallbacks as u64));
        self.0.record("quarry.cache_hit", cache_hit);
    }

    pub fn prompt(&self, name: &str, version: u64) {
        self.0.record("quarry.prompt.name", name);
        self.0.record("quarry.prompt.version", int(version));
    }

    /// Tokens charged, their cost (absent when a model has no price), why it stopped.
    pub fn finished(&self, usage: &TokenUsage, cost: Option<MicroUsd>, stop: Option<&StopReason>) {
        self::usage(self.0, usage, stop);
        if let Some(c) = cost {
            self.0.record("quarry.cost_usd", c.0 as f64 / 1_000_000.0);
        }
    }

    /// The request failed: its error's type (never its message).
    pub fn failed(&self, error_type: &str) {
        failed(self.0, error_type);
    }
}

/// One call to one model: `chat {model}`, a client span, numbered within the request
/// (retries and fallbacks each get their own).
pub fn attempt(target: &ModelTarget, request: &ModelRequest, attempt: u32) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "attempt",
        "otel.name" = format!("chat {}", target.invoke_id),
        "otel.kind" = "client",
        "otel.status_code" = Empty,
        "gen_ai.operation.name" = "chat",
        "gen_ai.system" = SYSTEM,
        "gen_ai.request.model" = target.invoke_id.as_str(),
        "gen_ai.request.max_tokens" = Empty,
        "gen_ai.request.temperature" = Empty,
        "gen_ai.response.model" = Empty,
        "gen_ai.response.finish_reasons" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
        "quarry.attempt" = i64::from(attempt),
        "quarry.region" = Empty,
        "error.type" = Empty,
    );
    if let Some(m) = request.params.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(m));
    }
    if let Some(t) = request.params.temperature {
        span.record("gen_ai.request.temperature", f64::from(t));
    }
    // The deployment's own region when the target names none: the span says "home".
    span.record("quarry.region", target.region.as_deref().unwrap_or("home"));
    span
}

/// An attempt that answered (or a stream that ended): the model, its tokens, why it stopped.
pub fn answered(span: &Span, model: &str, usage: &TokenUsage, stop: &StopReason) {
    span.record("gen_ai.response.model", model);
    self::usage(span, usage, Some(stop));
}

/// A call's tokens and, when known, why it stopped.
pub fn usage(span: &Span, usage: &TokenUsage, stop: Option<&StopReason>) {
    usage_of(span, usage);
    if let Some(s) = stop {
        span.record("gen_ai.response.finish_reasons", s.as_str());
    }
}

/// A Knowledge Base Retrieve call.
pub fn retrieval(knowledge_base: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "retrieval",
        "otel.name" = format!("retrieve {knowledge_base}"),
        "otel.kind" = "client",
        "otel.status_code" = Empty,
        "gen_ai.system" = SYSTEM,
        "quarry.knowledge_base" = knowledge_base,
        "quarry.retrieval.results" = Empty,
        "error.type" = Empty,
    )
}

/// Where a guardrail check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Input,
    Output,
}

/// Whose guardrail it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// Quarry's own (PII, denied words, injection heuristics), in process.
    Quarry,
    /// A Bedrock guardrail (ApplyGuardrail).
    Bedrock,
}

/// A guardrail check: `guardrail {stage}`, with what it did as counts.
pub fn guardrail(stage: Stage, checker: Checker) -> Span {
    let stage = match stage {
        Stage::Input => "input",
        Stage::Output => "output",
    };
    let (checker, kind) = match checker {
        Checker::Quarry => ("quarry", "internal"),
        Checker::Bedrock => ("bedrock", "client"),
    };
    tracing::info_span!(
        target: TARGET,
        "guardrail",
        "otel.name" = format!("guardrail {stage}"),
        "otel.kind" = kind,
        "otel.status_code" = Empty,
        "quarry.guardrail.stage" = stage,
        "quarry.guardrail.checker" = checker,
        "quarry.guardrail.actions" = Empty,
        "quarry.guardrail.blocked" = Empty,
        "error.type" = Empty,
    )
}

/// Runs one of Quarry's guardrail checks in its span; `Err` is a block.
pub fn guarded<E>(
    stage: Stage,
    run: impl FnOnce() -> Result<crate::guardrails::Findings, E>,
) -> Result<crate::guardrails::Findings, E> {
    let span = guardrail(stage, Checker::Quarry);
    let result = span.in_scope(run);
    match &result {
        Ok(findings) => {
            span.record("quarry.guardrail.actions", i64::from(findings.actions()));
            span.record("quarry.guardrail.blocked", false);
        }
        Err(_) => {
            span.record("quarry.guardrail.blocked", true);
        }
    }
    result
}

/// Runs a Bedrock guardrail check (`Ok(true)`: it intervened) in its span; a check that
/// could not run is the span's error.
pub async fn bedrock_guarded(
    stage: Stage,
    check: impl std::future::Future<Output = Result<bool, crate::ports::StoreError>>,
) -> Result<bool, crate::ports::StoreError> {
    let span = guardrail(stage, Checker::Bedrock);
    let result = check.instrument(span.clone()).await;
    match &result {
        Ok(intervened) => {
            span.record("quarry.guardrail.actions", i64::from(*intervened));
            span.record("quarry.guardrail.blocked", *intervened);
        }
        Err(e) => failed(&span, store_error(e)),
    }
    result
}

/// `tokio::spawn`, the task in the current span: a task does not inherit it, and the calls
/// a request makes in its tasks are still the request's.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.instrument(Span::current()))
}

/// Marks a span failed with `error_type` (a kind such as `throttled`, never a message).
pub fn failed(span: &Span, error_type: &str) {
    span.record("otel.status_code", ERROR);
    span.record("error.type", error_type);
}

/// The `error.type` of a dependency's failure: its kind, never its detail.
pub fn store_error(e: &crate::ports::StoreError) -> &'static str {
    use crate::ports::StoreErrorKind;
    match e.kind {
        StoreErrorKind::Unavailable => "unavailable",
        StoreErrorKind::Invalid => "invalid",
        StoreErrorKind::Conflict => "conflict",
    }
}

/// An integer attribute: OpenTelemetry's are signed (a `u64` would be recorded as text).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn usage_of(span: &Span, usage: &TokenUsage) {
    // Input as the semantic conventions count it: every input token, cached or not.
    let input = usage.input + usage.cache_read + usage.cache_write;
    span.record("gen_ai.usage.input_tokens", int(input));
    span.record("gen_ai.usage.output_tokens", int(usage.output));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_disabled_without_a_subscriber() {
        // Nothing installed: recording is a no-op, never a panic.
        let span = request("chat", "POST /v1/chat");
        assert!(span.is_disabled());
        Request(&span).requested("m");
        failed(&span, "throttled");
        let r: Result<_, ()> = guarded(Stage::Input, || Ok(Default::default()));
        assert!(r.is_ok());
    }
}
