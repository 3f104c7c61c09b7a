//! Retrieval and grounding around the model. Retrieval runs once a request is admitted
//! (budget first: it costs money), before the response cache (the passages are part of what
//! is asked): the tenant's cached results, else a Retrieve call charged on its own ledger
//! line. Grounding runs on the finished answer, before it is cached or released.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::Shared;
use super::admit::Mode;
use crate::chat::{Prepared, estimate_tokens};
use crate::error::Error;
use crate::guardrails::BedrockGuardrail;
use crate::model::TokenUsage;
use crate::ports::{Clock, SystemClock};
use crate::retrieval::grounding::{self, GroundingResult, MAX_ANSWER_CHARS, MAX_PARTS};
use crate::retrieval::{
    GroundingAction, OnFailure, Passage, RetrievalOutcome, RetrievalPlan, context, spec,
};
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;
use crate::usage::UsageRecord;

/// A retrieval's ledger line and cache write, still running.
pub(crate) type Pending = Option<tokio::task::JoinHandle<()>>;

/// Waits for a retrieval's ledger line (a request answers only once it is written).
pub(crate) async fn settle(pending: Pending) {
    if let Some(task) = pending
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "the retrieval's ledger task failed");
    }
}

/// The longest a Retrieve call may take, whatever time the request has left.
const MAX_RETRIEVAL_TIME: Duration = Duration::from_secs(10);

fn dims<'a>(caller: &'a Caller, prepared: &'a Prepared, kb: &'a str) -> Dims<'a> {
    Dims {
        tenant: &caller.tenant,
        model: kb,
        feature: prepared.feature().unwrap_or("-"),
    }
}

impl Shared {
    /// The grounding guardrail a plan uses: the prompt's, else the deployment's.
    fn grounding_guardrail(&self, plan: &RetrievalPlan) -> Result<Option<BedrockGuardrail>, Error> {
        let Some(g) = &plan.grounding else {
            return Ok(None);
        };
        match g.guardrail.clone().or(self.retrieval.grounding_guardrail.clone()) {
            Some(guardrail) => Ok(Some(guardrail)),
            None => Err(Error::Config(crate::params::ParamError::Invalid {
                name: "prompt".into(),
                message: "the prompt's grounding check needs a Bedrock guardrail with a contextual grounding policy: set grounding.guardrail, or the deployment's GroundingGuardrail".into(),
            })),
        }
    }

