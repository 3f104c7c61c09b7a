//! Routing: named tiers map to ordered model chains; a caller may also name a model ID, a
//! cross-region inference profile (`us.`, `eu.`, `apac.`, `global.`, ...) or an application
//! inference-profile ARN. Every target maps to a base model, whose capabilities and price
//! Quarry knows.
//!
//! Stored in SSM at `/quarry/{stage}/routing` (source: `infra/routing.yaml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ServiceTier;

/// What a base model can do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCapabilities {
    pub context_window: u32,
    pub max_output_tokens: u32,
    #[serde(default = "yes")]
    pub tool_use: bool,
    #[serde(default = "yes")]
    pub streaming: bool,
    #[serde(default)]
    pub prompt_caching: bool,
    /// Fewest tokens a prompt-cache checkpoint must cover.
    #[serde(default = "default_cache_min")]
    pub cache_min_tokens: u32,
    /// Prompt-cache checkpoints may live an hour (`ttl: 1h`), not only five minutes.
    #[serde(default)]
    pub cache_ttl_1h: bool,
    /// `toolChoice` `any` and `tool` (forcing a tool call) are accepted.
    #[serde(default = "yes")]
    pub forced_tool_choice: bool,
    /// Image content blocks.
    #[serde(default)]
    pub vision: bool,
    /// Document content blocks.
    #[serde(default)]
    pub documents: bool,
    /// Citations of documents.
    #[serde(default)]
    pub citations: bool,
    /// How the model is asked to reason, if it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningStyle>,
    /// Service tiers besides `default` (`flex`, `priority`, `reserved`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_tiers: Vec<ServiceTier>,
    /// `performanceConfig.latency: optimized`.
    #[serde(default)]
    pub latency_optimized: bool,
    /// Bedrock batch inference (CreateModelInvocationJob) runs it: bulk jobs may use it.
    #[serde(default)]
    pub batch_inference: bool,
    /// `strict` on a tool's specification.
    #[serde(default)]
    pub strict_tools: bool,
    /// Parallel tool calls can be turned off (Claude's `disable_parallel_tool_use`).
    #[serde(default)]
    pub parallel_tool_control: bool,
    /// `top_k` sampling (Claude's `top_k`, Nova's `inferenceConfig.topK`).
    #[serde(default)]
    pub top_k: bool,
    /// An embedding model (served through `/v1/embeddings`, never chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingCapabilities>,
}

/// What an embedding model takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingCapabilities {
    /// Output sizes it offers (`dimensions`).
    pub dimensions: Vec<u32>,
    /// Most texts one call embeds.
    pub max_batch: u32,
}

/// How a reasoning model is configured through `additionalModelRequestFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// Claude: `thinking: {type: enabled, budget_tokens}`; no temperature or top_p, no
    /// forced tool choice, `max_tokens` above the budget.
    AnthropicThinking,
    /// Amazon Nova 2: `reasoningConfig: {type: enabled, maxReasoningEffort}`.
    NovaEffort,
    /// OpenAI gpt-oss: `reasoning_effort`.
    OpenaiEffort,
    /// Always reasons (DeepSeek-R1): nothing to send.
    Builtin,
}

impl ModelCapabilities {
    pub fn serves_tier(&self, tier: ServiceTier) -> bool {
        tier == ServiceTier::Default || self.service_tiers.contains(&tier)
    }
}

