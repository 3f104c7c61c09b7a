//! The stream as a fold: model events in, the deltas to forward and, at the end, the same
//! [`ModelResponse`] a whole answer would have had. Pure: no I/O, no clock, so it is tested
//! on any chunking of any text.

use serde_json::Value;

use super::StreamItem;
use crate::model::{
    Citation, ContentBlock, ModelResponse, Served, StopReason, StreamEvent, TokenUsage,
};
use crate::service::RESPOND_TOOL;

struct ToolCall {
    /// Bedrock's content block index.
    index: u32,
    /// Which tool call this is, from 0 (what OpenAI's `tool_calls[].index` counts, whatever
    /// text blocks come before).
    ordinal: u32,
    id: String,
    name: String,
    json: String,
}

pub struct Accumulator {
    /// The structured-output tool is hidden: its JSON is forwarded as text.
    hide_respond: bool,
    text: String,
    tools: Vec<ToolCall>,
    respond: Option<ToolCall>,
    usage: Option<TokenUsage>,
    stop: StopReason,
    latency_ms: u64,
    /// Content deltas seen: the output-token estimate when Bedrock reports no usage.
    deltas: u64,
    /// Reasoning blocks, in order: (block index, text, signature) or redacted data.
    reasoning: Vec<Reasoning>,
    citations: Vec<Citation>,
    served: Served,
}

enum Reasoning {
    Text {
        index: u32,
        text: String,
        signature: Option<String>,
    },
    Redacted(Vec<u8>),
}

impl Accumulator {
    pub fn new(hide_respond: bool) -> Self {
        Self {
            hide_respond,
            text: String::new(),
            tools: Vec::new(),
            respond: None,
            usage: None,
            stop: StopReason::EndTurn,
            latency_ms: 0,
            deltas: 0,
            reasoning: Vec::new(),
            citations: Vec::new(),
            served: Served::default(),
        }
    }

    /// Folds one event in; returns what to forward to the client, if anything.
    pub fn push(&mut self, event: StreamEvent) -> Option<StreamItem> {
        match event {
            StreamEvent::TextDelta { text, .. } => {
                self.deltas += 1;
                self.text.push_str(&text);
                Some(StreamItem::Text(text))
            }
            StreamEvent::ToolUseStart { index, id, name } => {
                let ordinal = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                let call = ToolCall {
                    index,
                    ordinal,
                    id: id.clone(),
                    name: name.clone(),
                    json: String::new(),
                };
                if self.hide_respond && name == RESPOND_TOOL && self.respond.is_none() {
                    self.respond = Some(call);
                    return None;
                }
                self.tools.push(call);
                Some(StreamItem::ToolStart {
                    index: ordinal,
                    id,
                    name,
                })
            }
            StreamEvent::ToolUseDelta { index, input_json } => {
                self.deltas += 1;
                if let Some(r) = self.respond.as_mut().filter(|r| r.index == index) {
                    r.json.push_str(&input_json);
                    return Some(StreamItem::Text(input_json));
                }
                let call = self.tools.iter_mut().find(|t| t.index == index)?;
                call.json.push_str(&input_json);
                Some(StreamItem::ToolDelta {
                    index: call.ordinal,
                    json: input_json,
                })
            }
            StreamEvent::ReasoningDelta { index, text } => {
                self.deltas += 1;
                match self.reasoning.last_mut() {
                    Some(Reasoning::Text {
                        index: i, text: t, ..
                    }) if *i == index => t.push_str(&text),
                    _ => self.reasoning.push(Reasoning::Text {
                        index,
                        text: text.clone(),
                        signature: None,
                    }),
                }
                Some(StreamItem::Reasoning(text))
            }
            StreamEvent::ReasoningSignature { index, signature } => {
                match self.reasoning.last_mut() {
                    Some(Reasoning::Text {
                        index: i,
                        signature: s,
                        ..
                    }) if *i == index => *s = Some(signature.clone()),
                    _ => self.reasoning.push(Reasoning::Text {
                        index,
                        text: String::new(),
                        signature: Some(signature.clone()),
                    }),
                }
                Some(StreamItem::ReasoningSigned(signature))
            }
            StreamEvent::RedactedReasoning { data, .. } => {
                self.reasoning.push(Reasoning::Redacted(data));
                None
            }
            StreamEvent::Citation { citation, .. } => {
                self.citations.push(citation);
                None
            }
            StreamEvent::BlockStop { .. } => None,
            StreamEvent::MessageStop { stop_reason } => {
                self.stop = stop_reason;
                None
            }
            StreamEvent::Metadata {
                usage,
                latency_ms,
                served,
            } => {
                self.usage = Some(usage);
                self.latency_ms = latency_ms;
                self.served.merge(served);
                None
            }
        }
    }

    /// The text so far (the structured-output tool's JSON is not text here).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Usage as Bedrock reported it (`None` until its metadata event).
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// What Bedrock reported about how the call was served.
    pub fn served(&self) -> &Served {
        &self.served
    }

    pub fn deltas(&self) -> u64 {
        self.deltas
    }

    /// Output tokens when Bedrock reported none: the larger of the deltas seen and the
    /// estimate from what they carried (text, structured output and tool arguments).
    pub fn output_estimate(&self) -> u64 {
        let chars = self.text.chars().count()
            + self.respond.as_ref().map_or(0, |r| r.json.chars().count())
            + self
                .tools
                .iter()
                .map(|t| t.json.chars().count())
                .sum::<usize>();
        self.deltas.max(chars.div_ceil(4) as u64)
    }

