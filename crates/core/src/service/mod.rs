//! The answer pipeline: one request from a prepared input to an answer, shared by the chat
//! handler (every API, streamed or not) and the batch worker.
//!
//! ## Overview
//!
//! ```text
//! admit:   prepare -> input guardrails -> budget + rate (may degrade the route) -> cache key
//! cache:   a hit is answered (and recorded at no cost) without a model call
//! invoke:  the output plan shapes the request (respond tool or instruction), the chain runs
//! charge:  every model call is recorded once, whatever happens next
//! output:  structured output (validated; one repair on whole answers) -> output guardrails
//!          -> cache write
//! ```
//!
//! Streamed and whole answers run the same steps. A stream differs only in how its answer
//! arrives: [`stream::Accumulator`] folds the model's events into the same
//! [`ModelResponse`] a whole answer has, while the driver forwards (redacted) deltas to the
//! client; then the same output steps run on it. A stream cannot be repaired (its text has
//! left), so an invalid structured output ends it with an error instead.
//!
//! Files: [`admit`] (everything before the model), [`output`] (the structured-output plan),
//! [`guard`] (guardrails on input and output), [`charge`] (pricing and the ledger),
//! [`caching`] (the response cache), [`finish`] (the steps after the model, shared),
//! [`stream`] (accumulator and driver).

mod admit;
mod audit;
mod bulk;
mod caching;
mod charge;
mod finish;
mod guard;
mod output;
mod retrieve;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

pub use self::bulk::{BulkFit, BulkItem};
use self::charge::Charges;
pub use self::output::{OutputPlan, RESPOND_TOOL, Validators};
pub use self::stream::{AnswerStream, StreamItem, StreamSummary};
use crate::chat::{ChatInput, Preparer, PromptUsed};
use crate::config::Configs;
use crate::error::Error;
use crate::guardrails::Findings;
use crate::invoke::{Fallback, Invoker, fallbacks};
use crate::model::{ContentBlock, StopReason, TokenUsage};
use crate::ports::AdmissionControl;
use crate::ports::GuardrailApplier;
use crate::ports::{AuditTrail, ResponseCache, StoreError, UsageLedger};
use crate::pricing::MicroUsd;
use crate::tenancy::Caller;

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

/// No Bedrock guardrail applier (unit tests; batch and cache lookups, which never stream).
pub struct NoApplier;

#[async_trait::async_trait]
impl GuardrailApplier for NoApplier {
    async fn input_intervenes(
        &self,
        _: &crate::guardrails::BedrockGuardrail,
        _: &str,
    ) -> Result<bool, StoreError> {
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
    /// Where the answer cites the request's documents.
    pub citations: Vec<crate::model::Citation>,
    /// How Bedrock served it: the service tier, a prompt router's choice.
    pub served: crate::model::Served,
    /// What retrieval did (the sources given to the model), for a prompt that retrieves.
    pub retrieval: Option<crate::retrieval::RetrievalOutcome>,
    /// The grounding check's verdict, for a prompt that asks for one.
    pub grounding: Option<crate::retrieval::GroundingResult>,
}

impl Answer {
    pub fn text(&self) -> String {
        crate::model::text_of(&self.content)
    }

