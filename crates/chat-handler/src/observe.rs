//! One JSON log line per request, and the request metrics.
//!
//! The line carries who, what and how it went (tenant, prompt@version, model, fallbacks,
//! tokens, cost, cache hit, latency) and SHA-256 digests of the prompt and the output,
//! never their text unless `QUARRY_LOG_CONTENT` is on.
//!
//! The chat routes write their line themselves, filling a [`RequestLog`] as the request goes
//! (a stream writes it when it ends). A request refused before any handler ran (no or
//! unknown credentials, a body that is not JSON or too large) gets its line from
//! [`log_refusals`], which sees the refusal on the way out.
//!
//! A chat request's [`RequestLog`] also holds the request's span ([`RequestLog::traced`]):
//! what the line learns, the span learns too (metadata only, never text), and the span ends
//! when the line is written, however the request ends.

use std::borrow::Cow;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use quarry_core::Error;
use quarry_core::chat::PromptUsed;
use quarry_core::invoke::Fallback;
use quarry_core::model::TokenUsage;
use quarry_core::pricing::MicroUsd;
use quarry_core::service::{Answer, AnswerStream, PromptTrace, StreamSummary};
use quarry_core::telemetry::{self, Dims};
use quarry_core::trace;
use quarry_http::{Refused, RequestMeta};
use sha2::{Digest, Sha256};

use crate::routes::Shared;
use crate::state::AppState;

/// Everything the request line says; filled in as the request goes.
#[derive(Debug, Default)]
pub struct RequestLog {
    /// `METHOD /path` as routed.
    pub route: Cow<'static, str>,
    pub request_id: String,
    pub trace_id: Option<String>,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    pub fallbacks: usize,
    pub usage: TokenUsage,
    pub cost: Option<MicroUsd>,
    pub cached: bool,
    pub stream: bool,
    pub ttft_ms: Option<u64>,
    pub prompt_trace: Option<PromptTrace>,
    pub output_sha256: Option<String>,
    pub output_text: Option<String>,
    pub guardrail_actions: u32,
    /// The request's span; none for a request that is not traced.
    pub span: RequestSpan,
    /// The span's `gen_ai.operation.name`.
    pub operation: &'static str,
}

/// The request's span ([`quarry_core::trace::request`]); none by default.
#[derive(Debug)]
pub struct RequestSpan(pub tracing::Span);

impl Default for RequestSpan {
    fn default() -> Self {
        Self(tracing::Span::none())
    }
}

impl RequestLog {
    pub fn new(route: impl Into<Cow<'static, str>>, meta: &RequestMeta) -> Self {
        Self {
            route: route.into(),
            request_id: meta.request_id.clone(),
            trace_id: meta.trace_id.clone(),
            ..Self::default()
        }
    }

    /// A line with the request's span: `operation` (`chat`, `embeddings`), in the trace
    /// the request's X-Ray header names.
    pub fn traced(
        route: impl Into<Cow<'static, str>>,
        meta: &RequestMeta,
        operation: &'static str,
    ) -> Self {
        let mut log = Self::new(route, meta);
        let span = trace::request(operation, &log.route);
        quarry_aws::traces::join(&span, meta.trace_id.as_deref());
        span.record("quarry.request_id", meta.request_id.as_str());
        log.span = RequestSpan(span);
        log.operation = operation;
        log
    }

    /// The span, to run the request in.
    pub fn span(&self) -> tracing::Span {
        self.span.0.clone()
    }

