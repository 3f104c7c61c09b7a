//! The response cache and idempotency ports.
//!
//! A cache key is the SHA-256 of everything that decides the answer, built by destructuring
//! the prepared request: a field added to the request does not compile here until someone
//! decides whether it belongs in the key. The tenant is hashed in first, so one tenant's key
//! can never be another's.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::{Prepared, PromptUsed};
use crate::guardrails::GuardrailConfig;
use crate::model::{InferenceParams, ModelRequest, ModelResponse};
use crate::routing::Route;

/// Bumped when the meaning of cached entries changes, so old entries stop matching.
const KEY_VERSION: &str = "quarry-cache-v2";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    /// Hex SHA-256 (tenant included).
    pub hash: String,
    pub tenant: String,
    /// The prompt name, or `-` without one (for purging by prompt).
    pub prompt: String,
}

fn feed(hasher: &mut Sha256, label: &str, value: &impl Serialize) {
    hasher.update(label.as_bytes());
    hasher.update([0]);
    // serde_json of plain data cannot fail; an empty value still separates fields.
    hasher.update(serde_json::to_vec(value).unwrap_or_default());
    hasher.update([0]);
}

impl CacheKey {
    /// `guard` is the guardrail policy in force (the tenant's and the prompt's combined):
    /// answers are stored after it ran, so a different policy must not be served them.
    pub fn new(tenant: &str, prepared: &Prepared, guard: &GuardrailConfig) -> Self {
        let Prepared {
            request,
            route,
            // The chain below is what the routing decided; the snapshot itself is not.
            routing: _,
            prompt,
            output_schema,
            // In `guard`, with the tenant's.
            guardrails: _,
            prompt_cacheable: _,
            cache_ttl_seconds: _,
            // System text is hashed whole below, whoever wrote it.
            prompt_system_blocks: _,
            variable_texts: _,
            tags: _,
            // The passages are in the messages; the query and grounding check below.
            retrieval,
            // Recording an answer does not change it.
            audit: _,
            // Rendered into the messages, hashed below.
            variables: _,
        } = prepared;
        let ModelRequest {
            system,
            messages,
            params,
            tools,
            tool_choice,
            // Set from `guard` for whole answers only: `guard` keys both.
            guardrail: _,
            // Tags for Bedrock's logs: not part of the answer.
            metadata: _,
            reasoning,
            // The same answer, served faster or cheaper.
            service_tier: _,
            latency_optimized: _,
            single_tool_call,
            anthropic_beta,
            // Derived per model from the fields above.
            additional_fields: _,
            // Where it is served, not what it says.
            region: _,
        } = request;
        let InferenceParams {
            max_tokens,
            temperature,
            top_p,
            stop,
            top_k,
        } = params;
        let Route { tier, chain } = route;
        let mut h = Sha256::new();
        feed(&mut h, "version", &KEY_VERSION);
        feed(&mut h, "tenant", &tenant);
        // The chain, not the tier name: a re-routed tier must not serve the old models' answers.
        let _ = tier;
        feed(
            &mut h,
            "chain",
            &chain
                .iter()
                .map(|t| t.invoke_id.as_str())
                .collect::<Vec<_>>(),
        );
        feed(&mut h, "system", system);
        feed(&mut h, "messages", messages);
        feed(&mut h, "max_tokens", max_tokens);
        feed(&mut h, "temperature", &temperature.map(f32::to_bits));
        feed(&mut h, "top_p", &top_p.map(f32::to_bits));
        feed(&mut h, "stop", stop);
        feed(&mut h, "top_k", top_k);
        feed(&mut h, "anthropic_beta", anthropic_beta);
        feed(&mut h, "tools", tools);
        feed(&mut h, "tool_choice", tool_choice);
        feed(&mut h, "reasoning", reasoning);
        feed(&mut h, "single_tool_call", single_tool_call);
        feed(&mut h, "output_schema", output_schema);
        feed(
            &mut h,
            "retrieval",
            &retrieval.as_ref().map(|r| (&r.query, &r.grounding)),
        );
        // A stricter guardrail must not serve answers cached under a laxer one.
        feed(&mut h, "guardrails", guard);
        let prompt_id = prompt.as_ref().map(
            |PromptUsed {
                 name,
                 version,
                 label: _,
             }| (name, version),
        );
        feed(&mut h, "prompt", &prompt_id);
        Self {
            hash: hex::encode(h.finalize()),
            tenant: tenant.to_owned(),
            prompt: prompt
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| "-".into()),
        }
    }
}