impl Default for ModelCapabilities {
    /// A model known only by name: text in, text out, tools, no prompt caching.
    fn default() -> Self {
        Self {
            context_window: 0,
            max_output_tokens: 0,
            tool_use: true,
            streaming: true,
            prompt_caching: false,
            cache_min_tokens: default_cache_min(),
            cache_ttl_1h: false,
            forced_tool_choice: true,
            vision: false,
            documents: false,
            citations: false,
            reasoning: None,
            service_tiers: Vec::new(),
            latency_optimized: false,
            batch_inference: false,
            strict_tools: false,
            parallel_tool_control: false,
            top_k: false,
            embedding: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_cache_min() -> u32 {
    1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// The tier used when a request names neither tier nor model.
    pub default_tier: String,
    /// Tier name -> ordered chain of model targets: IDs, profile IDs or ARNs, each alone or
    /// with the region to call it in (`{model, region}`).
    pub tiers: BTreeMap<String, Vec<ChainEntry>>,
    /// Regions to try each model of a tier in, in order (`fast: [us-east-1, us-west-2]`):
    /// a model named without a region is tried in each before the next model. Cross-region
    /// profiles (`us.`, `eu.`, `global.`) and ARNs are called as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_regions: BTreeMap<String, Vec<String>>,
    /// The region a model named without one is served in (the deployment's): what residency
    /// rules check it against. Without it, such a model is allowed only to tenants without a
    /// residency rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
    /// Base model ID -> capabilities. A target whose base model is not here is refused.
    pub models: BTreeMap<String, ModelCapabilities>,
    /// Application inference-profile (or prompt-router) ARN -> base model ID: the
    /// capabilities it is checked against. A router's trace names the model charged.
    #[serde(default)]
    pub application_inference_profiles: BTreeMap<String, String>,
    /// Region prefixes of cross-region inference-profile IDs.
    #[serde(default = "default_prefixes")]
    pub inference_profile_prefixes: Vec<String>,
    /// Most output tokens a request routed through a tier may ask for, by tier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_max_tokens: BTreeMap<String, u32>,
    /// The service tier calls routed through a tier use by default, by tier (applied to
    /// the models of the chain that serve it; a request or prompt naming a tier overrides).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_service_tiers: BTreeMap<String, ServiceTier>,
    /// Other names for a tier or a model: Anthropic's model names (what Claude Code and the
    /// Anthropic SDKs send) -> a Bedrock model, inference profile or tier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_aliases: BTreeMap<String, String>,
    /// The Knowledge Bases prompts may retrieve from, by ID: each one's embedding model and,
    /// for one tenants share, the metadata attribute that holds each document's tenant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub knowledge_bases: BTreeMap<String, crate::retrieval::KnowledgeBaseEntry>,
    /// When batch jobs run on Bedrock batch inference, and how those bulk jobs are tracked.
    #[serde(default)]
    pub bulk: crate::bulk::BulkPolicy,
    /// Provisioned Throughput bought, by provisioned model ARN: the base model it serves, its
    /// hourly commitment and its capacity. A chain naming one tries it before on-demand
    /// models and overflows to them when it throttles; its calls are recorded with their
    /// tokens and no per-token price.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioned: BTreeMap<String, Provisioned>,
}

const REGION_PREFIXES: [&str; 8] = ["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"];

fn default_prefixes() -> Vec<String> {
    REGION_PREFIXES.iter().map(|s| (*s).to_owned()).collect()
}

/// A Provisioned Throughput purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provisioned {
    /// The base model it serves (in `models`).
    pub base_model: String,
    /// Its hourly commitment, USD as a decimal string (`"39.60"`).
    pub hourly_usd: crate::budget::Usd,
    /// Input and output tokens per minute its model units serve: what its utilisation is
    /// measured against.
    pub tokens_per_minute: u64,
}

/// A provisioned model ARN (`arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID`).
pub fn is_provisioned(invoke_id: &str) -> bool {
    invoke_id.starts_with("arn:") && invoke_id.contains(":provisioned-model/")
}

/// A cross-region inference profile's region prefix (`us` of `us.anthropic...`).
pub fn is_region_prefix(prefix: &str) -> bool {
    REGION_PREFIXES.contains(&prefix)
}

/// One model to call: the identifier sent to Bedrock, the base model behind it, and what
/// that model can do (so no step after routing reads the routing configuration again).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelTarget {
    pub invoke_id: String,
    pub base_id: String,
    #[serde(default)]
    pub capabilities: ModelCapabilities,
    /// The region to call it in; `None`: the deployment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl ModelTarget {
    pub fn new(invoke_id: &str, base_id: &str, capabilities: ModelCapabilities) -> Self {
        Self {
            invoke_id: invoke_id.to_owned(),
            base_id: base_id.to_owned(),
            capabilities,
            region: None,
        }
    }

    /// The same model called in `region`.
    pub fn in_region(mut self, region: Option<&str>) -> Self {
        self.region = region.map(str::to_owned);
        self
    }

    /// What one circuit breaker watches: a model in a region (one region's throttling opens
    /// its breaker only, and the next region is tried before the next model).
    pub fn key(&self) -> String {
        match &self.region {
            Some(r) => format!("{}@{r}", self.invoke_id),
            None => self.invoke_id.clone(),
        }
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteSpec {
    Tier(String),
    Model(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("unknown tier '{0}'; known tiers: {1}")]
    UnknownTier(String, String),
    #[error(
        "unknown model '{0}': name a tier, or a model ID / inference profile / application inference profile ARN listed in the routing configuration"
    )]
    UnknownModel(String),
    #[error(
        "'{0}' is not a Bedrock model identifier: a model or inference profile ID (letters, digits, '.', ':', '-', up to 256 characters) or a Bedrock ARN (arn:aws:bedrock:REGION:ACCOUNT:TYPE/ID, up to 2048)"
    )]
    InvalidModelId(String),
    #[error("routing configuration is invalid: {0}")]
    Invalid(String),
    /// No model of the route may serve the tenant where its residency rule allows.
    #[error("{0}")]
    Residency(String),
}