    /// Retrieves the request's passages and puts them in its request. `None`: the request
    /// does not retrieve, or (a cache lookup) its results are not cached. An uncached
    /// retrieval's ledger line and cache write run in a task of their own, beside the model
    /// call: the request waits for it before it answers ([`Pending`]).
    pub(crate) async fn retrieve(
        self: &Arc<Self>,
        caller: &Caller,
        prepared: &mut Prepared,
        mode: Mode,
        request_id: &str,
        deadline: Instant,
    ) -> Result<(Option<RetrievalOutcome>, Pending), Error> {
        let Some(plan) = prepared.retrieval.clone() else {
            return Ok((None, None));
        };
        let mut pending = None;
        // Refused before anything is spent (a lookup answers from the cache only: it never
        // checks an answer).
        if mode != Mode::Peek {
            self.grounding_guardrail(&plan)?;
        }
        let kb = spec::short_id(&plan.query.knowledge_base_id).to_owned();
        let key = plan.cache_key(&caller.tenant);
        // `cache_ttl_seconds: 0` turns the cache off, both ways.
        let cacheable = plan.spec.cache_ttl_seconds > 0;
        let read = async {
            if cacheable {
                self.retrieval.cache.get(&key).await
            } else {
                Ok(None)
            }
        };
        let hit = match read.await {
            Ok(hit) => hit,
            Err(e) => {
                tracing::warn!(error = %e, "retrieval cache read failed; retrieving");
                telemetry::count("RetrievalCacheErrors", 1, dims(caller, prepared, &kb));
                None
            }
        };
        telemetry::count(
            if hit.is_some() {
                "RetrievalCacheHits"
            } else {
                "RetrievalCacheMisses"
            },
            1,
            dims(caller, prepared, &kb),
        );
        let (passages, cached) = match hit {
            Some(p) => (p, true),
            None if mode == Mode::Peek => return Ok((None, None)),
            None => match self
                .call_retrieve(caller, prepared, &plan, &kb, deadline)
                .await
            {
                Ok(p) => {
                    let shared = self.clone();
                    let (caller, feature) = (caller.clone(), prepared.feature().map(str::to_owned));
                    let (id, plan, key, stored) =
                        (request_id.to_owned(), plan.clone(), key.clone(), p.clone());
                    pending = Some(tokio::spawn(async move {
                        // The charge and the cache write are independent: one round trip.
                        let ttl = Duration::from_secs(plan.spec.cache_ttl_seconds);
                        let store = async {
                            if !ttl.is_zero()
                                && let Err(e) = shared.retrieval.cache.put(&key, &stored, ttl).await
                            {
                                tracing::warn!(error = %e, "retrieval cache write failed");
                            }
                        };
                        let charge = shared.charge_retrieval(
                            &caller,
                            feature.as_deref(),
                            &id,
                            &plan,
                            stored.len(),
                        );
                        tokio::join!(charge, store);
                    }));
                    (p, false)
                }
                Err(e) if plan.spec.on_failure == OnFailure::Degraded => {
                    tracing::warn!(error = %e, knowledge_base = %kb, "retrieval failed; answering without context (degraded)");
                    return Ok((
                        Some(RetrievalOutcome {
                            knowledge_base_id: kb,
                            sources: Vec::new(),
                            cached: false,
                            degraded: Some(e.to_string()),
                            context: None,
                            below_min_score: 0,
                        }),
                        None,
                    ));
                }
                Err(e) => return Err(e),
            },
        };
        let (sources, below_min_score) = context::select(passages, plan.spec.min_score);
        let mode = context::mode_for(&prepared.route.chain, &prepared.request, sources.len());
        context::insert(&mut prepared.request, &sources, mode);
        let outcome = RetrievalOutcome {
            knowledge_base_id: kb,
            context: (!sources.is_empty()).then_some(mode),
            sources,
            cached,
            degraded: None,
            below_min_score,
        };
        match crate::needs::fit(&mut prepared.route, &prepared.request) {
            Ok(()) => Ok((Some(outcome), pending)),
            Err(e) => {
                settle(pending).await;
                Err(e)
            }
        }
    }

