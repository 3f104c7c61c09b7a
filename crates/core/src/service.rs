//! The chat service: one request from a prepared input to an answer, shared by the chat
//! handler (both APIs, streamed or not) and the batch worker.
//!
//! ```text
//! prepare -> input guardrails -> admission (budget, rate) -> cache -> invoke
//!   (structured output: one repair attempt) -> output guardrails -> cache write
//!   -> usage ledger + metrics
//! ```
//!
//! Every model call is charged to the ledger exactly once, whatever happens after it
//! (a refused answer, an invalid structured output, a client that hangs up mid-stream).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::{Admission, AdmissionControl};
use crate::cache::{CacheKey, CachedAnswer, ResponseCache};
use crate::chat::{ChatInput, Prepared, Preparer, PromptUsed, estimate_tokens};
use crate::config::Configs;
use crate::error::Error;
use crate::guardrails::{
    BedrockGuardrail, Findings, GuardrailConfig, PiiAction, StreamRedactor, check,
};
use crate::invoke::{Attempt, AttemptOutcome, Fallback, Invoker, fallbacks};
use crate::model::{
    ContentBlock, GuardrailRef, Message, ModelErrorKind, ModelRequest, ModelResponse, Role,
    StopReason, StreamEvent, SystemBlock, TokenUsage, ToolChoice, ToolResultContent, ToolSpec,
};
use crate::pricing::{MicroUsd, Priced};
use crate::routing::{ModelTarget, RouteSpec};
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;
use crate::usage::{UsageLedger, UsageRecord};

/// The tool that carries structured output when a schema is requested.
pub const RESPOND_TOOL: &str = "respond";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Use the cache when it is safe: temperature 0, or a prompt marked cacheable.
    #[default]
    Auto,
    /// Neither read nor write.
    Bypass,
    /// Skip the read, call the model, write the answer.
    Refresh,
}

/// Bedrock's ApplyGuardrail, for streamed output (Converse applies the guardrail itself).
#[async_trait]
pub trait GuardrailApplier: Send + Sync {
    /// True when the guardrail intervenes on this output text.
    async fn intervenes(&self, guardrail: &BedrockGuardrail, output: &str) -> Result<bool, String>;
}

pub struct NoApplier;

#[async_trait]
impl GuardrailApplier for NoApplier {
    async fn intervenes(&self, _: &BedrockGuardrail, _: &str) -> Result<bool, String> {
        Ok(false)
    }
}

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Cache lifetime when the prompt gives none.
    pub default_cache_ttl: Duration,
    /// Keep the request's text for the request log (debug only: content is never logged
    /// by default, only its SHA-256).
    pub log_content: bool,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            default_cache_ttl: Duration::from_secs(3600),
            log_content: false,
        }
    }
}

/// What the request log says about the text sent to the model.
#[derive(Debug, Clone, Default)]
pub struct PromptTrace {
    /// SHA-256 of the system and messages as sent (after redaction).
    pub sha256: String,
    /// The text itself, only with `log_content`.
    pub text: Option<String>,
}

