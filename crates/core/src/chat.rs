//! Preparing a chat request, whatever API it came through: prompt (by name and version,
//! label or experiment) -> render -> route -> tenant policy. The result is a [`Prepared`]
//! request: what the model will be asked, where, and under which prompt settings.
//!
//! HTTP concerns (auth, limits, envelopes, streaming framing) stay in the handlers; what
//! happens next (guardrails, budget, cache, invocation, cost) is the [`crate::service`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Configs;
use crate::error::Error;
use crate::guardrails::GuardrailConfig;
use crate::model::{
    ContentBlock, InferenceParams, Message, ModelRequest, Role, SystemBlock, ToolChoice, ToolSpec,
};
use crate::prompts::{PromptSelector, PromptStore, choose_label};
use crate::routing::{Route, RouteSpec, RoutingConfig};
use crate::tenancy::Caller;

/// A prompt chosen by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PromptRef {
    pub name: String,
    /// An explicit version or label; `None` uses the experiment (with `ab_key`) or the
    /// default (label `prod`, else latest).
    pub selector: Option<PromptSelector>,
    pub ab_key: Option<String>,
}

/// A chat request, whatever API it came through.
#[derive(Debug, Clone, Default)]
pub struct ChatInput {
    pub prompt: Option<PromptRef>,
    pub variables: Map<String, Value>,
    /// System text from the request (OpenAI system messages), after the prompt's own.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub route: Option<RouteSpec>,
    /// Request parameters; they override the prompt's.
    pub params: InferenceParams,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    /// JSON Schema for the output; overrides the prompt's.
    pub output_schema: Option<Value>,
    pub tags: BTreeMap<String, String>,
    pub reasoning: Option<crate::model::ReasoningRequest>,
    /// The service tier asked for (`auto` is `None`).
    pub service_tier: Option<crate::model::ServiceTier>,
    pub latency_optimized: bool,
    /// `parallel_tool_calls: false`.
    pub single_tool_call: bool,
    /// Anthropic beta features (the Messages API's `anthropic-beta`).
    pub anthropic_beta: Vec<String>,
    /// The caller marked its system prompt for prompt caching (`cache_control`): a
    /// checkpoint follows it (removed for models without prompt caching).
    pub system_cache_point: bool,
}

/// The prompt version a request used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptUsed {
    pub name: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A request ready for guardrails, admission, cache and invocation.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub request: ModelRequest,
    pub route: Route,
    /// The routing configuration this request was routed with: later steps (a budget's
    /// degrade, the cache's base model) use this snapshot rather than reading it again.
    pub routing: Arc<RoutingConfig>,
    pub prompt: Option<PromptUsed>,
    pub output_schema: Option<Value>,
    /// The prompt is marked cacheable (`cache: auto` may cache at any temperature).
    pub prompt_cacheable: bool,
    /// The prompt's cache TTL (0: the service default).
    pub cache_ttl_seconds: u64,
    /// The prompt's own guardrails (combined with the tenant's by the service).
    pub guardrails: Option<GuardrailConfig>,
    /// How many leading system blocks are the prompt's (operator text); the rest came with
    /// the request and are checked like user input.
    pub prompt_system_blocks: usize,
    /// The caller's template variables (their strings), rendered into the prompt's text:
    /// checked like user input, and masked where they were rendered.
    pub variable_texts: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// The prompt's retrieval, to run once the request is admitted.
    pub retrieval: Option<crate::retrieval::RetrievalPlan>,
    /// The prompt's audit level (combined with the tenant's by the service).
    pub audit: Option<crate::audit::AuditLevel>,
    /// The caller's template variables as given (a `full` audit record keeps them, after
    /// the guardrails, so a golden case can be made of the request).
    pub variables: Map<String, Value>,
}

impl Prepared {
    pub fn feature(&self) -> Option<&str> {
        self.tags.get("feature").map(String::as_str)
    }
}

/// Most tags a request may carry.
pub const MAX_TAGS: usize = 16;
/// Longest tag key, in bytes.
pub const MAX_TAG_KEY: usize = 64;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE: usize = 128;