    async fn call_retrieve(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        plan: &RetrievalPlan,
        kb: &str,
        deadline: Instant,
    ) -> Result<Vec<Passage>, Error> {
        let started = Instant::now();
        let timeout = deadline
            .saturating_duration_since(started)
            .min(MAX_RETRIEVAL_TIME);
        if timeout.is_zero() {
            return Err(Error::Dependency(crate::ports::StoreError::unavailable(
                crate::ports::Dependency::KnowledgeBases,
                "retrieval",
                "no time left for retrieval",
            )));
        }
        // The span says which Knowledge Base and how many passages, never the query.
        let span = crate::trace::retrieval(kb);
        let result = self
            .retrieval
            .retriever
            .retrieve(&plan.query, timeout)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(passages) => {
                span.record("quarry.retrieval.results", passages.len() as i64);
            }
            Err(e) => crate::trace::failed(&span, crate::trace::store_error(e)),
        }
        let d = dims(caller, prepared, kb);
        telemetry::millis("RetrievalLatency", started.elapsed().as_millis() as u64, d);
        result.map_err(|e| {
            telemetry::count("RetrievalFailures", 1, d);
            tracing::warn!(error = %e, knowledge_base = %kb, "retrieval failed");
            Error::Dependency(e)
        })
    }

    /// The retrieval's own ledger lines: the query's embedding (estimated tokens, at the
    /// Knowledge Base's embedding model's price) and, with reranking, one rerank query per
    /// 100 passages (the rerank model's price per unit).
    async fn charge_retrieval(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        request_id: &str,
        plan: &RetrievalPlan,
        passages: usize,
    ) {
        let mut lines = vec![(
            format!("{request_id}#retrieval"),
            plan.embedding_model.clone(),
            u64::from(estimate_tokens(&plan.query.text)),
        )];
        if let Some(r) = &plan.query.rerank {
            let model = r
                .model
                .rsplit_once('/')
                .map_or(r.model.as_str(), |(_, m)| m);
            lines.push((
                format!("{request_id}#rerank"),
                model.to_owned(),
                passages.div_ceil(100).max(1) as u64,
            ));
        }
        for (id, model, units) in lines {
            let usage = TokenUsage {
                input: units,
                ..TokenUsage::default()
            };
            let cost = self
                .price(
                    &model,
                    &usage,
                    super::charge::Rate::Tier(None, Default::default()),
                )
                .await;
            let record = UsageRecord {
                id,
                tenant: caller.tenant.clone(),
                model: model.clone(),
                feature: feature.map(str::to_owned),
                usage,
                cost,
                cached: false,
                estimated: true,
                service_tier: None,
                key: caller.key_label.clone(),
                bulk: false,
                region: None,
                provisioned: None,
                prompt: None,
                at_ms: SystemClock.now_ms(),
            };
            self.write(&record).await;
            let d = Dims {
                tenant: &caller.tenant,
                model: &model,
                feature: feature.unwrap_or("-"),
            };
            if let Some(c) = cost {
                telemetry::count("CostMicroUSD", c.0, d);
            }
        }
    }

    /// Scores the answer against the passages it was given, when the prompt asks. A failed
    /// check refuses under `block` (fails closed) and is reported under `flag`.
    pub(crate) async fn ground(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        retrieval: Option<&RetrievalOutcome>,
        answer: &str,
    ) -> Result<Option<GroundingResult>, Error> {
        let (Some(plan), Some(outcome)) = (&prepared.retrieval, retrieval) else {
            return Ok(None);
        };
        let Some(spec) = &plan.grounding else {
            return Ok(None);
        };
        // Answered without context on purpose: there is nothing to be grounded in.
        if outcome.degraded.is_some() {
            return Ok(None);
        }
        let Some(guardrail) = self.grounding_guardrail(plan)? else {
            return Ok(None);
        };
        let d = dims(caller, prepared, &outcome.knowledge_base_id);
        let source = outcome
            .sources
            .iter()
            .map(|s| s.excerpt.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let source = grounding::clip(&source, grounding::MAX_SOURCE_CHARS);
        let query = grounding::clip(&plan.query.text, grounding::MAX_QUERY_CHARS);
        let parts = grounding::parts(answer, MAX_ANSWER_CHARS);
        let unchecked: u64 = parts
            .iter()
            .skip(MAX_PARTS)
            .map(|p| p.chars().count() as u64)
            .sum();
        let mut scores = Vec::new();
        // With no passage or no answer there is nothing to score: the verdict is a fail.
        if !source.trim().is_empty() {
            for part in parts.iter().take(MAX_PARTS) {
                match self
                    .retrieval
                    .grounding
                    .score(&guardrail, source, query, part)
                    .await
                {
                    Ok(s) => scores.push(s),
                    Err(e) => {
                        telemetry::count("GroundingCheckErrors", 1, d);
                        tracing::error!(error = %e, guardrail = %guardrail.id, "grounding check failed");
                        if spec.action == GroundingAction::Block {
                            return Err(Error::Dependency(e));
                        }
                        return Ok(None);
                    }
                }
            }
        }
        let verdict = grounding::verdict(spec, &scores, unchecked);
        telemetry::score("GroundingScore", verdict.score, d);
        telemetry::score("RelevanceScore", verdict.relevance_score, d);
        if !verdict.passed {
            telemetry::count("UngroundedAnswers", 1, d);
        }
        tracing::info!(
            tenant = %caller.tenant,
            grounding_score = verdict.score,
            relevance_score = verdict.relevance_score,
            threshold = verdict.threshold,
            passed = verdict.passed,
            "grounding checked"
        );
        if !verdict.passed && spec.action == GroundingAction::Block {
            return Err(Error::Ungrounded(format!(
                "the answer is not grounded in the retrieved sources: grounding {:.2} (threshold {:.2}), relevance {:.2}{}",
                verdict.score,
                verdict.threshold,
                verdict.relevance_score,
                verdict
                    .relevance_threshold
                    .map(|t| format!(" (threshold {t:.2})"))
                    .unwrap_or_default()
            )));
        }
        Ok(Some(verdict))
    }
}