fn trace(request: &ModelRequest, keep: bool) -> PromptTrace {
    use sha2::Digest;
    let bytes = serde_json::to_vec(&(&request.system, &request.messages)).unwrap_or_default();
    PromptTrace {
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        text: keep.then(|| String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// One request to answer.
#[derive(Debug, Clone)]
pub struct AnswerRequest {
    /// The request ID: usage records derive their idempotent IDs from it.
    pub id: String,
    pub input: ChatInput,
    pub cache: CacheMode,
    pub deadline: Instant,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Text and tool calls (the structured-output tool is not among them).
    pub content: Vec<ContentBlock>,
    pub json: Option<Value>,
    pub stop_reason: StopReason,
    /// Tokens charged for this request (zero when served from the cache).
    pub usage: TokenUsage,
    /// The model that answered (as invoked).
    pub model: String,
    pub base_model: String,
    pub fallbacks: Vec<Fallback>,
    /// None when a model used has no price.
    pub cost: Option<MicroUsd>,
    pub cached: bool,
    pub prompt: Option<PromptUsed>,
    pub model_latency_ms: u64,
    pub guardrails: Findings,
    /// The tier a budget degraded this request to.
    pub degraded_to: Option<String>,
    /// Model calls made (a structured-output repair is a second one).
    pub model_calls: u32,
    pub prompt_trace: PromptTrace,
}

impl Answer {
    pub fn text(&self) -> String {
        crate::model::text_of(&self.content)
    }
}

/// One event of a streamed answer.
#[derive(Debug)]
pub enum StreamItem {
    Text(String),
    ToolStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolDelta {
        index: u32,
        json: String,
    },
    Done(Box<StreamSummary>),
    Error(Error),
}

#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    pub cost: Option<MicroUsd>,
    pub json: Option<Value>,
    pub guardrails: Findings,
    pub model_latency_ms: u64,
}

/// A streamed answer: what is known when the first token arrives, and the events.
pub struct AnswerStream {
    pub model: String,
    pub fallbacks: Vec<Fallback>,
    pub prompt: Option<PromptUsed>,
    pub cached: bool,
    pub degraded_to: Option<String>,
    pub guardrails: Findings,
    /// From the call to the first token.
    pub ttft_ms: u64,
    pub prompt_trace: PromptTrace,
    pub events: BoxStream<'static, StreamItem>,
}

/// Model calls made for one request, charged once each, whatever happens next.
#[derive(Default)]
struct Charges {
    calls: Vec<(ModelTarget, TokenUsage, bool)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn throttles(attempts: &[Attempt]) -> u64 {
    attempts
        .iter()
        .filter(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::Failed {
                    error: ModelErrorKind::Throttled,
                    ..
                } | AttemptOutcome::CircuitOpen
            )
        })
        .count() as u64
}

/// The JSON a structured answer carries: the `respond` tool's input, or the text.
fn extract_json(response: &ModelResponse, via_tool: bool) -> Result<Value, String> {
    if via_tool {
        return response
            .content
            .iter()
            .find_map(|b| match b {
                ContentBlock::ToolUse { name, input, .. } if name == RESPOND_TOOL => {
                    Some(input.clone())
                }
                _ => None,
            })
            .ok_or_else(|| "the model did not call the respond tool".to_owned());
    }
    let text = response.text();
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    serde_json::from_str(body).map_err(|e| format!("the output is not JSON: {e}"))
}

fn validate(validator: &jsonschema::Validator, value: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(10)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Applies input guardrails to the caller's text (not the prompt's own system text).
fn guard_input(config: &GuardrailConfig, prepared: &mut Prepared) -> Result<Findings, Error> {
    let mut findings = Findings::default();
    if !config.is_active() {
        return Ok(findings);
    }
    let skip = prepared.prompt_system_blocks;
    for block in prepared.request.system.iter_mut().skip(skip) {
        if let SystemBlock::Text(t) = block {
            let (masked, f) = check(config, t, true);
            *t = masked;
            findings.merge(f);
        }
    }
    for message in &mut prepared.request.messages {
        for block in &mut message.content {
            let text = match block {
                ContentBlock::Text(t) => t,
                ContentBlock::ToolResult { content, .. } => {
                    for part in content {
                        if let ToolResultContent::Text(t) = part {
                            let (masked, f) = check(config, t, true);
                            *t = masked;
                            findings.merge(f);
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let (masked, f) = check(config, text, message.role == Role::User);
            *text = masked;
            findings.merge(f);
        }
    }
    if !findings.blocked.is_empty() {
        return Err(Error::GuardrailBlocked(format!(
            "the request was blocked by a guardrail: {}",
            findings.blocked.join(", ")
        )));
    }
    Ok(findings)
}

pub struct ChatService {
    preparer: Preparer,
    invoker: Arc<Invoker>,
    shared: Arc<Shared>,
}

/// The ports a service runs on.
pub struct Ports {
    pub preparer: Preparer,
    pub invoker: Arc<Invoker>,
    pub cache: Arc<dyn ResponseCache>,
    pub admission: Arc<dyn AdmissionControl>,
    pub ledger: Arc<dyn UsageLedger>,
    pub applier: Arc<dyn GuardrailApplier>,
}

/// A request after everything that happens before the model.
struct Admitted {
    prepared: Prepared,
    guard: GuardrailConfig,
    findings: Findings,
    key: Option<CacheKey>,
    degraded_to: Option<String>,
    trace: PromptTrace,
}

impl ChatService {
    pub fn new(ports: Ports, options: ServiceOptions) -> Self {
        let shared = Arc::new(Shared {
            cache: ports.cache,
            ledger: ports.ledger,
            admission: ports.admission,
            applier: ports.applier,
            configs: ports.preparer.configs().clone(),
            ttl: options.default_cache_ttl,
            log_content: options.log_content,
        });
        Self {
            preparer: ports.preparer,
            invoker: ports.invoker,
            shared,
        }
    }

    pub fn configs(&self) -> &Arc<Configs> {
        self.preparer.configs()
    }

    pub fn preparer(&self) -> &Preparer {
        &self.preparer
    }

    /// Prepare, guard, admit, and decide the cache key. `peek` decides routing as admission
    /// would but counts nothing and refuses nothing (cache lookups).
    async fn admit(
        &self,
        caller: &Caller,
        input: ChatInput,
        cache: CacheMode,
        streaming: bool,
        peek: bool,
    ) -> Result<Admitted, Error> {
        let mut prepared = self.preparer.prepare(caller, input).await?;
        let tenant = caller.policy.guardrails.clone().unwrap_or_default();
        let guard = match &prepared.guardrails {
            Some(p) => tenant.combine(p),
            None => tenant,
        };
        let feature = prepared.feature().unwrap_or("-").to_owned();
        let dims = Dims {
            tenant: &caller.tenant,
            model: "-",
            feature: &feature,
        };
        let findings = match guard_input(&guard, &mut prepared) {
            Ok(f) => f,
            Err(e) => {
                telemetry::count("GuardrailActions", 1, dims);
                return Err(e);
            }
        };
        telemetry::count("GuardrailActions", u64::from(findings.actions()), dims);
        if let Some(b) = &guard.bedrock
            && !streaming
        {
            prepared.request.guardrail = Some(GuardrailRef {
                id: b.id.clone(),
                version: b.version.clone(),
            });
        }
        let admission = if peek {
            self.shared
                .admission
                .peek(caller, prepared.feature(), &prepared.route)
                .await
        } else {
            self.shared
                .admission
                .admit(caller, prepared.feature(), &prepared.route)
                .await?
        };
        let degraded_to = match admission {
            Admission::Proceed => None,
            Admission::Degrade { tier, reason } => {
                let routing = self.configs().routing().await?;
                prepared.route = routing.route(Some(&RouteSpec::Tier(tier.clone())))?;
                tracing::info!(tenant = %caller.tenant, %tier, %reason, "budget: request degraded");
                Some(tier)
            }
        };
        let safe = prepared.request.params.temperature == Some(0.0) || prepared.prompt_cacheable;
        let key =
            (cache != CacheMode::Bypass && safe).then(|| CacheKey::new(&caller.tenant, &prepared));
        let trace = trace(&prepared.request, self.shared.log_content);
        Ok(Admitted {
            prepared,
            guard,
            findings,
            key,
            degraded_to,
            trace,
        })
    }

    /// The cached answer to an admitted request, with the base model that produced it.
    async fn hit(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        key: &CacheKey,
    ) -> Option<(CachedAnswer, String)> {
        let feature = prepared.feature().unwrap_or("-");
        let first_base = prepared
            .route
            .chain
            .first()
            .map(|t| t.base_id.as_str())
            .unwrap_or_default();
        let dims = Dims {
            tenant: &caller.tenant,
            model: first_base,
            feature,
        };
        let hit = self.shared.cached(key, dims).await?;
        let base = self
            .configs()
            .routing()
            .await
            .ok()
            .and_then(|r| r.base_model(&hit.model))
            .unwrap_or_else(|| hit.model.clone());
        Some((hit, base))
    }

    /// The cached answer to a request, if there is one; never calls a model. `Ok(None)`:
    /// no entry; `Err(NotFound)`: the request is not one the cache would hold.
    pub async fn lookup(&self, caller: &Caller, input: ChatInput) -> Result<Option<Answer>, Error> {
        let Admitted {
            prepared,
            findings,
            key,
            degraded_to,
            trace,
            ..
        } = self
            .admit(caller, input, CacheMode::Auto, false, true)
            .await?;
        let Some(key) = key else {
            return Err(Error::NotFound(
                "this request is never cached: set temperature to 0, or use a prompt marked cacheable".into(),
            ));
        };
        let Some((hit, base)) = self.hit(caller, &prepared, &key).await else {
            return Ok(None);
        };
        Ok(Some(from_cache(
            hit,
            base,
            prepared.prompt.clone(),
            findings,
            degraded_to,
            trace,
        )))
    }

    /// Answers a request.
    pub async fn answer(&self, caller: &Caller, req: AnswerRequest) -> Result<Answer, Error> {
        let Admitted {
            prepared,
            guard,
            mut findings,
            key,
            degraded_to,
            trace,
        } = self
            .admit(caller, req.input, req.cache, false, false)
            .await?;
        let feature = prepared.feature().unwrap_or("-").to_owned();

        if let (Some(k), CacheMode::Auto) = (&key, req.cache)
            && let Some((hit, base)) = self.hit(caller, &prepared, k).await
        {
            self.shared
                .charge_cache_hit(caller, &prepared, &req.id, &base)
                .await;
            return Ok(from_cache(
                hit,
                base,
                prepared.prompt.clone(),
                findings,
                degraded_to,
                trace,
            ));
        }

        let mut charges = Charges::default();
        let result = self
            .invoke_structured(&prepared, req.deadline, &mut charges)
            .await;
        let cost = self
            .shared
            .charge(caller, &prepared, &req.id, &charges)
            .await;
        let (mut response, target, attempts, json) = result?;
        let fallback_list = fallbacks(&attempts, Some(&target.invoke_id));
        let dims = Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: &feature,
        };
        telemetry::count("Fallbacks", fallback_list.len() as u64, dims);
        telemetry::count("Throttles", throttles(&attempts), dims);

        if response.stop_reason == StopReason::GuardrailIntervened {
            telemetry::count("GuardrailActions", 1, dims);
            return Err(Error::GuardrailBlocked(
                "the Bedrock guardrail intervened on this request".into(),
            ));
        }
        // Output guardrails: PII masked or refused, denied words refused.
        if guard.is_active() {
            let mut out = Findings::default();
            for block in &mut response.content {
                if let ContentBlock::Text(t) = block {
                    let (masked, f) = check(&guard, t, false);
                    if guard.pii == PiiAction::Redact {
                        *t = masked;
                    }
                    out.merge(f);
                }
            }
            telemetry::count("GuardrailActions", u64::from(out.actions()), dims);
            if !out.blocked.is_empty() {
                return Err(Error::GuardrailBlocked(format!(
                    "the answer was blocked by a guardrail: {}",
                    out.blocked.join(", ")
                )));
            }
            findings.merge(out);
        }
        if let Some(k) = &key {
            let entry = CachedAnswer {
                response: response.clone(),
                model: target.invoke_id.clone(),
                prompt: prepared
                    .prompt
                    .as_ref()
                    .map(|p| (p.name.clone(), p.version)),
                json: json.clone(),
                created_at: now_ms() / 1000,
            };
            self.shared
                .store(k, entry, self.shared.ttl(&prepared), dims)
                .await;
        }
        let usage = charges
            .calls
            .iter()
            .fold(TokenUsage::default(), |a, (_, u, _)| a + *u);
        Ok(Answer {
            content: response.content,
            json,
            stop_reason: response.stop_reason,
            usage,
            model: target.invoke_id.clone(),
            base_model: target.base_id.clone(),
            fallbacks: fallback_list,
            cost,
            cached: false,
            prompt: prepared.prompt.clone(),
            model_latency_ms: response.latency_ms,
            guardrails: findings,
            degraded_to,
            model_calls: charges.calls.len() as u32,
            prompt_trace: trace,
        })
    }

    /// Invokes the chain; with an output schema, asks for JSON (through a forced `respond`
    /// tool when the model supports tools), validates it, and repairs once.
    async fn invoke_structured(
        &self,
        prepared: &Prepared,
        deadline: Instant,
        charges: &mut Charges,
    ) -> Result<(ModelResponse, ModelTarget, Vec<Attempt>, Option<Value>), Error> {
        let Some(schema) = &prepared.output_schema else {
            let inv = self
                .invoker
                .invoke(&prepared.route.chain, &prepared.request, deadline)
                .await
                .map_err(Error::Invoke)?;
            charges
                .calls
                .push((inv.target.clone(), inv.response.usage, false));
            return Ok((inv.response, inv.target, inv.attempts, None));
        };
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            Error::bad_request("response_format", format!("not a valid JSON Schema: {e}"))
        })?;
        let routing = self.configs().routing().await?;
        let via_tool = prepared.request.tools.is_empty()
            && prepared
                .route
                .chain
                .iter()
                .all(|t| routing.capabilities(&t.base_id).is_some_and(|c| c.tool_use));
        let mut request = prepared.request.clone();
        if via_tool {
            request.tools = vec![ToolSpec {
                name: RESPOND_TOOL.into(),
                description: Some("Return the answer as JSON that matches the schema.".into()),
                input_schema: schema.clone(),
            }];
            request.tool_choice = Some(ToolChoice::Tool(RESPOND_TOOL.into()));
        } else {
            request.system.push(SystemBlock::Text(format!(
                "Answer with one JSON value that validates against this JSON Schema, and nothing else:\n{schema}"
            )));
        }

        let first = self
            .invoker
            .invoke(&prepared.route.chain, &request, deadline)
            .await
            .map_err(Error::Invoke)?;
        charges
            .calls
            .push((first.target.clone(), first.response.usage, false));
        let problem = match extract_json(&first.response, via_tool)
            .and_then(|v| validate(&validator, &v).map(|()| v))
        {
            Ok(value) => {
                return Ok((
                    json_answer(first.response, &value, via_tool),
                    first.target,
                    first.attempts,
                    Some(value),
                ));
            }
            Err(problem) => problem,
        };
        tracing::info!(model = %first.target.invoke_id, %problem, "structured output invalid; one repair attempt");

        let mut repair = request;
        let mut said = first.response.content.clone();
        if said.is_empty() {
            said.push(ContentBlock::Text("(no output)".into()));
        }
        repair.messages.push(Message {
            role: Role::Assistant,
            content: said,
        });
        let correction = format!(
            "That output does not match the required JSON Schema: {problem}. Answer again with corrected JSON."
        );
        let tool_id = first.response.content.iter().find_map(|b| match b {
            ContentBlock::ToolUse { id, name, .. } if name == RESPOND_TOOL => Some(id.clone()),
            _ => None,
        });
        repair.messages.push(match (via_tool, tool_id) {
            (true, Some(id)) => Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: vec![ToolResultContent::Text(correction)],
                    is_error: true,
                }],
            },
            _ => Message::user(correction),
        });
        let mut attempts = first.attempts;
        let second = self
            .invoker
            .invoke(&prepared.route.chain, &repair, deadline)
            .await
            .map_err(Error::Invoke)?;
        charges
            .calls
            .push((second.target.clone(), second.response.usage, false));
        attempts.extend(second.attempts);
        match extract_json(&second.response, via_tool)
            .and_then(|v| validate(&validator, &v).map(|()| v))
        {
            Ok(value) => Ok((
                json_answer(second.response, &value, via_tool),
                second.target,
                attempts,
                Some(value),
            )),
            Err(e) => Err(Error::InvalidOutput(format!(
                "the model's output does not match the requested schema after one repair attempt: {e}"
            ))),
        }
    }

    /// Answers a request as a stream. Errors before the first token are returned here;
    /// after it, they end the stream as an `Error` item.
    pub async fn answer_stream(
        &self,
        caller: &Caller,
        req: AnswerRequest,
    ) -> Result<AnswerStream, Error> {
        let started = Instant::now();
        let Admitted {
            mut prepared,
            guard,
            findings,
            key,
            degraded_to,
            trace,
        } = self
            .admit(caller, req.input, req.cache, true, false)
            .await?;
        let feature = prepared.feature().unwrap_or("-").to_owned();

        if let (Some(k), CacheMode::Auto) = (&key, req.cache)
            && let Some((hit, base)) = self.hit(caller, &prepared, k).await
        {
            self.shared
                .charge_cache_hit(caller, &prepared, &req.id, &base)
                .await;
            return Ok(replay(
                hit,
                prepared.prompt.clone(),
                findings,
                degraded_to,
                trace,
            ));
        }

        let via_tool = prepared.output_schema.is_some() && prepared.request.tools.is_empty();
        if let (Some(schema), true) = (&prepared.output_schema, via_tool) {
            prepared.request.tools = vec![ToolSpec {
                name: RESPOND_TOOL.into(),
                description: Some("Return the answer as JSON that matches the schema.".into()),
                input_schema: schema.clone(),
            }];
            prepared.request.tool_choice = Some(ToolChoice::Tool(RESPOND_TOOL.into()));
        }
        let invocation = match self
            .invoker
            .invoke_stream(&prepared.route.chain, &prepared.request, req.deadline)
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(Error::Invoke(e)),
        };
        let ttft_ms = started.elapsed().as_millis() as u64;
        let dims = Dims {
            tenant: &caller.tenant,
            model: &invocation.target.base_id,
            feature: &feature,
        };
        telemetry::count("Fallbacks", invocation.fallbacks().len() as u64, dims);
        telemetry::count("Throttles", throttles(&invocation.attempts), dims);

        let (tx, rx) = mpsc::channel::<StreamItem>(64);
        let info = AnswerStream {
            model: invocation.target.invoke_id.clone(),
            fallbacks: invocation.fallbacks(),
            prompt: prepared.prompt.clone(),
            cached: false,
            degraded_to,
            guardrails: findings.clone(),
            ttft_ms,
            prompt_trace: trace,
            events: futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|i| (i, rx))
            })
            .boxed(),
        };
        let run = StreamRun {
            service: self.shared.clone(),
            caller: caller.clone(),
            prepared,
            guard,
            findings,
            key,
            request_id: req.id,
            via_tool,
        };
        tokio::spawn(run.drive(invocation.target, invocation.head, invocation.rest, tx));
        Ok(info)
    }
}

