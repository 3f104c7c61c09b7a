//! The response cache around the model: a hit answers (whole, or replayed as a stream)
//! without a model call and is recorded at no cost; a miss's answer is stored after the
//! output steps passed. The cache fails open: errors are logged and counted, never fatal.

use std::time::Duration;

use futures::StreamExt;

use super::admit::Admitted;
use super::stream::{AnswerStream, StreamItem, StreamSummary};
use super::{Answer, CacheMode, Shared};
use crate::cache::{CacheKey, CachedAnswer};
use crate::chat::Prepared;
use crate::model::{ContentBlock, ModelResponse, TokenUsage};
use crate::ports::{Clock, SystemClock};
use crate::pricing::MicroUsd;
use crate::routing::ModelTarget;
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;

/// A cached answer and the base model that produced it.
pub(crate) struct Hit {
    pub(crate) answer: CachedAnswer,
    pub(crate) base_model: String,
}

impl Shared {
    /// The cached answer to an admitted request, if any.
    pub(crate) async fn hit(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        key: &CacheKey,
    ) -> Option<Hit> {
        let dims = Dims {
            tenant: &caller.tenant,
            model: prepared
                .route
                .chain
                .first()
                .map(|t| t.base_id.as_str())
                .unwrap_or_default(),
            feature: prepared.feature().unwrap_or("-"),
        };
        let answer = match self.cache.get(key).await {
            Ok(Some(hit)) => {
                telemetry::count("CacheHits", 1, dims);
                hit
            }
            Ok(None) => {
                telemetry::count("CacheMisses", 1, dims);
                self.count_lookup(key, false, MicroUsd::ZERO).await;
                return None;
            }
            Err(e) => {
                // Fail open: the request goes on to the model.
                telemetry::count("CacheErrors", 1, dims);
                tracing::warn!(error = %e, "response cache unavailable; continuing without it");
                return None;
            }
        };
        let base_model = prepared
            .routing
            .base_model(&answer.model)
            .unwrap_or_else(|| answer.model.clone());
        // What the hit saved: the answer's tokens at today's price of its model.
        let saved = match self.configs.pricing().await {
            Ok(pricing) => match pricing.cost(&base_model, &answer.response.usage) {
                crate::pricing::Priced::Cost(c) => c,
                crate::pricing::Priced::Unpriced => MicroUsd::ZERO,
            },
            Err(_) => MicroUsd::ZERO,
        };
        self.count_lookup(key, true, saved).await;
        Some(Hit { answer, base_model })
    }

    /// The cache's statistics; they never fail a request.
    async fn count_lookup(&self, key: &CacheKey, hit: bool, saved: MicroUsd) {
        if let Err(e) = self.cache.count(key, hit, saved).await {
            tracing::warn!(error = %e, "cache statistics not counted");
        }
    }

    /// A hit for a request that reads the cache (`auto`), recorded in the ledger.
    pub(crate) async fn try_cache(
        &self,
        caller: &Caller,
        admitted: &Admitted,
        mode: CacheMode,
        request_id: &str,
    ) -> Option<Hit> {
        let key = admitted.key.as_ref().filter(|_| mode == CacheMode::Auto)?;
        let hit = self.hit(caller, &admitted.prepared, key).await?;
        self.charge_cache_hit(caller, &admitted.prepared, request_id, &hit.base_model)
            .await;
        Some(hit)
    }

    fn ttl(&self, prepared: &Prepared) -> Duration {
        if prepared.cache_ttl_seconds > 0 {
            Duration::from_secs(prepared.cache_ttl_seconds)
        } else {
            self.ttl
        }
    }

    /// Stores an answer that passed every output step.
    pub(crate) async fn store(
        &self,
        admitted: &Admitted,
        target: &ModelTarget,
        response: &ModelResponse,
        json: &Option<serde_json::Value>,
        grounding: &Option<crate::retrieval::GroundingResult>,
        dims: Dims<'_>,
    ) {
        let Some(key) = &admitted.key else {
            return;
        };
        let prepared = &admitted.prepared;
        let entry = CachedAnswer {
            response: response.clone(),
            model: target.invoke_id.clone(),
            prompt: prepared
                .prompt
                .as_ref()
                .map(|p| (p.name.clone(), p.version)),
            json: json.clone(),
            created_at: SystemClock.now_secs(),
            grounding: grounding.clone(),
        };
        if let Err(e) = self.cache.put(key, &entry, self.ttl(prepared)).await {
            telemetry::count("CacheErrors", 1, dims);
            tracing::warn!(error = %e, "response cache write failed; the answer is still returned");
        }
    }
}

/// An answer served from the cache: no model call, nothing charged.
pub(crate) fn from_cache(hit: Hit, admitted: Admitted) -> Answer {
    let Hit {
        mut answer,
        base_model,
    } = hit;
    // The cache holds the answer as the model wrote it (placeholders under `mask`): this
    // request's values go back in.
    super::guard::restore(&admitted.masks, &mut answer.response, &mut answer.json);
    Answer {
        citations: answer.response.citations,
        served: answer.response.served,
        content: answer.response.content,
        json: answer.json,
        stop_reason: answer.response.stop_reason,
        usage: TokenUsage::default(),
        model: answer.model,
        base_model,
        fallbacks: Vec::new(),
        cost: Some(MicroUsd::ZERO),
        cached: true,
        prompt: admitted.prepared.prompt,
        model_latency_ms: 0,
        guardrails: admitted.findings,
        degraded_to: admitted.degraded_to,
        model_calls: 0,
        prompt_trace: admitted.trace,
        retrieval: admitted.retrieval,
        grounding: answer.grounding,
    }
}

/// A cached answer as a stream: the text in small chunks, the tool calls, then the summary.
pub(crate) fn replay(hit: Hit, admitted: Admitted) -> AnswerStream {
    let mut answer = hit.answer;
    super::guard::restore(&admitted.masks, &mut answer.response, &mut answer.json);
    let chars: Vec<char> = answer.response.text().chars().collect();
    // Reasoning first, each block with its signature, as a live stream sends them.
    let mut items: Vec<StreamItem> = Vec::new();
    for block in &answer.response.content {
        if let ContentBlock::Reasoning { text, signature } = block {
            items.push(StreamItem::Reasoning(text.clone()));
            items.extend(signature.clone().map(StreamItem::ReasoningSigned));
        }
    }
    items.extend(
        chars
            .chunks(16)
            .map(|chunk| StreamItem::Text(chunk.iter().collect())),
    );
    // Tool calls count from 0, as in a live stream.
    let calls = answer.response.content.iter().filter_map(|b| match b {
        ContentBlock::ToolUse { id, name, input } => Some((id, name, input)),
        _ => None,
    });
    for (i, (id, name, input)) in calls.enumerate() {
        {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
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
        stop_reason: answer.response.stop_reason.clone(),
        usage: TokenUsage::default(),
        cost: Some(MicroUsd::ZERO),
        json: answer.json.clone(),
        guardrails: admitted.findings.clone(),
        model_latency_ms: 0,
        reasoning: answer.response.reasoning_blocks(),
        citations: answer.response.citations.clone(),
        served: answer.response.served.clone(),
        grounding: answer.grounding.clone(),
    })));
    AnswerStream {
        model: answer.model,
        fallbacks: Vec::new(),
        prompt: admitted.prepared.prompt,
        cached: true,
        degraded_to: admitted.degraded_to,
        guardrails: admitted.findings,
        ttft_ms: 0,
        prompt_trace: admitted.trace,
        retrieval: admitted.retrieval,
        events: futures::stream::iter(items).boxed(),
    }
}