impl Route {
    /// Keeps the targets whose every possible serving region `residency` allows (a model
    /// named without a region is served in `home`). None left: refused, never moved abroad.
    pub fn restrict(
        &mut self,
        residency: &Residency,
        home: Option<&str>,
        tenant: &str,
    ) -> Result<(), RoutingError> {
        if !residency.is_restricted() {
            return Ok(());
        }
        self.chain
            .retain(|t| residency.allows(&reach(&t.invoke_id, t.region.as_deref(), home)));
        if self.chain.is_empty() {
            return Err(RoutingError::Residency(format!(
                "no model of this route may serve tenant '{tenant}' in its allowed regions ({}): name a model or tier placed there",
                residency.describe()
            )));
        }
        Ok(())
    }
}

/// Bedrock's shapes of a model identifier (the `modelId` of Converse): a model or
/// cross-region inference profile ID, or a Bedrock ARN (foundation model, inference profile,
/// application inference profile, provisioned, custom or imported model, prompt router).
pub fn check_model_id(id: &str) -> Result<(), RoutingError> {
    let refuse = || {
        let shown: String = id.chars().take(80).collect();
        RoutingError::InvalidModelId(if shown.len() < id.len() {
            format!("{shown}...")
        } else {
            shown
        })
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_'))
    };
    let Some(arn) = id.strip_prefix("arn:") else {
        return if id.len() <= 256 && plain(id) {
            Ok(())
        } else {
            Err(refuse())
        };
    };
    // arn:PARTITION:bedrock:REGION:ACCOUNT:TYPE/ID
    let parts: Vec<&str> = arn.splitn(5, ':').collect();
    let [partition, service, region, account, resource] = parts[..] else {
        return Err(refuse());
    };
    let (kind, rid) = resource.split_once('/').ok_or_else(refuse)?;
    let ok = id.len() <= 2048
        && matches!(
            partition,
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        )
        && service == "bedrock"
        && (1..=20).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && (account.is_empty()
            || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
        && matches!(
            kind,
            "foundation-model"
                | "inference-profile"
                | "application-inference-profile"
                | "provisioned-model"
                | "custom-model"
                | "imported-model"
                | "default-prompt-router"
                | "prompt-router"
        )
        && (kind == "foundation-model") == account.is_empty()
        && rid.split('/').all(plain);
    if ok { Ok(()) } else { Err(refuse()) }
}

/// A resolved route: the tier (if any) and the chain to try in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub tier: Option<String>,
    pub chain: Vec<ModelTarget>,
}