/// Tags reach the ledger's keys (`FEATURE#{feature}`), metric dimensions and log lines, so
/// they are bounded: a few, short, in a plain character set (that of AWS resource tags).
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), Error> {
    if tags.len() > MAX_TAGS {
        return Err(Error::bad_request(
            "tags",
            format!("{} tags given; at most {MAX_TAGS} are allowed", tags.len()),
        ));
    }
    let plain = |s: &str, space: bool| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/=+@-".contains(c) || (space && c == ' '))
    };
    for (key, value) in tags {
        let field = || format!("tags.{}", key.chars().take(MAX_TAG_KEY).collect::<String>());
        if key.is_empty() || key.len() > MAX_TAG_KEY || !plain(key, false) {
            return Err(Error::bad_request(
                field(),
                format!(
                    "a tag key is 1 to {MAX_TAG_KEY} characters of A-Z a-z 0-9 _ . : / = + @ -"
                ),
            ));
        }
        if value.is_empty() || value.len() > MAX_TAG_VALUE || !plain(value, true) {
            return Err(Error::bad_request(
                field(),
                format!(
                    "a tag value is 1 to {MAX_TAG_VALUE} characters of A-Z a-z 0-9, space and _ . : / = + @ -"
                ),
            ));
        }
    }
    Ok(())
}

/// The strings in a JSON value (keys and values), for the input guardrails.
fn strings_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings_of(v, out);
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Rough token estimate (about four characters a token), used only to decide whether a
/// system prompt is long enough to be worth a prompt-cache checkpoint.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

/// Prompts and routing: everything before guardrails and the model.
pub struct Preparer {
    configs: Arc<Configs>,
    prompts: Arc<PromptStore>,
}

impl Preparer {
    pub fn new(configs: Arc<Configs>, prompts: Arc<PromptStore>) -> Self {
        Self { configs, prompts }
    }

    /// Configuration and prompts from one parameter store under `prefix`, each cached in the
    /// warm process for `max_age`: how every handler wires it.
    pub fn from_params(
        params: Arc<dyn crate::ports::ParameterStore>,
        prefix: &str,
        max_age: std::time::Duration,
    ) -> Self {
        Self::new(
            Arc::new(Configs::new(params.clone(), prefix, max_age)),
            Arc::new(PromptStore::new(params, prefix, max_age)),
        )
    }

    pub fn configs(&self) -> &Arc<Configs> {
        &self.configs
    }