/// What the cache keeps of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub response: ModelResponse,
    /// The model that answered.
    pub model: String,
    pub prompt: Option<(String, u64)>,
    /// Parsed structured output, when a schema applied.
    pub json: Option<serde_json::Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// The grounding check's verdict on this answer, when its prompt asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding: Option<crate::retrieval::GroundingResult>,
}

use crate::ports::ResponseCache;
use crate::ports::StoreError;

/// A disabled cache: never hits, stores nothing.
pub struct NoCache;

#[async_trait]
impl ResponseCache for NoCache {
    async fn get(&self, _: &CacheKey) -> Result<Option<CachedAnswer>, StoreError> {
        Ok(None)
    }
    async fn put(&self, _: &CacheKey, _: &CachedAnswer, _: Duration) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First use: go ahead, then complete or abandon.
    Fresh,
    /// Done before with the same body: this is the stored response (status, body).
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;
    use crate::routing::{ModelTarget, RoutingConfig};
    use std::sync::Arc;

    fn prepared(text: &str) -> Prepared {
        Prepared {
            request: ModelRequest {
                messages: vec![Message::user(text)],
                ..Default::default()
            },
            route: Route {
                tier: Some("fast".into()),
                chain: vec![ModelTarget::new("m", "m", Default::default())],
            },
            routing: Arc::new(RoutingConfig {
                default_tier: "fast".into(),
                tiers: Default::default(),
                models: Default::default(),
                application_inference_profiles: Default::default(),
                inference_profile_prefixes: vec![],
                tier_max_tokens: Default::default(),
                tier_service_tiers: Default::default(),
                model_aliases: Default::default(),
                knowledge_bases: Default::default(),
                bulk: Default::default(),
                tier_regions: Default::default(),
                home_region: None,
                provisioned: Default::default(),
            }),
            prompt: None,
            output_schema: None,
            guardrails: None,
            prompt_system_blocks: 0,
            variable_texts: Vec::new(),
            prompt_cacheable: false,

            cache_ttl_seconds: 0,
            tags: Default::default(),
            retrieval: None,
            audit: None,
            variables: Default::default(),
        }
    }

    #[test]
    fn keys_are_scoped_to_the_tenant_the_request_and_the_policy() {
        let none = GuardrailConfig::default();
        let key = |tenant: &str, p: &Prepared| CacheKey::new(tenant, p, &none);
        let a = key("acme", &prepared("hi"));
        assert_eq!(a, key("acme", &prepared("hi")));
        assert_ne!(a.hash, key("globex", &prepared("hi")).hash);
        assert_ne!(a.hash, key("acme", &prepared("hello")).hash);
        let mut p = prepared("hi");
        p.request.params.temperature = Some(0.5);
        assert_ne!(a.hash, key("acme", &p).hash);
        // Tags are not part of the answer.
        let mut p = prepared("hi");
        p.tags.insert("feature".into(), "x".into());
        assert_eq!(a.hash, key("acme", &p).hash);
        // A tenant that turns redaction on is not served answers stored before.
        let strict = GuardrailConfig {
            pii: crate::guardrails::PiiAction::Redact,
            ..Default::default()
        };
        assert_ne!(a.hash, CacheKey::new("acme", &prepared("hi"), &strict).hash);
    }
}
