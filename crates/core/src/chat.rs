//! The chat pipeline shared by the chat handler and the batch worker: prompt (by name and
//! version, label or experiment) -> render -> route (tenant policy) -> invoke -> cost.
//!
//! HTTP concerns (auth, limits, envelopes, streaming framing) stay in the handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::Configs;
use crate::error::Error;
use crate::invoke::{Attempt, Fallback, Invocation, Invoker, StreamInvocation};
use crate::model::{
    ContentBlock, InferenceParams, Message, ModelRequest, ModelResponse, Role, SystemBlock,
    TokenUsage, ToolChoice, ToolSpec,
};
use crate::pricing::{MicroUsd, Priced};
use crate::prompts::{PromptSelector, PromptStore, choose_label};
use crate::routing::{ModelTarget, Route, RouteSpec};
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
}

/// The prompt version a request used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptUsed {
    pub name: String,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A request ready to invoke.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub request: ModelRequest,
    pub route: Route,
    pub prompt: Option<PromptUsed>,
    pub output_schema: Option<Value>,
    /// The prompt's response-cache settings (enabled, TTL seconds).
    pub prompt_cacheable: bool,
    pub cache_ttl_seconds: u64,
    pub tags: BTreeMap<String, String>,
}

/// An answered request.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub response: ModelResponse,
    pub target: ModelTarget,
    pub fallbacks: Vec<Fallback>,
    pub attempts: Vec<Attempt>,
    /// `None`: the model has no price (a warning was logged and counted).
    pub cost: Option<MicroUsd>,
}

/// Rough token estimate (about four characters a token), used only to decide whether a
/// system prompt is long enough to be worth a prompt-cache checkpoint.
fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

pub struct Pipeline {
    configs: Arc<Configs>,
    prompts: Arc<PromptStore>,
    invoker: Arc<Invoker>,
}

impl Pipeline {
    pub fn new(configs: Arc<Configs>, prompts: Arc<PromptStore>, invoker: Arc<Invoker>) -> Self {
        Self {
            configs,
            prompts,
            invoker,
        }
    }

    pub fn configs(&self) -> &Arc<Configs> {
        &self.configs
    }

    pub fn invoker(&self) -> &Arc<Invoker> {
        &self.invoker
    }

    /// Prompt, render, route and policy: everything before the model call.
    pub async fn prepare(&self, caller: &Caller, input: ChatInput) -> Result<Prepared, Error> {
        let routing = self.configs.routing().await?;
        let mut system: Vec<String> = Vec::new();
        let mut messages = input.messages;
        let mut params = InferenceParams::default();
        let mut route_spec = None;
        let mut output_schema = None;
        let mut prompt_used = None;
        let mut prompt_caching = false;
        let mut cacheable = false;
        let mut ttl = 0;

        if let Some(p) = &input.prompt {
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
            if let Some(s) = rendered.system {
                system.push(s);
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

        system.extend(input.system);
        let route = routing.route(input.route.as_ref().or(route_spec.as_ref()))?;
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

        let mut system_blocks: Vec<SystemBlock> =
            system.iter().cloned().map(SystemBlock::Text).collect();
        if prompt_caching
            && let Some(first) = route.chain.first()
            && let Some(caps) = routing.capabilities(&first.base_id)
            && caps.prompt_caching
            && system.iter().map(|s| estimate_tokens(s)).sum::<u32>() >= caps.cache_min_tokens
        {
            system_blocks.push(SystemBlock::CachePoint);
        }

        let p = input.params;
        params.max_tokens = p.max_tokens.or(params.max_tokens);
        params.temperature = p.temperature.or(params.temperature);
        params.top_p = p.top_p.or(params.top_p);
        if !p.stop.is_empty() {
            params.stop = p.stop;
        }
        Ok(Prepared {
            request: ModelRequest {
                system: system_blocks,
                messages,
                params,
                tools: input.tools,
                tool_choice: input.tool_choice,
                guardrail: None,
            },
            route,
            prompt: prompt_used,
            output_schema: input.output_schema.or(output_schema),
            prompt_cacheable: cacheable,
            cache_ttl_seconds: ttl,
            tags: input.tags,
        })
    }

    /// Calls the route's chain and prices the answer.
    pub async fn complete(
        &self,
        prepared: &Prepared,
        deadline: Instant,
    ) -> Result<ChatOutcome, Error> {
        let invocation: Invocation = self
            .invoker
            .invoke(&prepared.route.chain, &prepared.request, deadline)
            .await
            .map_err(Error::Invoke)?;
        let cost = self
            .price(&invocation.target, &invocation.response.usage)
            .await;
        Ok(ChatOutcome {
            fallbacks: invocation.fallbacks(),
            response: invocation.response,
            target: invocation.target,
            attempts: invocation.attempts,
            cost,
        })
    }

    /// Opens a stream (fallback only before the first token).
    pub async fn stream(
        &self,
        prepared: &Prepared,
        deadline: Instant,
    ) -> Result<StreamInvocation, Error> {
        self.invoker
            .invoke_stream(&prepared.route.chain, &prepared.request, deadline)
            .await
            .map_err(Error::Invoke)
    }

    /// The cost of `usage` on `target`; `None` (with a loud warning) when it has no price.
    pub async fn price(&self, target: &ModelTarget, usage: &TokenUsage) -> Option<MicroUsd> {
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
                // Once for the stage-wide alarm, once broken down by model.
                metrics::counter!("UnpricedCalls").increment(1);
                metrics::counter!("UnpricedCalls", "Model" => target.base_id.clone()).increment(1);
                None

            }
        }
    }
}
