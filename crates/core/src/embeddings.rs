//! Embeddings: texts in, vectors out, through Bedrock's embedding models (Titan Text
//! Embeddings v2, Cohere Embed), governed as chat is: the tenant's policy and guardrails on
//! the input, budgets and rate limits, every model call priced and written to the ledger.
//!
//! Each text's vector is cached per tenant, keyed by model, dimensions, normalisation, input
//! type and the text: a repeated text costs no call, and a batch with some cached texts calls
//! the model for the others only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::Configs;
use crate::error::Error;
use crate::guardrails::{GuardrailConfig, PiiAction, check};
use crate::invoke::{Attempt, AttemptOutcome, FailureKind, InvokeFailure, RetryPolicy};
use crate::model::{ModelError, ModelErrorKind, TokenUsage};
use crate::ports::{
    AdmissionControl, Clock, EmbeddingCache, ModelClient, SystemClock, UsageLedger,
};
use crate::pricing::{MicroUsd, Priced};
use crate::routing::{ModelTarget, RouteSpec};
use crate::tenancy::Caller;
use crate::usage::UsageRecord;

/// Most texts in one request.
pub const MAX_TEXTS: usize = 2_048;
/// Longest text, in characters (Titan v2's limit; Cohere's is lower and Bedrock says so).
pub const MAX_TEXT_CHARS: usize = 50_000;
/// The tier an embedding request without a model uses.
pub const DEFAULT_TIER: &str = "embed";

/// What one model call embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    pub dimensions: Option<u32>,
    pub normalize: bool,
    /// Cohere's `input_type` (`search_document`, `search_query`, ...).
    pub input_type: Option<String>,
    /// The region to call (`None`: the deployment's); set per target, never in a cache key.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbedResponse {
    pub vectors: Vec<Vec<f32>>,
    pub input_tokens: u64,
}

/// An embedding request, whatever API it came through.
#[derive(Debug, Clone, Default)]
pub struct EmbedInput {
    pub texts: Vec<String>,
    pub route: Option<RouteSpec>,
    pub dimensions: Option<u32>,
    /// Unit-length vectors (the default).
    pub normalize: Option<bool>,
    pub input_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The answer: one vector per text, in order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// The model that embedded (as invoked).
    pub model: String,
    /// Input tokens charged (texts served from the cache cost none).
    pub input_tokens: u64,
    /// `None` when the model has no price.
    pub cost: Option<MicroUsd>,
    /// Texts served from the cache.
    pub cached: usize,
    pub model_calls: u32,
}

/// The ports embeddings run on.
pub struct EmbeddingPorts {
    pub configs: Arc<Configs>,
    pub client: Arc<dyn ModelClient>,
    pub cache: Arc<dyn EmbeddingCache>,
    pub admission: Arc<dyn AdmissionControl>,
    pub ledger: Arc<dyn UsageLedger>,
}

pub struct EmbeddingService {
    ports: EmbeddingPorts,
    retry: RetryPolicy,
    ttl: Duration,
}

/// The cache key of one text.
fn cache_key(tenant: &str, target: &ModelTarget, request: &EmbedRequest, text: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        tenant,
        &target.base_id,
        &request
            .dimensions
            .map(|d| d.to_string())
            .unwrap_or_default(),
        if request.normalize { "n" } else { "-" },
        request.input_type.as_deref().unwrap_or_default(),
        text,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("emb#{}", hex::encode(h.finalize()))
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::bad_request(field, message)
}

impl EmbeddingService {
    pub fn new(ports: EmbeddingPorts, retry: RetryPolicy, ttl: Duration) -> Self {
        Self { ports, retry, ttl }
    }