    /// Prompt, render, route and policy.
    pub async fn prepare(&self, caller: &Caller, input: ChatInput) -> Result<Prepared, Error> {
        check_tags(&input.tags)?;
        let routing = self.configs.routing().await?;
        let mut system: Vec<String> = Vec::new();
        let mut variable_texts = Vec::new();
        let mut messages = input.messages;
        let mut params = InferenceParams::default();
        let mut route_spec = None;
        let mut output_schema = None;
        let mut prompt_used = None;
        let mut prompt_caching = false;
        let mut cacheable = false;
        let mut ttl = 0;
        let mut guardrails = None;
        let mut audit = None;
        let mut prompt_tier = None;
        let mut retrieval = None;

        if let Some(p) = &input.prompt {
            crate::prompts::validate_name(&p.name)?;
            if !caller.policy.allows_prompt(&p.name) {
                return Err(Error::Forbidden(format!(
                    "tenant '{}' may not use prompt '{}'",
                    caller.tenant,
                    p.name.chars().take(128).collect::<String>()
                )));
            }
            let selector = match (&p.selector, &p.ab_key) {
                (Some(s), _) => s.clone(),
                (None, Some(key)) => {
                    let experiments = self.configs.experiments().await?;
                    match experiments
                        .get(&p.name)
                        .and_then(|w| choose_label(&p.name, key, w))
                    {
                        Some(label) => PromptSelector::Label(label),
                        None => PromptSelector::Default,
                    }
                }
                (None, None) => PromptSelector::Default,
            };
            let version = self.prompts.get(&p.name, &selector).await?;
            let spec = &version.prompt.spec;
            let rendered = version.prompt.render(&input.variables)?;
            strings_of(&Value::Object(input.variables.clone()), &mut variable_texts);
            if let Some(s) = rendered.system {
                system.push(s);
            }
            if let (Some(kb), Some((query, filter))) = (&spec.knowledge_base, rendered.retrieval) {
                let entry = routing
                    .knowledge_bases
                    .get(crate::retrieval::spec::short_id(&kb.id));
                retrieval = Some(crate::retrieval::RetrievalPlan::new(
                    caller,
                    kb,
                    entry,
                    &query,
                    filter,
                    spec.grounding.clone(),
                )?);
            }
            // The rendered template is this turn's user message, after any history.
            match messages.last_mut() {
                Some(last) if last.role == Role::User => {
                    last.content.push(ContentBlock::Text(rendered.user))
                }
                _ => messages.push(Message::user(rendered.user)),
            }
            params = spec.parameters.clone();
            route_spec = match (&spec.tier, &spec.model) {
                (Some(t), _) => Some(RouteSpec::Tier(t.clone())),
                (None, Some(m)) => Some(RouteSpec::Model(m.clone())),
                _ => None,
            };
            output_schema = spec.output_schema.clone();
            prompt_caching = spec.prompt_caching;
            cacheable = spec.cache.enabled;
            ttl = spec.cache.ttl_seconds;
            guardrails = spec.guardrails.clone();
            audit = spec.audit;
            prompt_tier = spec.service_tier;
            prompt_used = Some(PromptUsed {
                name: version.name.clone(),
                version: version.version,
                label: version.label.clone(),
            });
        } else if !input.variables.is_empty() {
            return Err(Error::bad_request(
                "variables",
                "variables need a prompt: name one with 'prompt'",
            ));
        }
        if messages.is_empty() {
            return Err(Error::bad_request(
                "messages",
                "give 'messages' or a 'prompt'",
            ));
        }

        let prompt_system_blocks = system.len();
        system.extend(input.system);
        let mut route = routing.route(input.route.as_ref().or(route_spec.as_ref()))?;
        if !caller.policy.allows(&route) {
            return Err(Error::Forbidden(match &route.tier {
                Some(t) => format!("tenant '{}' may not use tier '{t}'", caller.tenant),
                None => format!(
                    "tenant '{}' may not use model '{}'",
                    caller.tenant,
                    route
                        .chain
                        .first()
                        .map(|t| t.invoke_id.as_str())
                        .unwrap_or_default()
                ),
            }));
        }

        caller
            .policy
            .apply(&mut route, routing.home_region.as_deref(), &caller.tenant)?;

        let mut system_blocks: Vec<SystemBlock> =
            system.iter().cloned().map(SystemBlock::Text).collect();
        if prompt_caching
            && let Some(first) = route.chain.first()
            && let caps = &first.capabilities
            && caps.prompt_caching
            && system.iter().map(|s| estimate_tokens(s)).sum::<u32>() >= caps.cache_min_tokens
        {
            system_blocks.push(SystemBlock::CachePoint);
        } else if input.system_cache_point && !system_blocks.is_empty() {
            system_blocks.push(SystemBlock::CachePoint);
        }

        let p = input.params;
        params.max_tokens = p.max_tokens.or(params.max_tokens);
        params.temperature = p.temperature.or(params.temperature);
        params.top_p = p.top_p.or(params.top_p);
        params.top_k = p.top_k.or(params.top_k);
        if !p.stop.is_empty() {
            params.stop = p.stop;
        }
        crate::media::check_counts(&messages)?;
        if input.reasoning.is_some() && params.max_tokens.is_some_and(|m| m <= 1_024) {
            return Err(Error::bad_request(
                "max_tokens",
                "with reasoning, max_tokens covers the reasoning too: give more than 1024",
            ));
        }
        let mut request = ModelRequest {
            system: system_blocks,
            messages,
            params,
            tools: input.tools,
            tool_choice: input.tool_choice,
            guardrail: None,
            metadata: input.tags.clone(),
            reasoning: input.reasoning,
            service_tier: input.service_tier.or(prompt_tier),
            latency_optimized: input.latency_optimized,
            single_tool_call: input.single_tool_call,
            anthropic_beta: input.anthropic_beta,
            additional_fields: None,
            region: None,
        };
        // The chain is cut to the models that can do what the request asks.
        crate::needs::fit(&mut route, &request)?;
        // The tier's default service tier, for the models of the chain that serve it.
        if request.service_tier.is_none()
            && let Some(t) = route
                .tier
                .as_ref()
                .and_then(|t| routing.tier_service_tiers.get(t))
        {
            request.service_tier = Some(*t);
        }
        Ok(Prepared {
            request,
            route,
            routing,
            prompt: prompt_used,
            output_schema: input.output_schema.or(output_schema),
            prompt_cacheable: cacheable,
            cache_ttl_seconds: ttl,
            guardrails,
            prompt_system_blocks,
            variable_texts,
            tags: input.tags,
            retrieval,
            audit,
            variables: input.variables,
        })
    }
}