    fn spanned(&self) -> trace::Request<'_> {
        trace::Request(&self.span.0)
    }

    /// The model the route chose first: an attribute, and the span's name.
    fn requested(&self, model: &str) {
        self.spanned().requested(model);
        quarry_aws::traces::rename(&self.span.0, trace::request_name(self.operation, model));
    }

    /// Who asks.
    pub fn caller(&mut self, tenant: &str) {
        self.tenant = Some(tenant.to_owned());
        self.span.0.record("quarry.tenant", tenant);
    }

    /// What the caller asked for: the parameters (never the messages).
    pub fn asked(&mut self, input: &quarry_core::chat::ChatInput, stream: bool) {
        self.feature = input.tags.get("feature").cloned();
        self.stream = stream;
        self.span.0.record("quarry.stream", stream);
        self.spanned()
            .params(input.params.max_tokens, input.params.temperature);
    }

    pub fn output(&mut self, text: &str, keep: bool) {
        self.output_sha256 = Some(hex::encode(Sha256::digest(text.as_bytes())));
        if keep {
            self.output_text = Some(text.to_owned());
        }
    }

    /// What a whole answer tells the line.
    pub fn answered(&mut self, a: &Answer, keep: bool) {
        self.model = Some(a.base_model.clone());
        self.served(
            &a.model,
            a.prompt.as_ref(),
            &a.fallbacks,
            a.cached,
            &a.prompt_trace,
        );
        self.usage = a.usage;
        self.cost = a.cost;
        self.spanned()
            .finished(&a.usage, a.cost, Some(&a.stop_reason));
        self.guardrail_actions = a.guardrails.actions();
        self.output(&a.text(), keep);
    }

    /// What embeddings tell the span (the vectors are content: never in it).
    pub fn embedded(&self, e: &quarry_core::embeddings::Embeddings) {
        let span = self.spanned();
        let usage = TokenUsage {
            input: e.input_tokens,
            ..TokenUsage::default()
        };
        self.requested(&e.model);
        span.served(
            &e.model,
            0,
            !e.vectors.is_empty() && e.cached == e.vectors.len(),
        );
        span.finished(&usage, e.cost, None);
    }

    /// What a stream tells the line when its first token arrives.
    pub fn streaming(&mut self, s: &AnswerStream) {
        self.model = Some(s.model.clone());
        self.served(
            &s.model,
            s.prompt.as_ref(),
            &s.fallbacks,
            s.cached,
            &s.prompt_trace,
        );
        self.ttft_ms = Some(s.ttft_ms);
    }

    /// What the answer came from: the prompt, the models left, the cache.
    /// `model` answered; the route chose the first of `fallbacks` (or `model`) first.
    fn served(
        &mut self,
        model: &str,
        prompt: Option<&PromptUsed>,
        fallbacks: &[Fallback],
        cached: bool,
        trace: &PromptTrace,
    ) {
        self.prompt = prompt.map(|p| format!("{}@{}", p.name, p.version));
        self.fallbacks = fallbacks.len();
        self.cached = cached;
        self.prompt_trace = Some(trace.clone());
        let first = fallbacks.first().map_or(model, |f| f.model.as_str());
        self.requested(first);
        let span = self.spanned();
        span.served(model, fallbacks.len(), cached);
        if let Some(p) = prompt {
            span.prompt(&p.name, p.version);
        }
    }

    /// What a stream's summary tells the line.
    pub fn streamed(&mut self, summary: &StreamSummary) {
        self.usage = summary.usage;
        self.cost = summary.cost;
        self.guardrail_actions = summary.guardrails.actions();
        self.spanned()
            .finished(&summary.usage, summary.cost, Some(&summary.stop_reason));
    }

    /// Writes the line and the request metrics.
    pub fn finish(self, meta: &RequestMeta, error: Option<&Error>) {
        let status = error.map_or(200, Error::status_code);
        let latency = meta.elapsed_ms();
        let model = self.model.as_deref().unwrap_or("-");
        let dims = Dims {
            tenant: self.tenant.as_deref().unwrap_or("-"),
            model,
            feature: self.feature.as_deref().unwrap_or("-"),
        };
        telemetry::count("Requests", 1, dims);
        telemetry::millis("Latency", latency, dims);
        if let Some(t) = self.ttft_ms {
            telemetry::millis("TimeToFirstToken", t, dims);
        }
        if let Some(e) = error {
            telemetry::count(
                if status >= 500 {
                    "ServerErrors"
                } else {
                    "ClientErrors"
                },
                1,
                dims,
            );
            metrics::counter!("Errors", "ErrorType" => e.error_type()).increment(1);
        }
        if let Some(e) = error {
            let span = self.spanned();
            // A request that ran out of models still says which the route chose first.
            if let Error::Invoke(f) = e
                && let Some(first) = f.attempts.first()
            {
                self.requested(&first.model);
            }
            span.failed(e.error_type());
        }
        let trace = self.prompt_trace.unwrap_or_default();
        tracing::info!(
            target: "request",
            route = %self.route,
            request_id = %self.request_id,
            trace_id = self.trace_id.as_deref(),
            status,
            error_type = error.map(Error::error_type),
            tenant = self.tenant.as_deref(),
            feature = self.feature.as_deref(),
            prompt = self.prompt.as_deref(),
            model = self.model.as_deref(),
            fallbacks = self.fallbacks,
            input_tokens = self.usage.input,
            output_tokens = self.usage.output,
            cache_read_tokens = self.usage.cache_read,
            cache_write_tokens = self.usage.cache_write,
            cost_usd = self.cost.map(|c| c.to_usd_string()),
            cached = self.cached,
            stream = self.stream,
            latency_ms = latency,
            ttft_ms = self.ttft_ms,
            guardrail_actions = self.guardrail_actions,
            prompt_sha256 = (!trace.sha256.is_empty()).then_some(trace.sha256.as_str()),
            output_sha256 = self.output_sha256.as_deref(),
            prompt_text = trace.text.as_deref(),
            output_text = self.output_text.as_deref(),
            "request"
        );
    }

    /// Writes the line, then flushes the metrics when the runtime does not (streaming).
    pub fn close(self, state: &AppState, meta: &RequestMeta, error: Option<&Error>) {
        self.finish(meta, error);
        if let Some(flush) = &state.flush_metrics {
            flush();
        }
    }
}

/// Writes the line of a request its handler never saw, refused by an extractor.
pub async fn log_refusals(
    State(state): State<Shared>,
    meta: RequestMeta,
    request: Request,
    next: Next,
) -> Response {
    let route = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or(request.uri().path(), MatchedPath::as_str)
    );
    let response = next.run(request).await;
    if let Some(Refused(error)) = response.extensions().get::<Refused>() {
        RequestLog::new(route, &meta).close(&state, &meta, Some(error));
    }
    response
}
