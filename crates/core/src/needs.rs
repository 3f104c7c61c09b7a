//! What a request needs of a model (vision, documents, reasoning, a service tier, forced tool
//! choice, ...), and the chain cut down to the models that have it.
//!
//! A chain's first model that cannot do what is asked is skipped for the next one that can,
//! before any call; when none can, the request gets a 400 naming the field and the
//! capability, rather than Bedrock's ValidationException after a round trip.

use crate::error::Error;
use crate::model::{ContentBlock, ModelRequest, ServiceTier, ToolChoice};
use crate::routing::{ModelCapabilities, ReasoningStyle, Route};

/// One thing a request asks of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    ToolUse,
    ForcedToolChoice,
    Vision,
    Documents,
    Citations,
    Reasoning,
    /// Reasoning together with sampling settings (Claude thinking takes neither
    /// temperature nor top_p) or a forced tool.
    ReasoningAsConfigured,
    ServiceTier(ServiceTier),
    LatencyOptimized,
    StrictTools,
    SingleToolCall,
    TopK,
}

impl Need {
    /// The request field that asks for it, for the 400.
    pub fn field(self) -> &'static str {
        match self {
            Self::ToolUse | Self::StrictTools => "tools",
            Self::ForcedToolChoice => "tool_choice",
            Self::Vision => "image",
            Self::Documents | Self::Citations => "document",
            Self::Reasoning => "reasoning",
            Self::ReasoningAsConfigured => "temperature",
            Self::ServiceTier(_) => "service_tier",
            Self::LatencyOptimized => "latency",
            Self::SingleToolCall => "parallel_tool_calls",
            Self::TopK => "top_k",
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::ToolUse => "tool use".into(),
            Self::ForcedToolChoice => "a forced tool choice".into(),
            Self::Vision => "images".into(),
            Self::Documents => "documents".into(),
            Self::Citations => "citations".into(),
            Self::Reasoning => "reasoning".into(),
            Self::ReasoningAsConfigured => {
                "reasoning with temperature, top_p or a forced tool choice".into()
            }
            Self::ServiceTier(t) => format!("the {} service tier", t.as_str()),
            Self::LatencyOptimized => "latency-optimized inference".into(),
            Self::StrictTools => "strict tools".into(),
            Self::SingleToolCall => "turning off parallel tool calls".into(),
            Self::TopK => "top_k sampling".into(),
        }
    }

    /// Whether a model with these capabilities can do it.
    pub fn met_by(self, c: &ModelCapabilities) -> bool {
        match self {
            Self::ToolUse => c.tool_use,
            Self::ForcedToolChoice => c.tool_use && c.forced_tool_choice,
            Self::Vision => c.vision,
            Self::Documents => c.documents,
            Self::Citations => c.documents && c.citations,
            Self::Reasoning => c.reasoning.is_some(),
            // Only a model that reasons can reason as configured.
            Self::ReasoningAsConfigured => c
                .reasoning
                .is_some_and(|r| r != ReasoningStyle::AnthropicThinking),
            Self::ServiceTier(t) => c.serves_tier(t),
            Self::LatencyOptimized => c.latency_optimized,
            Self::StrictTools => c.strict_tools,
            Self::SingleToolCall => c.parallel_tool_control,
            Self::TopK => c.top_k,
        }
    }
}

/// Everything the request asks of a model.
pub fn needs(request: &ModelRequest) -> Vec<Need> {
    let mut out = Vec::new();
    let blocks = request.messages.iter().flat_map(|m| m.content.iter());
    let (mut images, mut documents, mut citations) = (false, false, false);
    for b in blocks {
        match b {
            ContentBlock::Image(_) => images = true,
            ContentBlock::Document(d) => {
                documents = true;
                citations |= d.citations;
            }
            _ => {}
        }
    }
    if !request.tools.is_empty() {
        out.push(Need::ToolUse);
    }
    let forced = matches!(
        request.tool_choice,
        Some(ToolChoice::Any | ToolChoice::Tool(_))
    );
    if forced {
        out.push(Need::ForcedToolChoice);
    }
    if request.tools.iter().any(|t| t.strict == Some(true)) {
        out.push(Need::StrictTools);
    }
    if request.single_tool_call && !request.tools.is_empty() {
        out.push(Need::SingleToolCall);
    }
    if images {
        out.push(Need::Vision);
    }
    if documents {
        out.push(Need::Documents);
    }
    if citations {
        out.push(Need::Citations);
    }
    if request.reasoning.is_some() {
        out.push(Need::Reasoning);
        let p = &request.params;
        if p.temperature.is_some_and(|t| t != 1.0) || p.top_p.is_some() || forced {
            out.push(Need::ReasoningAsConfigured);
        }
    }
    if let Some(tier) = request.service_tier
        && tier != ServiceTier::Default
    {
        out.push(Need::ServiceTier(tier));
    }
    if request.latency_optimized {
        out.push(Need::LatencyOptimized);
    }
    if request.params.top_k.is_some() {
        out.push(Need::TopK);
    }
    out
}