/// An answer served from the cache: no model call, nothing charged.
fn from_cache(
    hit: CachedAnswer,
    base_model: String,
    prompt: Option<PromptUsed>,
    guardrails: Findings,
    degraded_to: Option<String>,
    prompt_trace: PromptTrace,
) -> Answer {
    Answer {
        content: hit.response.content,
        json: hit.json,
        stop_reason: hit.response.stop_reason,
        usage: TokenUsage::default(),
        model: hit.model,
        base_model,
        fallbacks: Vec::new(),
        cost: Some(MicroUsd::ZERO),
        cached: true,
        prompt,
        model_latency_ms: 0,
        guardrails,
        degraded_to,
        model_calls: 0,
        prompt_trace,
    }
}

fn json_answer(mut response: ModelResponse, value: &Value, via_tool: bool) -> ModelResponse {
    if via_tool {
        // The respond tool's input is the answer; callers see it as text (and `json`).
        response.content = vec![ContentBlock::Text(value.to_string())];
        if response.stop_reason == StopReason::ToolUse {
            response.stop_reason = StopReason::EndTurn;
        }
    }
    response
}

/// A cached answer as a stream: the text in small chunks, then the summary.
fn replay(
    hit: CachedAnswer,
    prompt: Option<PromptUsed>,
    findings: Findings,
    degraded_to: Option<String>,
    prompt_trace: PromptTrace,
) -> AnswerStream {
    let text: String = hit.response.text();
    let mut items: Vec<StreamItem> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for chunk in chars.chunks(16) {
        items.push(StreamItem::Text(chunk.iter().collect()));
    }
    for (i, block) in hit.response.content.iter().enumerate() {
        if let ContentBlock::ToolUse { id, name, input } = block {
            let index = i as u32;
            items.push(StreamItem::ToolStart {
                index,
                id: id.clone(),
                name: name.clone(),
            });
            items.push(StreamItem::ToolDelta {
                index,
                json: input.to_string(),
            });
        }
    }
    items.push(StreamItem::Done(Box::new(StreamSummary {
        stop_reason: hit.response.stop_reason.clone(),
        usage: TokenUsage::default(),
        cost: Some(MicroUsd::ZERO),
        json: hit.json.clone(),
        guardrails: findings.clone(),
        model_latency_ms: 0,
    })));
    AnswerStream {
        model: hit.model,
        fallbacks: Vec::new(),
        prompt,
        cached: true,
        degraded_to,
        guardrails: findings,
        ttft_ms: 0,
        prompt_trace,
        events: futures::stream::iter(items).boxed(),
    }
}