impl RoutingConfig {
    /// Checks that every tier is non-empty and every target resolves.
    pub fn validate(&self) -> Result<(), RoutingError> {
        for (tier, cap) in &self.tier_max_tokens {
            if !self.tiers.contains_key(tier) || *cap == 0 {
                return Err(RoutingError::Invalid(format!(
                    "tier_max_tokens: '{tier}' must be a tier, with a cap of at least 1"
                )));
            }
        }
        if !self.tiers.contains_key(&self.default_tier) {
            return Err(RoutingError::Invalid(format!(
                "default_tier '{}' is not a tier",
                self.default_tier
            )));
        }
        for (tier, chain) in &self.tiers {
            if chain.is_empty() {
                return Err(RoutingError::Invalid(format!(
                    "tier '{tier}' has no models"
                )));
            }
            for entry in chain {
                self.target(entry.model())
                    .map_err(|e| RoutingError::Invalid(format!("tier '{tier}': {e}")))?;
                if let Some(r) = entry.region()
                    && !region_ok(r)
                {
                    return Err(RoutingError::Invalid(format!(
                        "tier '{tier}': '{r}' is not an AWS region (us-east-1, eu-central-1, ...)"
                    )));
                }
            }
        }
        for (tier, regions) in &self.tier_regions {
            if !self.tiers.contains_key(tier) || regions.is_empty() {
                return Err(RoutingError::Invalid(format!(
                    "tier_regions: '{tier}' must be a tier, with at least one region"
                )));
            }
            if let Some(bad) = regions.iter().find(|r| !region_ok(r)) {
                return Err(RoutingError::Invalid(format!(
                    "tier_regions: '{bad}' is not an AWS region (us-east-1, eu-central-1, ...)"
                )));
            }
        }
        if let Some(bad) = self.home_region.as_deref().filter(|r| !region_ok(r)) {
            return Err(RoutingError::Invalid(format!(
                "home_region: '{bad}' is not an AWS region"
            )));
        }
        for (id, kb) in &self.knowledge_bases {
            if !crate::retrieval::spec::valid_id(id) || id.starts_with("arn:") {
                return Err(RoutingError::Invalid(format!(
                    "knowledge_bases: '{id}' is not a Knowledge Base ID (10 letters and digits)"
                )));
            }
            if kb.embedding_model.is_empty()
                || kb.tenant_attribute.as_deref().is_some_and(str::is_empty)
            {
                return Err(RoutingError::Invalid(format!(
                    "knowledge_bases: '{id}' needs an embedding_model, and a non-empty tenant_attribute if it has one"
                )));
            }
        }
        for (alias, to) in &self.model_aliases {
            if !self.tiers.contains_key(to) {
                self.target(to).map_err(|e| {
                    RoutingError::Invalid(format!("model alias '{alias}' -> '{to}': {e}"))
                })?;
            }
        }
        for (arn, p) in &self.provisioned {
            if !is_provisioned(arn) || !self.models.contains_key(&p.base_model) {
                return Err(RoutingError::Invalid(format!(
                    "provisioned: {arn} must be a provisioned-model ARN serving a model in models"
                )));
            }
            if p.tokens_per_minute == 0 {
                return Err(RoutingError::Invalid(format!(
                    "provisioned: {arn} needs its tokens_per_minute (its capacity)"
                )));
            }
        }
        for (arn, base) in &self.application_inference_profiles {
            if !self.models.contains_key(base) {
                return Err(RoutingError::Invalid(format!(
                    "application inference profile {arn} maps to {base}, which is not in models"
                )));
            }
        }
        Ok(())
    }

    pub fn tier_names(&self) -> Vec<&str> {
        self.tiers.keys().map(String::as_str).collect()
    }