    /// The answer as a whole response, charged `usage`.
    pub fn into_response(self, usage: TokenUsage) -> ModelResponse {
        // Reasoning comes first, as in a whole answer.
        let mut content: Vec<ContentBlock> = self
            .reasoning
            .into_iter()
            .map(|r| match r {
                Reasoning::Text {
                    text, signature, ..
                } => ContentBlock::Reasoning { text, signature },
                Reasoning::Redacted(data) => ContentBlock::RedactedReasoning(data),
            })
            .collect();
        if !self.text.is_empty() {
            content.push(ContentBlock::Text(self.text));
        }
        let tool = |t: ToolCall| ContentBlock::ToolUse {
            id: t.id,
            name: t.name,
            // Not JSON: a null input, which a schema check reports.
            input: serde_json::from_str(&t.json).unwrap_or(Value::Null),
        };
        content.extend(self.respond.into_iter().map(tool));
        content.extend(self.tools.into_iter().map(tool));
        ModelResponse {
            content,
            stop_reason: self.stop,
            usage,
            latency_ms: self.latency_ms,
            citations: self.citations,
            served: self.served,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(text: &str, cuts: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        points.push(0);
        points.push(chars.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect())
            .collect()
    }

    fn forwarded_text(items: &[StreamItem]) -> String {
        items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_calls_are_counted_from_zero_whatever_comes_before() {
        let mut acc = Accumulator::new(false);
        let events = [
            StreamEvent::TextDelta {
                index: 0,
                text: "Let me look.".into(),
            },
            StreamEvent::BlockStop { index: 0 },
            StreamEvent::ToolUseStart {
                index: 1,
                id: "t1".into(),
                name: "a".into(),
            },
            StreamEvent::ToolUseDelta {
                index: 1,
                input_json: "{}".into(),
            },
            StreamEvent::ToolUseStart {
                index: 2,
                id: "t2".into(),
                name: "b".into(),
            },
            StreamEvent::ToolUseDelta {
                index: 2,
                input_json: "{}".into(),
            },
        ];
        let indexes: Vec<u32> = events
            .into_iter()
            .filter_map(|e| match acc.push(e)? {
                StreamItem::ToolStart { index, .. } | StreamItem::ToolDelta { index, .. } => {
                    Some(index)
                }
                _ => None,
            })
            .collect();
        assert_eq!(indexes, [0, 0, 1, 1]);
    }

    proptest! {
        #[test]
        fn any_chunking_of_text_folds_to_the_whole_text(text in "\\PC{0,200}", cuts in prop::collection::vec(0usize..400, 0..20)) {
            let mut acc = Accumulator::new(false);
            let mut out = Vec::new();
            for chunk in split(&text, &cuts) {
                out.extend(acc.push(StreamEvent::TextDelta { index: 0, text: chunk }));
            }
            prop_assert_eq!(forwarded_text(&out), text.clone());
            let response = acc.into_response(TokenUsage::default());
            prop_assert_eq!(response.text(), text);
        }

        #[test]
        fn any_chunking_of_tool_json_folds_to_the_tool_input(n in 0u32..1000, s in "[a-z ]{0,30}", cuts in prop::collection::vec(0usize..80, 0..10)) {
            let json = serde_json::json!({"n": n, "s": s}).to_string();
            for hide in [false, true] {
                let mut acc = Accumulator::new(hide);
                let mut out = Vec::new();
                out.extend(acc.push(StreamEvent::TextDelta { index: 0, text: "ok".into() }));
                out.extend(acc.push(StreamEvent::ToolUseStart { index: 1, id: "t1".into(), name: RESPOND_TOOL.into() }));
                for chunk in split(&json, &cuts) {
                    out.extend(acc.push(StreamEvent::ToolUseDelta { index: 1, input_json: chunk }));
                }
                out.extend(acc.push(StreamEvent::MessageStop { stop_reason: StopReason::ToolUse }));
                let response = acc.into_response(TokenUsage::default());
                let input = response.content.iter().find_map(|b| match b {
                    ContentBlock::ToolUse { input, .. } => Some(input.clone()),
                    _ => None,
                });
                prop_assert_eq!(input, Some(serde_json::json!({"n": n, "s": s.clone()})));
                // Hidden, the respond tool's JSON reaches the client as text after "ok".
                let starts = out.iter().filter(|i| matches!(i, StreamItem::ToolStart { .. })).count();
                prop_assert_eq!(starts, usize::from(!hide));
                if hide {
                    prop_assert_eq!(forwarded_text(&out), format!("ok{json}"));
                }
            }
        }
    }

    #[test]
    fn usage_and_stop_reason_come_from_their_events() {
        let mut acc = Accumulator::new(false);
        assert_eq!(acc.usage(), None);
        acc.push(StreamEvent::TextDelta {
            index: 0,
            text: "a".into(),
        });
        acc.push(StreamEvent::MessageStop {
            stop_reason: StopReason::MaxTokens,
        });
        let usage = TokenUsage {
            input: 3,
            output: 1,
            ..Default::default()
        };
        acc.push(StreamEvent::Metadata {
            usage,
            latency_ms: 7,
            served: Default::default(),
        });
        assert_eq!((acc.usage(), acc.deltas()), (Some(usage), 1));
        let r = acc.into_response(usage);
        assert_eq!((r.stop_reason, r.latency_ms), (StopReason::MaxTokens, 7));
    }

    #[test]
    fn a_delta_for_an_unknown_tool_is_dropped() {
        let mut acc = Accumulator::new(false);
        assert!(
            acc.push(StreamEvent::ToolUseDelta {
                index: 9,
                input_json: "{}".into()
            })
            .is_none()
        );
    }
}