/// Cuts the chain to the models that can do everything the request asks; a 400 naming the
/// first need no model of the chain meets.
pub fn fit(route: &mut Route, request: &ModelRequest) -> Result<(), Error> {
    // Embedding models do not chat.
    if route
        .chain
        .iter()
        .all(|t| t.capabilities.embedding.is_some())
    {
        return Err(Error::bad_request(
            "model",
            "an embedding model does not chat: send it to /v1/embeddings",
        ));
    }
    route.chain.retain(|t| t.capabilities.embedding.is_none());
    let needs = needs(request);
    if needs.is_empty() {
        return Ok(());
    }
    let before = route.chain.clone();
    route
        .chain
        .retain(|t| needs.iter().all(|n| n.met_by(&t.capabilities)));
    if !route.chain.is_empty() {
        return Ok(());
    }
    // Name what the closest model (the one meeting the most needs) lacks first: the one
    // thing to drop or change.
    // (`rev`: on a tie, the model that comes first in the chain.)
    let closest = before
        .iter()
        .rev()
        .max_by_key(|t| needs.iter().filter(|n| n.met_by(&t.capabilities)).count());
    let worst = closest
        .and_then(|t| needs.iter().copied().find(|n| !n.met_by(&t.capabilities)))
        .unwrap_or(Need::ToolUse);
    let models: Vec<&str> = before.iter().map(|t| t.invoke_id.as_str()).collect();
    let whose = match &route.tier {
        Some(t) => format!("tier '{t}' ({})", models.join(", ")),
        None => format!("model '{}'", models.join(", ")),
    };
    route.chain = before;
    Err(Error::bad_request(
        worst.field(),
        format!(
            "{whose} does not support {}: choose a model or tier that does, or leave it out",
            worst.describe()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Image, ImageFormat};
    use crate::model::{Message, ReasoningRequest};
    use crate::routing::ModelTarget;

    fn target(id: &str, caps: ModelCapabilities) -> ModelTarget {
        ModelTarget::new(id, id, caps)
    }

    fn route() -> Route {
        Route {
            tier: Some("smart".into()),
            chain: vec![
                target("text-only", ModelCapabilities::default()),
                target(
                    "seeing",
                    ModelCapabilities {
                        vision: true,
                        service_tiers: vec![ServiceTier::Flex],
                        ..Default::default()
                    },
                ),
                target(
                    "thinking",
                    ModelCapabilities {
                        vision: true,
                        reasoning: Some(ReasoningStyle::AnthropicThinking),
                        ..Default::default()
                    },
                ),
            ],
        }
    }

    fn ids(r: &Route) -> Vec<&str> {
        r.chain.iter().map(|t| t.invoke_id.as_str()).collect()
    }

    #[test]
    fn the_chain_skips_models_that_cannot() {
        let mut request = ModelRequest::default();
        request.messages.push(Message {
            role: crate::model::Role::User,
            content: vec![ContentBlock::Image(Image {
                format: ImageFormat::Png,
                bytes: vec![1],
            })],
        });
        let mut r = route();
        fit(&mut r, &request).unwrap();
        assert_eq!(ids(&r), ["seeing", "thinking"]);

        request.service_tier = Some(ServiceTier::Flex);
        let mut r = route();
        fit(&mut r, &request).unwrap();
        assert_eq!(ids(&r), ["seeing"]);

        request.reasoning = Some(ReasoningRequest {
            effort: None,
            budget_tokens: Some(2000),
        });
        let mut r = route();
        let e = fit(&mut r, &request).unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert!(e.to_string().contains("tier 'smart'"), "{e}");
        assert_eq!(r.chain.len(), 3, "the route is left as it was");
    }

    #[test]
    fn claude_thinking_takes_no_temperature() {
        let mut request = ModelRequest {
            reasoning: Some(ReasoningRequest {
                effort: Some(crate::model::Effort::Low),
                budget_tokens: None,
            }),
            ..Default::default()
        };
        let mut r = route();
        fit(&mut r, &request).unwrap();
        assert_eq!(ids(&r), ["thinking"]);
        request.params.temperature = Some(0.2);
        let e = fit(&mut route(), &request).unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
        request.params.temperature = Some(1.0);
        fit(&mut route(), &request).unwrap();
    }
}
