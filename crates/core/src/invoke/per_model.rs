//! The request as one model of the chain receives it. A chain may mix models that take
//! different settings for the same thing (reasoning is `thinking` for Claude,
//! `reasoningConfig` for Nova, `reasoning_effort` for gpt-oss), so the generic request is
//! put into each model's own terms just before its call.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::model::{ContentBlock, Effort, ModelRequest, SystemBlock, ToolChoice};
use crate::routing::{ModelTarget, ReasoningStyle};

/// Output tokens left for the answer after Claude's reasoning budget, when the request set
/// no `max_tokens` of its own.
const ANSWER_TOKENS: u32 = 4_096;

/// The request as `target` may receive it:
/// * prompt-cache checkpoints are removed for models that do not support them (a fallback
///   model may not), rather than failing validation;
/// * a default service tier (the routing's) applies only to models that serve it;
/// * reasoning, `top_k`, Anthropic betas and `parallel_tool_calls: false` become the model's
///   own `additionalModelRequestFields` (betas for Claude only: they are Anthropic's).
pub fn request_for<'a>(target: &ModelTarget, request: &'a ModelRequest) -> Cow<'a, ModelRequest> {
    let caps = &target.capabilities;
    let has_points = request
        .system
        .iter()
        .any(|b| matches!(b, SystemBlock::CachePoint))
        || request.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::CachePoint))
        });
    let strip_points = has_points && !caps.prompt_caching;
    let drop_tier = request.service_tier.is_some_and(|t| !caps.serves_tier(t));
    let parallel_off = request.single_tool_call
        && caps.parallel_tool_control
        && !request.tools.is_empty()
        && matches!(request.tool_choice, None | Some(ToolChoice::Auto));
    let reasoning = request.reasoning.filter(|_| caps.reasoning.is_some());
    let claude = target.base_id.starts_with("anthropic.");
    let top_k = request.params.top_k.filter(|_| caps.top_k);
    let betas = claude && !request.anthropic_beta.is_empty();
    let region = request.region != target.region;
    if !strip_points
        && !drop_tier
        && !parallel_off
        && reasoning.is_none()
        && top_k.is_none()
        && !betas
        && !region
    {
        return Cow::Borrowed(request);
    }
    let mut r = request.clone();
    // Called in the target's region (`None`: the deployment's own).
    r.region.clone_from(&target.region);
    if strip_points {
        r.system.retain(|b| !matches!(b, SystemBlock::CachePoint));
        for m in &mut r.messages {
            m.content.retain(|b| !matches!(b, ContentBlock::CachePoint));
        }
    }
    if drop_tier {
        r.service_tier = None;
    }
    let mut fields = match r.additional_fields.take() {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(k) = top_k {
        // Converse has no topK: each provider's own field.
        if claude {
            fields.insert("top_k".into(), json!(k));
        } else {
            fields.insert("inferenceConfig".into(), json!({"topK": k}));
        }
    }
    if betas {
        fields.insert("anthropic_beta".into(), json!(request.anthropic_beta));
    }
    if parallel_off {
        // Claude's own tool_choice, beside Converse's: it carries the switch Converse lacks.
        fields.insert(
            "tool_choice".into(),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        );
    }
    if let (Some(reasoning), Some(style)) = (reasoning, caps.reasoning) {
        let effort = reasoning
            .effort
            .or(reasoning.budget_tokens.map(Effort::of_budget))
            .unwrap_or(Effort::Medium);
        match style {
            ReasoningStyle::AnthropicThinking => {
                let mut budget = reasoning.budget_tokens.unwrap_or(effort.budget());
                let model_max = (caps.max_output_tokens > 0).then_some(caps.max_output_tokens);
                let max_tokens = match r.params.max_tokens {
                    Some(m) => m,
                    None => {
                        let want = budget.saturating_add(ANSWER_TOKENS);
                        model_max.map_or(want, |cap| want.min(cap))
                    }
                };
                // Claude needs max_tokens above the budget; the caller's max_tokens is the
                // whole output's cap (reasoning included), so the budget gives way.
                budget = budget.min(max_tokens.saturating_sub(1)).max(1_024);
                r.params.max_tokens = Some(max_tokens.max(budget + 1));
                fields.insert(
                    "thinking".into(),
                    json!({"type": "enabled", "budget_tokens": budget}),
                );
            }
            ReasoningStyle::NovaEffort => {
                let effort = effort.max(Effort::Low);
                fields.insert(
                    "reasoningConfig".into(),
                    json!({"type": "enabled", "maxReasoningEffort": effort.as_str()}),
                );
            }
            ReasoningStyle::OpenaiEffort => {
                let effort = effort.max(Effort::Low);
                fields.insert("reasoning_effort".into(), json!(effort.as_str()));
            }
            ReasoningStyle::Builtin => {}
        }
    }
    r.additional_fields = (!fields.is_empty()).then_some(Value::Object(fields));
    Cow::Owned(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ReasoningRequest, ServiceTier, ToolSpec};
    use crate::routing::ModelCapabilities;

    fn target(caps: ModelCapabilities) -> ModelTarget {
        ModelTarget::new("m", "m", caps)
    }

    fn thinking(max_output: u32) -> ModelTarget {
        target(ModelCapabilities {
            max_output_tokens: max_output,
            reasoning: Some(ReasoningStyle::AnthropicThinking),
            parallel_tool_control: true,
            ..Default::default()
        })
    }

    #[test]
    fn plain_requests_are_not_copied() {
        let r = ModelRequest::default();
        assert!(matches!(request_for(&thinking(100), &r), Cow::Borrowed(_)));
    }

    #[test]
    fn claude_thinking_fits_under_max_tokens() {
        let mut r = ModelRequest {
            reasoning: Some(ReasoningRequest {
                effort: Some(Effort::High),
                budget_tokens: None,
            }),
            ..Default::default()
        };
        let out = request_for(&thinking(64_000), &r);
        assert_eq!(
            out.additional_fields,
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 24_576}}))
        );
        assert_eq!(out.params.max_tokens, Some(24_576 + ANSWER_TOKENS));
        r.params.max_tokens = Some(3_000);
        let out = request_for(&thinking(64_000), &r);
        assert_eq!(
            out.additional_fields.as_ref().unwrap()["thinking"]["budget_tokens"],
            2_999
        );
        assert_eq!(out.params.max_tokens, Some(3_000));
        // A model that does not reason gets nothing.
        let out = request_for(&target(ModelCapabilities::default()), &r);
        assert!(out.additional_fields.is_none());
    }

    #[test]
    fn other_styles_get_an_effort() {
        let r = ModelRequest {
            reasoning: Some(ReasoningRequest {
                effort: None,
                budget_tokens: Some(20_000),
            }),
            ..Default::default()
        };
        let nova = target(ModelCapabilities {
            reasoning: Some(ReasoningStyle::NovaEffort),
            ..Default::default()
        });
        assert_eq!(
            request_for(&nova, &r).additional_fields,
            Some(json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}))
        );
        let oss = target(ModelCapabilities {
            reasoning: Some(ReasoningStyle::OpenaiEffort),
            ..Default::default()
        });
        assert_eq!(
            request_for(&oss, &r).additional_fields,
            Some(json!({"reasoning_effort": "high"}))
        );
    }

    #[test]
    fn parallel_tool_calls_off_and_default_tiers() {
        let r = ModelRequest {
            tools: vec![ToolSpec {
                name: "t".into(),
                description: None,
                input_schema: json!({"type": "object"}),
                strict: None,
            }],
            single_tool_call: true,
            service_tier: Some(ServiceTier::Flex),
            ..Default::default()
        };
        let out = request_for(&thinking(100), &r);
        assert_eq!(
            out.additional_fields.as_ref().unwrap()["tool_choice"]["disable_parallel_tool_use"],
            true
        );
        assert_eq!(
            out.service_tier, None,
            "a model without flex gets the default"
        );
    }
}