    pub fn reasoning(&self) -> Option<String> {
        crate::model::reasoning_of(&self.content)
    }
}

/// A batch item's stored result: what the answer said and what it cost.
impl From<&Answer> for crate::jobs::ItemResult {
    fn from(answer: &Answer) -> Self {
        Self {
            output: answer.text(),
            json: answer.json.clone(),
            usage: answer.usage,
            cost: answer.cost,
            model: answer.model.clone(),
            prompt: answer
                .prompt
                .as_ref()
                .map(|p| format!("{}@{}", p.name, p.version)),
            cached: answer.cached,
            service_tier: answer.served.service_tier,
        }
    }
}

/// The ports a service runs on.
pub struct Ports {
    pub preparer: Preparer,
    pub invoker: Arc<Invoker>,
    pub cache: Arc<dyn ResponseCache>,
    pub admission: Arc<dyn AdmissionControl>,
    pub ledger: Arc<dyn UsageLedger>,
    pub applier: Arc<dyn GuardrailApplier>,
    pub retrieval: crate::retrieval::RetrievalPorts,
    /// Where audit records go (`NoAudit` where nothing is answered).
    pub audit: Arc<dyn AuditTrail>,
}

/// What a service and the tasks driving its streams share.
pub(crate) struct Shared {
    pub(crate) cache: Arc<dyn ResponseCache>,
    pub(crate) ledger: Arc<dyn UsageLedger>,
    pub(crate) admission: Arc<dyn AdmissionControl>,
    pub(crate) applier: Arc<dyn GuardrailApplier>,
    pub(crate) retrieval: crate::retrieval::RetrievalPorts,
    pub(crate) audit: Arc<dyn AuditTrail>,
    pub(crate) configs: Arc<Configs>,
    pub(crate) validators: Validators,
    pub(crate) ttl: Duration,
    pub(crate) log_content: bool,
}

pub struct ChatService {
    preparer: Preparer,
    invoker: Arc<Invoker>,
    shared: Arc<Shared>,
}

impl ChatService {
    pub fn new(ports: Ports, options: ServiceOptions) -> Self {
        let shared = Arc::new(Shared {
            cache: ports.cache,
            ledger: ports.ledger,
            admission: ports.admission,
            applier: ports.applier,
            retrieval: ports.retrieval,
            audit: ports.audit,
            configs: ports.preparer.configs().clone(),
            validators: Validators::default(),
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

    /// The cached answer to a request, if there is one; never calls a model. `Ok(None)`:
    /// no entry; `Err(NotFound)`: the request is not one the cache would hold.
    pub async fn lookup(&self, caller: &Caller, input: ChatInput) -> Result<Option<Answer>, Error> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let admitted = self
            .admit(
                caller,
                input,
                CacheMode::Auto,
                admit::Mode::Peek,
                "",
                deadline,
            )
            .await?;
        // A prompt's answer depends on what it retrieves: with no cached retrieval, no
        // cached answer can be known here (this function does not retrieve).
        if admitted.prepared.retrieval.is_some() && admitted.retrieval.is_none() {
            return Ok(None);
        }
        let Some(key) = &admitted.key else {
            return Err(Error::NotFound(
                "this request is never cached: set temperature to 0, or use a prompt marked cacheable".into(),
            ));
        };
        let Some(hit) = self.shared.hit(caller, &admitted.prepared, key).await else {
            return Ok(None);
        };
        Ok(Some(caching::from_cache(hit, admitted)))
    }

    /// Admits a request and, when it reads the cache, looks it up (a hit is recorded).
    async fn begin(
        &self,
        caller: &Caller,
        input: ChatInput,
        cache: CacheMode,
        request_id: &str,
        mode: admit::Mode,
        deadline: Instant,
    ) -> Result<(admit::Admitted, Option<caching::Hit>), Error> {
        let admitted = self
            .admit(caller, input, cache, mode, request_id, deadline)
            .await?;
        let hit = self
            .shared
            .try_cache(caller, &admitted, cache, request_id)
            .await;
        Ok((admitted, hit))
    }

    /// The input tokens a request would use, estimated after the prompt, routing and policy
    /// (what Anthropic's `count_tokens` answers): nothing is called, counted or charged.
    pub async fn count_tokens(&self, caller: &Caller, input: ChatInput) -> Result<u64, Error> {
        let prepared = self.preparer.prepare(caller, input).await?;
        Ok(u64::from(charge::request_tokens(&prepared.request)))
    }

    /// Answers a request.
    pub async fn answer(&self, caller: &Caller, req: AnswerRequest) -> Result<Answer, Error> {
        let (mut admitted, hit) = self
            .begin(
                caller,
                req.input,
                req.cache,
                &req.id,
                admit::Mode::Whole,
                req.deadline,
            )
            .await?;
        // The retrieval's ledger line, written beside the model call; settled before answering.
        let pending = admitted.pending.take();
        if let Some(hit) = hit {
            retrieve::settle(pending).await;
            self.shared
                .audit_hit(caller, &admitted, &hit, &req.id)
                .await;
            return Ok(caching::from_cache(hit, admitted));
        }

        let plan = match self.shared.plan(&admitted.prepared) {
            Ok(plan) => plan,
            Err(e) => {
                retrieve::settle(pending).await;
                return Err(e);
            }
        };
        // The calls and their charge run to the end in a task of their own: a caller that
        // goes away (a dropped connection cancels its handler) cannot stop a call Bedrock
        // bills from being charged.
        let (invoker, shared, owner) = (self.invoker.clone(), self.shared.clone(), caller.clone());
        let id = req.id.clone();
        let deadline = req.deadline;
        let (admitted, charges, result, cost) = crate::trace::spawn(async move {
            let mut charges = Charges::default();
            let result =
                output::invoke_planned(&invoker, &admitted, plan.as_ref(), deadline, &mut charges)
                    .await;
            // Charged before anything else can fail: every call that may be billed is recorded.
            let cost = shared
                .charge(&owner, (&admitted.prepared).into(), &id, &charges)
                .await;
            retrieve::settle(pending).await;
            (admitted, charges, result, cost)
        })
        .await
        .map_err(|e| Error::Internal(format!("the model call's task failed: {e}")))?;
        let (response, target, attempts, json) = result?;
        let fallback_list = fallbacks(&attempts, Some(&target.invoke_id));
        charge::count_attempts(caller, &admitted.prepared, &target, &attempts);

        let mut finished = self
            .shared
            .finish(caller, &admitted, &target, response, json)
            .await?;
        let usage = charges.usage();
        self.shared
            .audit(
                caller,
                &admitted,
                audit::Answered {
                    request_id: &req.id,
                    model: &target.invoke_id,
                    base_model: &target.base_id,
                    region: target.region.as_deref(),
                    usage,
                    cost,
                    cached: false,
                    fallbacks: &fallback_list,
                    findings: &finished.findings,
                    grounding: finished.grounding.as_ref(),
                    answer: &finished.response,
                    output_sha256: &finished.raw_sha256,
                },
            )
            .await;
        guard::restore(&admitted.masks, &mut finished.response, &mut finished.json);
        Ok(Answer {
            citations: finished.response.citations,
            served: finished.response.served,
            content: finished.response.content,
            json: finished.json,
            stop_reason: finished.response.stop_reason,
            usage,
            model: target.invoke_id.clone(),
            base_model: target.base_id.clone(),
            fallbacks: fallback_list,
            cost,
            cached: false,
            prompt: admitted.prepared.prompt.clone(),
            model_latency_ms: finished.response.latency_ms,
            guardrails: finished.findings,
            degraded_to: admitted.degraded_to,
            model_calls: charges.count(),
            prompt_trace: admitted.trace,
            retrieval: admitted.retrieval,
            grounding: finished.grounding,
        })
    }

    /// Answers a request as a stream. Errors before the first token are returned here;
    /// after it, they end the stream as an `Error` item.
    pub async fn answer_stream(
        &self,
        caller: &Caller,
        req: AnswerRequest,
    ) -> Result<AnswerStream, Error> {
        let started = Instant::now();
        let (mut admitted, hit) = self
            .begin(
                caller,
                req.input,
                req.cache,
                &req.id,
                admit::Mode::Stream,
                req.deadline,
            )
            .await?;
        let pending = admitted.pending.take();
        if let Some(hit) = hit {
            retrieve::settle(pending).await;
            self.shared
                .audit_hit(caller, &admitted, &hit, &req.id)
                .await;
            return Ok(caching::replay(hit, admitted));
        }
        let plan = match self.shared.plan(&admitted.prepared) {
            Ok(plan) => plan,
            Err(e) => {
                retrieve::settle(pending).await;
                return Err(e);
            }
        };
        let request = output::shaped(&admitted.prepared.request, plan.as_ref());
        let chain = &admitted.prepared.route.chain;
        let invocation = self
            .invoker
            .invoke_stream(chain, &request, req.deadline)
            .await;
        // Attempts cut off before the first token may still be billed: charged now, under
        // IDs of their own (the stream's call is charged when it ends).
        let attempts = match &invocation {
            Ok(i) => &i.attempts,
            Err(f) => &f.attempts,
        };
        let mut early = Charges::default();
        early.push_maybe_billed(chain, attempts, &request);
        if early.count() > 0 {
            let id = format!("{}#before-first-token", req.id);
            self.shared
                .charge(caller, (&admitted.prepared).into(), &id, &early)
                .await;
        }
        let invocation = match invocation {
            Ok(i) => i,
            Err(f) => {
                retrieve::settle(pending).await;
                return Err(Error::Invoke(f));
            }
        };
        charge::count_attempts(
            caller,
            &admitted.prepared,
            &invocation.target,
            &invocation.attempts,
        );
        Ok(stream::Run {
            shared: self.shared.clone(),
            caller: caller.clone(),
            admitted,
            plan,
            request_id: req.id,
            input_tokens: charge::request_tokens(&request),
            pending,
        }
        .start(started.elapsed().as_millis() as u64, invocation))
    }
}