    /// The route for a tier, a model, or (neither) the default tier.
    pub fn route(&self, spec: Option<&RouteSpec>) -> Result<Route, RoutingError> {
        match spec {
            None => self.tier(&self.default_tier),
            Some(RouteSpec::Tier(t)) => self.tier(t),
            Some(RouteSpec::Model(m)) => {
                let m = self.model_aliases.get(m).unwrap_or(m);
                // A name that is a tier is a tier: OpenAI clients send everything as `model`.
                if self.tiers.contains_key(m) {
                    self.tier(m)
                } else {
                    Ok(Route {
                        tier: None,
                        chain: vec![self.target(m)?],
                    })
                }
            }
        }
    }

    fn tier(&self, name: &str) -> Result<Route, RoutingError> {
        let chain = self.tiers.get(name).ok_or_else(|| {
            RoutingError::UnknownTier(name.to_owned(), self.tier_names().join(", "))
        })?;
        let regions = self.tier_regions.get(name);
        let mut targets = Vec::with_capacity(chain.len());
        for entry in chain {
            let target = self.target(entry.model())?;
            match (entry.region(), regions) {
                (Some(r), _) => targets.push(target.in_region(Some(r))),
                // Profiles and ARNs carry their own placement.
                (None, Some(list)) if placement::is_plain_model(entry.model()) => {
                    for r in list {
                        targets.push(target.clone().in_region(Some(r)));
                    }
                }
                (None, _) => targets.push(target),
            }
        }
        // Capacity already paid for is used first; on-demand takes the overflow.
        targets.sort_by_key(|t| !is_provisioned(&t.invoke_id));
        Ok(Route {
            tier: Some(name.to_owned()),
            chain: targets,
        })
    }

    /// Resolves one identifier to its base model. An identifier that is not shaped like one
    /// of Bedrock's is refused before anything else looks at it.
    pub fn target(&self, id: &str) -> Result<ModelTarget, RoutingError> {
        check_model_id(id)?;
        let base = self
            .base_model(id)
            .ok_or_else(|| RoutingError::UnknownModel(id.to_owned()))?;
        let capabilities = self.models.get(&base).cloned().unwrap_or_default();
        Ok(ModelTarget {
            invoke_id: id.to_owned(),
            base_id: base,
            capabilities,
            region: None,
        })
    }

    pub fn base_model(&self, id: &str) -> Option<String> {
        if self.models.contains_key(id) {
            return Some(id.to_owned());
        }
        if let Some(base) = self.application_inference_profiles.get(id) {
            return Some(base.clone());
        }
        if let Some(p) = self.provisioned.get(id) {
            return self
                .models
                .contains_key(&p.base_model)
                .then(|| p.base_model.clone());
        }
        if let Some(rest) = id.strip_prefix("arn:") {
            // arn:PARTITION:bedrock:REGION:ACCOUNT:TYPE/ID
            let resource = rest.splitn(5, ':').nth(4)?;
            let (kind, rid) = resource.split_once('/')?;
            return match kind {
                "foundation-model" => self.models.contains_key(rid).then(|| rid.to_owned()),
                "inference-profile" => self.strip_prefix(rid),
                _ => None,
            };
        }
        self.strip_prefix(id)
    }

    fn strip_prefix(&self, id: &str) -> Option<String> {
        if self.models.contains_key(id) {
            return Some(id.to_owned());
        }
        let (prefix, rest) = id.split_once('.')?;
        (self.inference_profile_prefixes.iter().any(|p| p == prefix)
            && self.models.contains_key(rest))
        .then(|| rest.to_owned())
    }

    pub fn capabilities(&self, base_id: &str) -> Option<&ModelCapabilities> {
        self.models.get(base_id)
    }
}

mod placement;

pub use self::placement::{
    ChainEntry, Placed, Reach, Residency, geography_of, is_plain_model, reach, region_ok,
};

#[cfg(test)]
mod tests;
