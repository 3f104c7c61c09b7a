//! `POST /v1/chat/completions`: the OpenAI Chat Completions API (its wire types are
//! `quarry_http::openai`). A stream is unnamed `chat.completion.chunk` events, the usage
//! last when the client asks for it, then `data: [DONE]`, as the official clients expect.

use http::HeaderMap;
use quarry_core::Error;
use quarry_core::service::{Answer, CacheMode, StreamItem};
use quarry_http::openai::{
    ChunkHead, Completion, CompletionRequest, Delta, Extras, finish_reason, thinking_blocks,
    tier_name,
};
use quarry_http::{ApiError, RequestMeta, parse_json};
use serde::Serialize;

use crate::routes::chat::{ChatApi, Parsed};
use crate::state::Options;
use crate::stream::{Dialect, Frame, Head, Progress};

/// The API of `POST /v1/chat/completions`; its handler is `chat::<OpenAi>`.
pub struct OpenAi;

/// OpenAI's end of stream.
const DONE: &str = "[DONE]";

impl ChatApi for OpenAi {
    const ROUTE: &'static str = "POST /v1/chat/completions";
    const LINKS_IMAGES: bool = true;

    fn parse(body: &[u8], _: &HeaderMap, options: &Options) -> Result<Parsed, Error> {
        let request: CompletionRequest = parse_json(body)?;
        let p = request.into_input(&options.limits())?;
        Ok(Parsed {
            input: p.input,
            cache: CacheMode::Auto,
            stream: p.stream,
            include_usage: p.include_usage,
            legacy_functions: p.legacy_functions,
        })
    }

    fn body<'a>(
        meta: &RequestMeta,
        answer: &'a Answer,
        legacy_functions: bool,
    ) -> impl Serialize + 'a {
        let completion = Completion::new(&meta.request_id, answer);
        if legacy_functions {
            completion.in_legacy_shape()
        } else {
            completion
        }
    }
}

impl Dialect for OpenAi {
    type State = ();

    fn opening(head: &Head) -> Vec<Frame> {
        vec![Frame::json(
            None,
            &head.chunks().chunk(Delta::opening(), None),
        )]
    }

    fn frames(head: &Head, _: &mut (), item: &StreamItem, _: Progress<'_>) -> Vec<Frame> {
        let chunks = head.chunks();
        let delta = |delta: Delta<'_>| Frame::json(None, &chunks.chunk(delta, None));
        match item {
            StreamItem::Text(text) => vec![delta(Delta::text(text))],
            StreamItem::Reasoning(text) => vec![delta(Delta::reasoning(text))],
            // The signatures come on the last chunk, in `thinking_blocks`.
            StreamItem::ReasoningSigned(_) => Vec::new(),
            // Legacy function calling carries one call: the first.
            StreamItem::ToolStart { index, name, .. } if head.legacy_functions => match index {
                0 => vec![delta(Delta::function(Some(name), ""))],
                _ => Vec::new(),
            },
            StreamItem::ToolDelta { index, json } if head.legacy_functions => match index {
                0 => vec![delta(Delta::function(None, json))],
                _ => Vec::new(),
            },
            StreamItem::ToolStart { index, id, name } => {
                vec![delta(Delta::tool_start(*index, id, name))]
            }
            StreamItem::ToolDelta { index, json } => {
                vec![delta(Delta::tool_arguments(*index, json))]
            }
            StreamItem::Done(summary) => {
                let finish = match finish_reason(&summary.stop_reason) {
                    "tool_calls" if head.legacy_functions => "function_call",
                    other => other,
                };
                let chunks = ChunkHead {
                    service_tier: tier_name(&summary.served),
                    ..chunks
                };
                // The last chunk carries what the deltas could not: the reasoning's
                // signatures (to send back next turn) and the citations.
                let last = Delta {
                    thinking_blocks: thinking_blocks(&summary.reasoning),
                    citations: &summary.citations,
                    ..Delta::default()
                };
                let mut frames = vec![Frame::json(None, &chunks.chunk(last, Some(finish)))];
                if head.include_usage {
                    let extras = Extras::new(
                        summary.cost,
                        head.cached,
                        head.fallbacks.clone(),
                        head.retrieval.as_ref(),
                        summary.grounding.as_ref(),
                    );
                    frames.push(Frame::json(None, &chunks.usage(&summary.usage, extras)));
                }
                frames.push(Frame::raw(DONE));
                frames
            }
            StreamItem::Error(e) => vec![
                Frame::json(None, &ApiError::new(e.clone(), &head.request_id).body()),
                Frame::raw(DONE),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::model::StopReason;
    use serde_json::Value;

    use super::*;
    use crate::stream::Fold;
    use crate::stream::testing::{data, done, head};

    #[test]
    fn chunks_then_finish_usage_and_done() {
        let mut fold = Fold::<OpenAi>::new(head(true));
        let opening = fold.opening();
        assert_eq!(
            data(&opening[0])["choices"][0]["delta"]["role"],
            "assistant"
        );
        let text = fold.push(&StreamItem::Text("hi".into()), 1);
        assert_eq!(data(&text[0])["choices"][0]["delta"]["content"], "hi");
        assert_eq!(data(&text[0])["id"], "chatcmpl-r-1");
        let end = fold.push(&done(StopReason::EndTurn), 2);
        assert_eq!(end.len(), 3);
        assert_eq!(data(&end[0])["choices"][0]["finish_reason"], "stop");
        assert_eq!(data(&end[1])["choices"], Value::Array(Vec::new()));
        assert_eq!(data(&end[1])["usage"]["total_tokens"], 5);
        assert_eq!(end[2], Frame::raw("[DONE]"));
        assert!(end.iter().all(|f| f.event.is_none()));
    }

    #[test]
    fn tool_calls_stream_and_usage_only_when_asked() {
        let mut fold = Fold::<OpenAi>::new(head(false));
        let start = fold.push(
            &StreamItem::ToolStart {
                index: 0,
                id: "t1".into(),
                name: "get_weather".into(),
            },
            1,
        );
        let call = &data(&start[0])["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["type"], "function");
        let args = fold.push(
            &StreamItem::ToolDelta {
                index: 0,
                json: "{}".into(),
            },
            2,
        );
        assert_eq!(
            data(&args[0])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        let end = fold.push(&done(StopReason::ToolUse), 3);
        assert_eq!(end.len(), 2);
        assert_eq!(data(&end[0])["choices"][0]["finish_reason"], "tool_calls");
    }
}