impl Shared {
    async fn cached(&self, key: &CacheKey, dims: Dims<'_>) -> Option<CachedAnswer> {
        match self.cache.get(key).await {
            Ok(Some(hit)) => {
                telemetry::count("CacheHits", 1, dims);
                Some(hit)
            }
            Ok(None) => {
                telemetry::count("CacheMisses", 1, dims);
                None
            }
            Err(e) => {
                // Fail open: the request goes on to the model.
                telemetry::count("CacheErrors", 1, dims);
                tracing::warn!(error = %e, "response cache unavailable; continuing without it");
                None
            }
        }
    }

    fn ttl(&self, prepared: &Prepared) -> Duration {
        if prepared.cache_ttl_seconds > 0 {
            Duration::from_secs(prepared.cache_ttl_seconds)
        } else {
            self.ttl
        }
    }

    async fn store(&self, key: &CacheKey, answer: CachedAnswer, ttl: Duration, dims: Dims<'_>) {
        if let Err(e) = self.cache.put(key, &answer, ttl).await {
            telemetry::count("CacheErrors", 1, dims);
            tracing::warn!(error = %e, "response cache write failed; the answer is still returned");
        }
    }

    /// Prices one call; `None` when unpriced (logged and counted loudly).
    async fn price(&self, target: &ModelTarget, usage: &TokenUsage) -> Option<MicroUsd> {
        let pricing = match self.configs.pricing().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, model = %target.base_id, "pricing unavailable: cost not computed");
                return None;
            }
        };
        match pricing.cost(&target.base_id, usage) {
            Priced::Cost(c) => Some(c),
            Priced::Unpriced => {
                tracing::warn!(model = %target.base_id, invoke_id = %target.invoke_id, "UNPRICED MODEL: no price in the pricing table; cost not recorded as zero");
                metrics::counter!("UnpricedCalls").increment(1);
                metrics::counter!("UnpricedCalls", "Model" => target.base_id.clone()).increment(1);
                None
            }
        }
    }

    /// Writes one usage record per model call; returns the request's total cost.
    async fn charge(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        id: &str,
        charges: &Charges,
    ) -> Option<MicroUsd> {
        let mut total = Some(MicroUsd::ZERO);
        for (n, (target, usage, estimated)) in charges.calls.iter().enumerate() {
            let id = if n == 0 {
                id.to_owned()
            } else {
                format!("{id}#{n}")
            };
            let cost = self
                .record_call(caller, prepared, id, target, *usage, *estimated)
                .await;
            total = match (total, cost) {
                (Some(t), Some(c)) => Some(t + c),
                _ => None,
            };
        }
        total
    }

    /// Prices one model call, writes its usage record and metrics; returns its cost.
    async fn record_call(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        id: String,
        target: &ModelTarget,
        usage: TokenUsage,
        estimated: bool,
    ) -> Option<MicroUsd> {
        let cost = self.price(target, &usage).await;
        let record = UsageRecord {
            id,
            tenant: caller.tenant.clone(),
            model: target.base_id.clone(),
            feature: prepared.feature().map(str::to_owned),
            usage,
            cost,
            cached: false,
            estimated,
            at_ms: now_ms(),
        };
        if let Err(e) = self.ledger.record(&record).await {
            tracing::error!(error = %e, record = ?record, "USAGE NOT RECORDED: ledger and spill both failed");
        }
        let dims = Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: prepared.feature().unwrap_or("-"),
        };
        telemetry::count(
            "InputTokens",
            usage.input + usage.cache_read + usage.cache_write,
            dims,
        );
        telemetry::count("OutputTokens", usage.output, dims);
        if let Some(c) = cost {
            telemetry::count("CostMicroUSD", c.0, dims);
        }
        self.admission.used(caller, usage.total()).await;
        cost
    }

    async fn charge_cache_hit(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        id: &str,
        base_model: &str,
    ) {
        let record = UsageRecord {
            id: id.to_owned(),
            tenant: caller.tenant.clone(),
            model: base_model.to_owned(),
            feature: prepared.feature().map(str::to_owned),
            usage: TokenUsage::default(),
            cost: Some(MicroUsd::ZERO),
            cached: true,
            estimated: false,
            at_ms: now_ms(),
        };
        if let Err(e) = self.ledger.record(&record).await {
            tracing::error!(error = %e, "cache hit not recorded in the ledger");
        }
    }
}

