//! `POST /v1/chat`: Quarry's native chat API (its wire types are `quarry_http::native`).
//! A stream is `start`, `delta`s, then `done` (or `error`), each a named event.

use http::HeaderMap;
use quarry_core::Error;
use quarry_core::service::{Answer, StreamItem};
use quarry_http::native::{self, ChatRequest, StreamDelta, StreamDone};
use quarry_http::{ApiError, RequestMeta, parse_json};
use serde::Serialize;

use crate::routes::chat::{ChatApi, Parsed};
use crate::state::Options;
use crate::stream::{Dialect, Frame, Head, Progress};

/// The API of `POST /v1/chat`; its handler is `chat::<Native>`.
pub struct Native;

impl ChatApi for Native {
    const ROUTE: &'static str = "POST /v1/chat";

    fn parse(body: &[u8], _: &HeaderMap, options: &Options) -> Result<Parsed, Error> {
        let request: ChatRequest = parse_json(body)?;
        let (input, cache, stream) = request.into_input(&options.limits())?;
        Ok(Parsed {
            input,
            cache,
            stream,
            include_usage: true,
            legacy_functions: false,
        })
    }

    fn body<'a>(meta: &RequestMeta, answer: &'a Answer, _: bool) -> impl Serialize + 'a {
        native::response(&meta.request_id, answer, meta.elapsed_ms())
    }
}

impl Dialect for Native {
    type State = ();

    fn opening(head: &Head) -> Vec<Frame> {
        vec![Frame::json(Some("start"), &head.start())]
    }

    fn frames(head: &Head, _: &mut (), item: &StreamItem, progress: Progress<'_>) -> Vec<Frame> {
        match item {
            StreamItem::Text(text) => vec![Frame::json(Some("delta"), &StreamDelta { text })],
            // The signatures come with `done`, in `output.reasoning_parts`.
            StreamItem::ReasoningSigned(_) => Vec::new(),
            StreamItem::Reasoning(text) => {
                vec![Frame::json(Some("reasoning"), &StreamDelta { text })]
            }
            // The native API has no tools.
            StreamItem::ToolStart { .. } | StreamItem::ToolDelta { .. } => Vec::new(),
            StreamItem::Done(summary) => {
                let start = head.start();
                let done = StreamDone::new(&start, progress.text, summary, progress.elapsed_ms);
                vec![Frame::json(Some("done"), &done)]
            }
            StreamItem::Error(e) => vec![Frame::json(
                Some("error"),
                &ApiError::new(e.clone(), &head.request_id).body(),
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::model::StopReason;
    use serde_json::json;

    use super::*;
    use crate::stream::Fold;
    use crate::stream::testing::{data, done, head};

    /// However the text is cut, the deltas carry it in order and `done` carries all of it.
    #[test]
    fn a_stream_on_any_chunking() {
        for pieces in [
            vec!["Hello, world"],
            vec!["Hel", "lo, ", "wor", "ld"],
            vec!["", "Hello, world", ""],
        ] {
            let mut fold = Fold::<Native>::new(head(true));
            let opening = fold.opening();
            assert_eq!(opening.len(), 1);
            assert_eq!(opening[0].event, Some("start"));
            assert_eq!(
                data(&opening[0]),
                json!({"id": "r-1", "model": "m", "fallbacks": [], "cached": false, "prompt": null, "degraded_to": null})
            );
            let mut deltas = String::new();
            for p in &pieces {
                for f in fold.push(&StreamItem::Text((*p).into()), 1) {
                    assert_eq!(f.event, Some("delta"));
                    deltas.push_str(data(&f)["text"].as_str().unwrap());
                }
            }
            assert_eq!(deltas, "Hello, world");
            let done = fold.push(&done(StopReason::EndTurn), 9);
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].event, Some("done"));
            assert_eq!(
                data(&done[0]),
                json!({
                    "id": "r-1", "output": {"text": "Hello, world", "json": null, "reasoning_parts": [], "citations": []}, "model": "m",
                    "stop_reason": "end_turn", "fallbacks": [],
                    "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 5},
                    "cost_usd": null, "cost_status": "unpriced", "cached": false, "prompt": null,
                    "latency_ms": {"model": 5, "total": 9}, "guardrails": null, "degraded_to": null,
                    "service_tier": null,
                })
            );
            assert!(fold.finished());
            assert!(fold.push(&StreamItem::Text("late".into()), 10).is_empty());
        }
    }

    #[test]
    fn an_error_ends_the_stream_with_the_envelope() {
        let mut fold = Fold::<Native>::new(head(true));
        fold.push(&StreamItem::Text("partial".into()), 1);
        let frames = fold.push(
            &StreamItem::Error(Error::StreamInterrupted("stream_error".into())),
            2,
        );
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event, Some("error"));
        let body = data(&frames[0]);
        assert_eq!(body["error"]["type"], "stream_interrupted");
        assert_eq!(body["error"]["request_id"], "r-1");
        assert!(fold.finished());
    }
}
