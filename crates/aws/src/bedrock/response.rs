//! The SDK's Converse answers and stream events back onto the core's types: content
//! (text, tool calls, reasoning with its signature, citations), usage (with the one-hour
//! cache writes of `cacheDetails`), and what the call reports about itself (the service
//! tier, the model a prompt router chose, what a Bedrock guardrail did).

use aws_sdk_bedrockruntime::types as bt;
use quarry_core::model::{
    Citation, CitationLocation, CitationUnit, ContentBlock, GuardrailOutcome, ModelResponse,
    Served, ServiceTier, StopReason, StreamEvent, TokenUsage,
};

use crate::document::to_json;

fn as_u64(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn as_u32(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn usage_of(u: Option<&bt::TokenUsage>) -> TokenUsage {
    u.map(|u| TokenUsage {
        input: as_u64(u.input_tokens()),
        output: as_u64(u.output_tokens()),
        cache_read: as_u64(u.cache_read_input_tokens().unwrap_or(0)),
        cache_write: as_u64(u.cache_write_input_tokens().unwrap_or(0)),
        cache_write_1h: u
            .cache_details()
            .iter()
            .filter(|d| d.ttl() == &bt::CacheTtl::OneHour)
            .map(|d| as_u64(d.input_tokens()))
            .sum(),
    })
    .unwrap_or_default()
}

fn tier_of(t: Option<&bt::ServiceTier>) -> Option<ServiceTier> {
    t.and_then(|t| ServiceTier::parse(t.r#type().as_str()))
}

/// Every action a guardrail assessment lists (`BLOCKED`, `ANONYMIZED`, `NONE`).
fn actions(a: &bt::GuardrailAssessment, out: &mut Vec<String>) {
    if let Some(p) = a.topic_policy() {
        out.extend(p.topics().iter().map(|t| t.action().as_str().to_owned()));
    }
    if let Some(p) = a.content_policy() {
        out.extend(p.filters().iter().map(|f| f.action().as_str().to_owned()));
    }
    if let Some(p) = a.word_policy() {
        out.extend(
            p.custom_words()
                .iter()
                .map(|w| w.action().as_str().to_owned()),
        );
        out.extend(
            p.managed_word_lists()
                .iter()
                .map(|w| w.action().as_str().to_owned()),
        );
    }
    if let Some(p) = a.sensitive_information_policy() {
        out.extend(
            p.pii_entities()
                .iter()
                .map(|e| e.action().as_str().to_owned()),
        );
        out.extend(p.regexes().iter().map(|r| r.action().as_str().to_owned()));
    }
    if let Some(p) = a.contextual_grounding_policy() {
        out.extend(p.filters().iter().map(|f| f.action().as_str().to_owned()));
    }
}

/// Whether any of these assessments blocked (an intervention without a `BLOCKED` action
/// only masked). No assessment at all is read as a block: the guardrail said it intervened.
pub(super) fn blocks(assessments: &[bt::GuardrailAssessment]) -> bool {
    let mut all = Vec::new();
    for a in assessments {
        actions(a, &mut all);
    }
    all.is_empty() || all.iter().any(|a| a == "BLOCKED")
}

/// What the guardrail did, from its trace: any block is a block; only masks, a mask.
fn guardrail_outcome(g: Option<&bt::GuardrailTraceAssessment>) -> Option<GuardrailOutcome> {
    let g = g?;
    let mut all = Vec::new();
    for a in g
        .input_assessment()
        .map(|m| m.values())
        .into_iter()
        .flatten()
    {
        actions(a, &mut all);
    }
    for list in g
        .output_assessments()
        .map(|m| m.values())
        .into_iter()
        .flatten()
    {
        for a in list {
            actions(a, &mut all);
        }
    }
    if all.iter().any(|a| a == "BLOCKED") {
        Some(GuardrailOutcome::Blocked)
    } else if all.iter().any(|a| a == "ANONYMIZED") {
        Some(GuardrailOutcome::Masked)
    } else {
        None
    }
}

fn served_of(
    tier: Option<&bt::ServiceTier>,
    router: Option<&bt::PromptRouterTrace>,
    guardrail: Option<&bt::GuardrailTraceAssessment>,
) -> Served {
    Served {
        service_tier: tier_of(tier),
        invoked_model: router.and_then(|r| r.invoked_model_id()).map(str::to_owned),
        guardrail: guardrail_outcome(guardrail),
    }
}

fn citation_of(
    title: Option<&str>,
    quote: String,
    location: Option<&bt::CitationLocation>,
) -> Citation {
    let location = location.and_then(|l| {
        let (unit, index, start, end) = match l {
            bt::CitationLocation::DocumentChar(c) => {
                (CitationUnit::Char, c.document_index(), c.start(), c.end())
            }
            bt::CitationLocation::DocumentPage(p) => {
                (CitationUnit::Page, p.document_index(), p.start(), p.end())
            }
            bt::CitationLocation::DocumentChunk(c) => {
                (CitationUnit::Chunk, c.document_index(), c.start(), c.end())
            }
            _ => return None,
        };
        Some(CitationLocation {
            unit,
            document_index: as_u32(index),
            start: as_u32(start),
            end: as_u32(end),
        })
    });
    Citation {
        title: title.map(str::to_owned),
        quote,
        location,
        source: None,
    }
}

fn quote_of(parts: &[bt::CitationSourceContent]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            bt::CitationSourceContent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// One content block of an answer, and the citations it carries.
fn from_block(b: &bt::ContentBlock, citations: &mut Vec<Citation>) -> Option<ContentBlock> {
    match b {
        bt::ContentBlock::Text(t) => Some(ContentBlock::Text(t.clone())),
        bt::ContentBlock::ToolUse(t) => Some(ContentBlock::ToolUse {
            id: t.tool_use_id().to_owned(),
            name: t.name().to_owned(),
            input: to_json(t.input()),
        }),
        bt::ContentBlock::ReasoningContent(bt::ReasoningContentBlock::ReasoningText(r)) => {
            Some(ContentBlock::Reasoning {
                text: r.text().to_owned(),
                signature: r.signature().map(str::to_owned),
            })
        }
        bt::ContentBlock::ReasoningContent(bt::ReasoningContentBlock::RedactedContent(data)) => {
            Some(ContentBlock::RedactedReasoning(data.as_ref().to_vec()))
        }
        // Cited text is text of the answer; its citations are listed beside it.
        bt::ContentBlock::CitationsContent(c) => {
            citations.extend(
                c.citations()
                    .iter()
                    .map(|x| citation_of(x.title(), quote_of(x.source_content()), x.location())),
            );
            let text: String = c
                .content()
                .iter()
                .filter_map(|g| match g {
                    bt::CitationGeneratedContent::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            (!text.is_empty()).then_some(ContentBlock::Text(text))
        }
        _ => None,
    }
}

/// Maps a Converse answer back onto the core's types.
pub fn model_response(
    out: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput,
) -> ModelResponse {
    let mut citations = Vec::new();
    let content = match out.output() {
        Some(bt::ConverseOutput::Message(m)) => m
            .content()
            .iter()
            .filter_map(|b| from_block(b, &mut citations))
            .collect(),
        _ => Vec::new(),
    };
    let trace = out.trace();
    ModelResponse {
        content,
        stop_reason: StopReason::from_bedrock(out.stop_reason().as_str()),
        usage: usage_of(out.usage()),
        latency_ms: out
            .metrics()
            .map(|m| u64::try_from(m.latency_ms()).unwrap_or(0))
            .unwrap_or(0),
        citations,
        served: served_of(
            out.service_tier(),
            trace.and_then(|t| t.prompt_router()),
            trace.and_then(|t| t.guardrail()),
        ),
    }
}

pub(super) fn stream_event(e: bt::ConverseStreamOutput) -> Option<StreamEvent> {
    let index = |i: i32| u32::try_from(i).unwrap_or(0);
    match e {
        bt::ConverseStreamOutput::ContentBlockStart(s) => match s.start() {
            Some(bt::ContentBlockStart::ToolUse(t)) => Some(StreamEvent::ToolUseStart {
                index: index(s.content_block_index()),
                id: t.tool_use_id().to_owned(),
                name: t.name().to_owned(),
            }),
            _ => None,
        },
        bt::ConverseStreamOutput::ContentBlockDelta(d) => {
            let index = index(d.content_block_index());
            match d.delta() {
                Some(bt::ContentBlockDelta::Text(t)) => Some(StreamEvent::TextDelta {
                    index,
                    text: t.clone(),
                }),
                Some(bt::ContentBlockDelta::ToolUse(t)) => Some(StreamEvent::ToolUseDelta {
                    index,
                    input_json: t.input().to_owned(),
                }),
                Some(bt::ContentBlockDelta::ReasoningContent(r)) => match r {
                    bt::ReasoningContentBlockDelta::Text(t) => Some(StreamEvent::ReasoningDelta {
                        index,
                        text: t.clone(),
                    }),
                    bt::ReasoningContentBlockDelta::Signature(s) => {
                        Some(StreamEvent::ReasoningSignature {
                            index,
                            signature: s.clone(),
                        })
                    }
                    bt::ReasoningContentBlockDelta::RedactedContent(data) => {
                        Some(StreamEvent::RedactedReasoning {
                            index,
                            data: data.as_ref().to_vec(),
                        })
                    }
                    _ => None,
                },
                Some(bt::ContentBlockDelta::Citation(c)) => Some(StreamEvent::Citation {
                    index,
                    citation: citation_of(
                        c.title(),
                        c.source_content().iter().filter_map(|p| p.text()).collect(),
                        c.location(),
                    ),
                }),
                _ => None,
            }
        }
        bt::ConverseStreamOutput::ContentBlockStop(s) => Some(StreamEvent::BlockStop {
            index: index(s.content_block_index()),
        }),
        bt::ConverseStreamOutput::MessageStop(s) => Some(StreamEvent::MessageStop {
            stop_reason: StopReason::from_bedrock(s.stop_reason().as_str()),
        }),
        bt::ConverseStreamOutput::Metadata(m) => {
            let trace = m.trace();
            Some(StreamEvent::Metadata {
                usage: usage_of(m.usage()),
                latency_ms: m
                    .metrics()
                    .map(|x| u64::try_from(x.latency_ms()).unwrap_or(0))
                    .unwrap_or(0),
                served: served_of(
                    m.service_tier(),
                    trace.and_then(|t| t.prompt_router()),
                    trace.and_then(|t| t.guardrail()),
                ),
            })
        }
        _ => None,
    }
}