/// The ports shared by a service and the tasks that drive its streams.
struct Shared {
    cache: Arc<dyn ResponseCache>,
    ledger: Arc<dyn UsageLedger>,
    admission: Arc<dyn AdmissionControl>,
    applier: Arc<dyn GuardrailApplier>,
    configs: Arc<Configs>,
    ttl: Duration,
    log_content: bool,
}

struct StreamRun {
    service: Arc<Shared>,
    caller: Caller,
    prepared: Prepared,
    guard: GuardrailConfig,
    findings: Findings,
    key: Option<CacheKey>,
    request_id: String,
    via_tool: bool,
}

/// Checks Bedrock's guardrail on streamed output every this many new characters.
const APPLY_EVERY_CHARS: usize = 800;

impl StreamRun {
    /// Forwards the model's events, redacting on the way, then charges, caches and ends
    /// with a summary. If the client goes away, the model stream is dropped and the tokens
    /// so far are charged (estimated when Bedrock never reported them).
    async fn drive(
        self,
        target: ModelTarget,
        head: Vec<StreamEvent>,
        rest: crate::model::ModelStream,
        tx: mpsc::Sender<StreamItem>,
    ) {
        let StreamRun {
            service,
            caller,
            prepared,
            guard,
            mut findings,
            key,
            request_id,
            via_tool,
        } = self;
        let mut redactor =
            (guard.pii == PiiAction::Redact).then(|| StreamRedactor::new(guard.clone()));
        let mut text = String::new();
        let mut tool_json = String::new();
        let mut content: Vec<ContentBlock> = Vec::new();
        let mut tools: Vec<(u32, String, String, String)> = Vec::new();
        let mut usage: Option<TokenUsage> = None;
        let mut stop = StopReason::EndTurn;
        let mut latency = 0;
        let mut output_tokens_seen = 0u64;
        let mut checked_up_to = 0usize;
        let mut failure: Option<Error> = None;
        let mut gone = false;
        let mut events = futures::stream::iter(head.into_iter().map(Ok)).chain(rest);

        while let Some(item) = events.next().await {
            let event = match item {
                Ok(e) => e,
                Err(e) => {
                    failure = Some(Error::StreamInterrupted(format!(
                        "the model stream of {} failed after the first token ({}): {}",
                        target.invoke_id,
                        e.kind.as_str(),
                        e.message
                    )));
                    break;
                }
            };
            let out = match event {
                StreamEvent::TextDelta { text: t, .. } => {
                    output_tokens_seen += 1;
                    text.push_str(&t);
                    match redactor.as_mut() {
                        Some(r) => Some(StreamItem::Text(r.push(&t))),
                        None => Some(StreamItem::Text(t)),
                    }
                }
                StreamEvent::ToolUseStart { index, id, name } => {
                    if via_tool && name == RESPOND_TOOL {
                        None
                    } else {
                        tools.push((index, id.clone(), name.clone(), String::new()));
                        Some(StreamItem::ToolStart { index, id, name })
                    }
                }
                StreamEvent::ToolUseDelta { index, input_json } => {
                    output_tokens_seen += 1;
                    if via_tool && !tools.iter().any(|t| t.0 == index) {
                        tool_json.push_str(&input_json);
                        text.push_str(&input_json);
                        Some(StreamItem::Text(input_json))
                    } else {
                        if let Some(t) = tools.iter_mut().find(|t| t.0 == index) {
                            t.3.push_str(&input_json);
                        }
                        Some(StreamItem::ToolDelta {
                            index,
                            json: input_json,
                        })
                    }
                }
                StreamEvent::BlockStop { .. } => None,
                StreamEvent::MessageStop { stop_reason } => {
                    stop = stop_reason;
                    None
                }
                StreamEvent::Metadata {
                    usage: u,
                    latency_ms,
                } => {
                    usage = Some(u);
                    latency = latency_ms;
                    None
                }
            };
            if let Some(item) = out {
                if matches!(&item, StreamItem::Text(t) if t.is_empty()) {
                    continue;
                }
                if tx.send(item).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if let Some(b) = &guard.bedrock
                && text.len() >= checked_up_to + APPLY_EVERY_CHARS
            {
                checked_up_to = text.len();
                if service.applier.intervenes(b, &text).await.unwrap_or(false) {
                    failure = Some(Error::GuardrailBlocked(
                        "the Bedrock guardrail intervened on the answer".into(),
                    ));
                    break;
                }
            }
        }
        drop(events);

        // Charge what was used, exactly once.
        let estimated = usage.is_none();
        let usage = usage.unwrap_or_else(|| TokenUsage {
            input: u64::from(request_tokens(&prepared.request)),
            output: output_tokens_seen,
            cache_read: 0,
            cache_write: 0,
        });
        let cost = service
            .record_call(&caller, &prepared, request_id, &target, usage, estimated)
            .await;
        let feature = prepared.feature().unwrap_or("-").to_owned();
        let dims = Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: &feature,
        };
        if gone {
            tracing::info!(tenant = %caller.tenant, "client left mid-stream; usage so far charged");
            return;
        }
        if let Some(e) = failure {
            let _ = tx.send(StreamItem::Error(e)).await;
            return;
        }
        if let Some(r) = redactor.as_mut() {
            let tail = r.finish();
            findings.merge(std::mem::take(&mut r.findings));
            if !tail.is_empty() && tx.send(StreamItem::Text(tail)).await.is_err() {
                return;
            }
        }
        let policy = check(&guard, &text, false).1;
        if !policy.blocked.is_empty() {
            let _ = tx
                .send(StreamItem::Error(Error::GuardrailBlocked(format!(
                    "the answer was blocked by a guardrail: {}",
                    policy.blocked.join(", ")
                ))))
                .await;
            return;
        }
        if let Some(b) = &guard.bedrock
            && service.applier.intervenes(b, &text).await.unwrap_or(false)
        {
            let _ = tx
                .send(StreamItem::Error(Error::GuardrailBlocked(
                    "the Bedrock guardrail intervened on the answer".into(),
                )))
                .await;
            return;
        }
        telemetry::count("GuardrailActions", u64::from(findings.actions()), dims);
        let mut json = None;
        if let Some(schema) = &prepared.output_schema {
            let parsed: Result<Value, String> = if via_tool {
                serde_json::from_str(&tool_json).map_err(|e| format!("the output is not JSON: {e}"))
            } else {
                serde_json::from_str(text.trim())
                    .map_err(|e| format!("the output is not JSON: {e}"))
            };
            let checked = match jsonschema::validator_for(schema) {
                Ok(v) => parsed.and_then(|value| validate(&v, &value).map(|()| value)),
                Err(e) => Err(format!("the schema is not valid: {e}")),
            };
            match checked {
                Ok(v) => json = Some(v),
                Err(e) => {
                    let _ = tx
                        .send(StreamItem::Error(Error::InvalidOutput(format!(
                            "the streamed output does not match the requested schema: {e}"
                        ))))
                        .await;
                    return;
                }
            }
            if stop == StopReason::ToolUse && via_tool {
                stop = StopReason::EndTurn;
            }
        }
        if !text.is_empty() {
            content.push(ContentBlock::Text(if guard.pii == PiiAction::Redact {
                check(&guard, &text, false).0
            } else {
                text
            }));
        }
        for (_, id, name, input) in tools {
            content.push(ContentBlock::ToolUse {
                id,
                name,
                input: serde_json::from_str(&input).unwrap_or(Value::Null),
            });
        }
        if let Some(k) = &key {
            let entry = CachedAnswer {
                response: ModelResponse {
                    content,
                    stop_reason: stop.clone(),
                    usage,
                    latency_ms: latency,
                },
                model: target.invoke_id.clone(),
                prompt: prepared
                    .prompt
                    .as_ref()
                    .map(|p| (p.name.clone(), p.version)),
                json: json.clone(),
                created_at: now_ms() / 1000,
            };
            let ttl = service.ttl(&prepared);
            if let Err(e) = service.cache.put(k, &entry, ttl).await {
                telemetry::count("CacheErrors", 1, dims);
                tracing::warn!(error = %e, "response cache write failed");
            }
        }
        let _ = tx
            .send(StreamItem::Done(Box::new(StreamSummary {
                stop_reason: stop,
                usage,
                cost,
                json,
                guardrails: findings,
                model_latency_ms: latency,
            })))
            .await;
    }
}

fn request_tokens(request: &ModelRequest) -> u32 {
    let system: u32 = request
        .system
        .iter()
        .map(|b| match b {
            SystemBlock::Text(t) => estimate_tokens(t),
            SystemBlock::CachePoint => 0,
        })
        .sum();
    let messages: u32 = request
        .messages
        .iter()
        .map(|m| estimate_tokens(&m.text()) + 4)
        .sum();
    system + messages
}