    /// The input checked and guarded: the texts as they will be embedded.
    fn checked_texts(input: &EmbedInput, guard: &GuardrailConfig) -> Result<Vec<String>, Error> {
        if input.texts.is_empty() || input.texts.len() > MAX_TEXTS {
            return Err(bad(
                "input",
                format!("give 1 to {MAX_TEXTS} texts to embed"),
            ));
        }
        let mut out = Vec::with_capacity(input.texts.len());
        for (i, text) in input.texts.iter().enumerate() {
            if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return Err(bad(
                    &format!("input[{i}]"),
                    format!("a text to embed has 1 to {MAX_TEXT_CHARS} characters"),
                ));
            }
            if !guard.is_active() {
                out.push(text.clone());
                continue;
            }
            let (masked, found) = check(guard, text, true);
            if !found.blocked.is_empty() {
                return Err(Error::GuardrailBlocked(format!(
                    "input[{i}] was blocked by a guardrail: {}",
                    found.blocked.join(", ")
                )));
            }
            out.push(if guard.pii == PiiAction::Redact {
                masked
            } else {
                text.clone()
            });
        }
        Ok(out)
    }

    /// Embeds the input: cached texts from the cache, the others through the chain.
    pub async fn embed(
        &self,
        caller: &Caller,
        request_id: &str,
        input: EmbedInput,
        deadline: Instant,
    ) -> Result<Embeddings, Error> {
        crate::chat::check_tags(&input.tags)?;
        let routing = self.ports.configs.routing().await?;
        let spec = input
            .route
            .clone()
            .unwrap_or_else(|| RouteSpec::Tier(DEFAULT_TIER.to_owned()));
        let mut route = routing.route(Some(&spec))?;
        if !caller.policy.allows(&route) {
            return Err(Error::Forbidden(format!(
                "tenant '{}' may not use this model or tier",
                caller.tenant
            )));
        }
        caller
            .policy
            .apply(&mut route, routing.home_region.as_deref(), &caller.tenant)?;
        let dimensions = input.dimensions;
        route.chain.retain(|t| {
            t.capabilities
                .embedding
                .as_ref()
                .is_some_and(|e| dimensions.is_none_or(|d| e.dimensions.contains(&d)))
        });
        let Some(first) = route.chain.first().cloned() else {
            return Err(bad(
                "model",
                match dimensions {
                    Some(d) => format!("no embedding model here gives {d} dimensions"),
                    None => "not an embedding model: name one (or the 'embed' tier)".into(),
                },
            ));
        };
        let guard = caller.policy.guardrails.clone().unwrap_or_default();
        let texts = Self::checked_texts(&input, &guard)?;
        let feature = input.tags.get("feature").cloned();
        self.ports
            .admission
            .admit(caller, feature.as_deref(), &route)
            .await?;

        let request = EmbedRequest {
            texts: Vec::new(),
            dimensions,
            normalize: input.normalize.unwrap_or(true),
            input_type: input.input_type.clone(),
            region: None,
        };
        let keys: Vec<String> = texts
            .iter()
            .map(|t| cache_key(&caller.tenant, &first, &request, t))
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = match self.ports.cache.get_many(&keys).await {
            Ok(v) if v.len() == keys.len() => v,
            Ok(_) => vec![None; keys.len()],
            Err(e) => {
                tracing::warn!(error = %e, "embedding cache unavailable; embedding every text");
                vec![None; keys.len()]
            }
        };
        let cached = vectors.iter().filter(|v| v.is_some()).count();
        let missing: Vec<usize> = (0..texts.len()).filter(|i| vectors[*i].is_none()).collect();

        let mut out = Embeddings {
            vectors: Vec::new(),
            model: first.invoke_id.clone(),
            input_tokens: 0,
            cost: Some(MicroUsd::ZERO),
            cached,
            model_calls: 0,
        };
        let batch = first
            .capabilities
            .embedding
            .as_ref()
            .map_or(1, |e| e.max_batch.max(1) as usize);
        let mut fresh = Vec::new();
        for (n, chunk) in missing.chunks(batch).enumerate() {
            let call = EmbedRequest {
                texts: chunk.iter().map(|i| texts[*i].clone()).collect(),
                ..request.clone()
            };
            let (target, response) = self.call(&route.chain, &call, deadline).await?;
            if response.vectors.len() != chunk.len() {
                return Err(Error::InvalidOutput(format!(
                    "{} returned {} vectors for {} texts",
                    target.invoke_id,
                    response.vectors.len(),
                    chunk.len()
                )));
            }
            out.model_calls += 1;
            out.model = target.invoke_id.clone();
            out.input_tokens += response.input_tokens;
            let id = if n == 0 {
                request_id.to_owned()
            } else {
                format!("{request_id}#{n}")
            };
            let cost = self
                .charge(caller, feature.clone(), id, &target, response.input_tokens)
                .await;
            out.cost = out.cost.zip(cost).map(|(a, b)| a + b);
            for (i, v) in chunk.iter().zip(response.vectors) {
                // Only the first model's vectors are cached under its keys.
                if target.base_id == first.base_id {
                    fresh.push((keys[*i].clone(), v.clone()));
                }
                vectors[*i] = Some(v);
            }
        }
        if !fresh.is_empty()
            && let Err(e) = self.ports.cache.put_many(&fresh, self.ttl).await
        {
            tracing::warn!(error = %e, "embeddings not cached");
        }
        out.vectors = vectors.into_iter().map(Option::unwrap_or_default).collect();
        Ok(out)
    }

    /// One call along the chain: retryable failures retried with backoff, then the next
    /// model; a refusal that is not one model's limit stops.
    async fn call(
        &self,
        chain: &[ModelTarget],
        request: &EmbedRequest,
        deadline: Instant,
    ) -> Result<(ModelTarget, EmbedResponse), Error> {
        let started = Instant::now();
        let mut attempts = Vec::new();
        let mut last: Option<ModelError> = None;
        let failure = |kind, attempts, last_error| {
            Error::Invoke(InvokeFailure {
                kind,
                attempts,
                last_error,
                budget: deadline.saturating_duration_since(started),
            })
        };
        for target in chain {
            for attempt in 0..self.retry.max_attempts_per_model.max(1) {
                let now = Instant::now();
                let left = deadline.saturating_duration_since(now);
                if left < self.retry.min_attempt_time {
                    return Err(failure(FailureKind::DeadlineExceeded, attempts, last));
                }
                let placed = EmbedRequest {
                    region: target.region.clone(),
                    ..request.clone()
                };
                let result = self
                    .ports
                    .client
                    .embed(&target.invoke_id, &placed, left)
                    .await;
                let elapsed_ms = now.elapsed().as_millis() as u64;
                let e = match result {
                    Ok(r) => return Ok((target.clone(), r)),
                    Err(e) => e,
                };
                attempts.push(Attempt {
                    model: target.invoke_id.clone(),
                    region: target.region.clone(),
                    outcome: AttemptOutcome::Failed {
                        error: e.kind,
                        message: e.message.clone(),
                    },
                    elapsed_ms,
                });
                let rejected = e.kind == ModelErrorKind::Validation && !e.is_model_limit();
                let retry = !rejected
                    && e.kind.is_retryable()
                    && attempt + 1 < self.retry.max_attempts_per_model;
                last = Some(e);
                if rejected {
                    return Err(failure(FailureKind::Rejected, attempts, last));
                }
                if !retry {
                    break;
                }
                tokio::time::sleep(self.retry.backoff(attempt)).await;
            }
        }
        Err(failure(FailureKind::Exhausted, attempts, last))
    }

    /// Prices a call and writes its usage record; its cost (`None`: unpriced).
    async fn charge(
        &self,
        caller: &Caller,
        feature: Option<String>,
        id: String,
        target: &ModelTarget,
        input_tokens: u64,
    ) -> Option<MicroUsd> {
        let usage = TokenUsage {
            input: input_tokens,
            ..TokenUsage::default()
        };
        let cost = match self.ports.configs.pricing().await {
            Ok(p) => match p.cost(&target.base_id, &usage) {
                Priced::Cost(c) => Some(c),
                Priced::Unpriced => {
                    tracing::warn!(model = %target.base_id, "UNPRICED MODEL: embedding cost not recorded as zero");
                    metrics::counter!("UnpricedCalls").increment(1);
                    None
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "pricing unavailable: embedding cost not computed");
                None
            }
        };
        let record = UsageRecord {
            id,
            tenant: caller.tenant.clone(),
            model: target.base_id.clone(),
            feature,
            usage,
            cost,
            cached: false,
            estimated: false,
            service_tier: None,
            key: caller.key_label.clone(),
            bulk: false,
            region: None,
            provisioned: None,
            prompt: None,
            at_ms: SystemClock.now_ms(),
        };
        if let Err(e) = self.ports.ledger.record(&record).await {
            metrics::counter!("UsageNotRecorded").increment(1);
            tracing::error!(error = %e, record = ?record, "USAGE NOT RECORDED: ledger and spill both failed");
        }
        // The dashboard's token and spend figures include embeddings.
        let dims = crate::telemetry::Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: record.feature.as_deref().unwrap_or("-"),
        };
        crate::telemetry::count("InputTokens", input_tokens, dims);
        if let Some(c) = cost {
            crate::telemetry::count("CostMicroUSD", c.0, dims);
        }
        self.ports.admission.used(caller, input_tokens).await;
        cost
    }
}

/// No embedding cache: every text is embedded (benchmarks, unit tests).
pub struct NoEmbeddingCache;

#[async_trait::async_trait]
impl EmbeddingCache for NoEmbeddingCache {
    async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<f32>>>, crate::ports::StoreError> {
        Ok(vec![None; keys.len()])
    }

    async fn put_many(
        &self,
        _: &[(String, Vec<f32>)],
        _: Duration,
    ) -> Result<(), crate::ports::StoreError> {
        Ok(())
    }
}
