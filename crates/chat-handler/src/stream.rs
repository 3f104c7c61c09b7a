//! Streamed answers as Server-Sent Events.
//!
//! ## Overview
//!
//! A stream is a fold: [`Fold`] takes the service's [`StreamItem`]s one at a time and turns
//! each into the [`Frame`]s of the chat API asking (its [`Dialect`]), keeping only the text so
//! far. It does no I/O, so it can be tested on any sequence of items. [`respond`] is the thin
//! driver around it: it opens the stream with the API's opening frames (they leave with the
//! first token, which the service has already waited for), writes the request's log line
//! when the stream ends however it ends, and hands the frames to axum's [`Sse`], which sends
//! a keep-alive comment when the model is silent for a while (long reasoning, a slow
//! fallback), so proxies and clients do not take the silence for a dead connection.
//!
//! Errors before the first token are plain JSON errors (the status line is still unsent);
//! after it, an error ends the stream with the API's error frame.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::future::ready;
use futures::stream;
use http::HeaderValue;
use quarry_core::Error;
use quarry_core::service::{AnswerStream, StreamItem};
use quarry_http::RequestMeta;
use quarry_http::native::{FallbackOut, PromptInfo, StreamStart};
use quarry_http::openai::{ChunkHead, completion_id, now_secs};
use serde::Serialize;

use crate::observe::RequestLog;
use crate::routes::Shared;

/// Silence after which a comment keeps the connection visibly alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One server-sent event: an optional name and one line of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<&'static str>,
    pub data: String,
}

impl Frame {
    /// A frame whose data is `value` as JSON.
    pub fn json(event: Option<&'static str>, value: &impl Serialize) -> Self {
        let data = serde_json::to_string(value).unwrap_or_else(|e| {
            // The wire types serialize infallibly; should one ever fail, the client still
            // gets a frame it can parse, and the log says why.
            tracing::error!(error = %e, "stream frame not serializable");
            r#"{"error":{"type":"internal_error","message":"a stream frame could not be written","request_id":""}}"#.to_owned()
        });
        Self { event, data }
    }

    /// A frame of raw data (OpenAI's `[DONE]`).
    pub fn raw(data: &str) -> Self {
        Self {
            event: None,
            data: data.to_owned(),
        }
    }

    fn into_event(self) -> Event {
        let event = Event::default();
        let event = match self.event {
            Some(name) => event.event(name),
            None => event,
        };
        event.data(self.data)
    }
}

/// What is known about a stream when its first token arrives; every frame may repeat it.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub request_id: String,
    /// The OpenAI completion ID (`chatcmpl-...`).
    pub completion_id: String,
    pub created: u64,
    pub model: String,
    pub fallbacks: Vec<FallbackOut>,
    pub cached: bool,
    pub prompt: Option<PromptInfo>,
    pub degraded_to: Option<String>,
    /// OpenAI's `stream_options.include_usage`.
    pub include_usage: bool,
    /// OpenAI's legacy function calling: the call streams as `function_call`.
    pub legacy_functions: bool,
    /// What retrieval gave the model.
    pub retrieval: Option<quarry_core::retrieval::RetrievalOutcome>,
}

impl Head {
    pub fn new(
        request_id: &str,
        stream: &AnswerStream,
        include_usage: bool,
        legacy_functions: bool,
    ) -> Self {
        Self {
            request_id: request_id.to_owned(),
            completion_id: completion_id(request_id),
            created: now_secs(),
            model: stream.model.clone(),
            fallbacks: stream.fallbacks.iter().map(FallbackOut::from).collect(),
            cached: stream.cached,
            prompt: stream.prompt.as_ref().map(PromptInfo::from),
            degraded_to: stream.degraded_to.clone(),
            include_usage,
            legacy_functions,
            retrieval: stream.retrieval.clone(),
        }
    }

    /// The native API's `start` event.
    pub fn start(&self) -> StreamStart<'_> {
        StreamStart {
            id: &self.request_id,
            model: &self.model,
            fallbacks: &self.fallbacks,
            cached: self.cached,
            prompt: self.prompt.as_ref(),
            degraded_to: self.degraded_to.as_deref(),
            sources: quarry_http::sources::sources(self.retrieval.as_ref()),
            retrieval: self
                .retrieval
                .as_ref()
                .map(quarry_http::sources::RetrievalSummary::of),
        }
    }

    /// What every OpenAI chunk repeats.
    pub fn chunks(&self) -> ChunkHead<'_> {
        ChunkHead {
            id: &self.completion_id,
            created: self.created,
            model: &self.model,
            // Known once Bedrock reports it: the last chunks say the tier that served.
            service_tier: "default",
        }
    }
}

/// Where a stream stands when an item arrives.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The text of every item so far, this one included.
    pub text: &'a str,
    /// Since the request arrived.
    pub elapsed_ms: u64,
}

/// How a chat API writes a stream.
pub trait Dialect {
    /// What the API tracks from one item to the next (the Messages API numbers its blocks).
    type State: Default + Send;
    /// Sent first, with the first token.
    fn opening(head: &Head) -> Vec<Frame>;
    /// The frames of one item.
    fn frames(
        head: &Head,
        state: &mut Self::State,
        item: &StreamItem,
        progress: Progress<'_>,
    ) -> Vec<Frame>;
}

/// Items in, frames out. The stream is over after a summary or an error; nothing follows.
pub struct Fold<D: Dialect> {
    head: Head,
    text: String,
    finished: bool,
    state: D::State,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Fold<D> {
    pub fn new(head: Head) -> Self {
        Self {
            head,
            text: String::new(),
            finished: false,
            state: D::State::default(),
            dialect: PhantomData,
        }
    }

    pub fn opening(&self) -> Vec<Frame> {
        D::opening(&self.head)
    }

    pub fn push(&mut self, item: &StreamItem, elapsed_ms: u64) -> Vec<Frame> {
        if self.finished {
            return Vec::new();
        }
        match item {
            StreamItem::Text(t) => self.text.push_str(t),
            StreamItem::Done(_) | StreamItem::Error(_) => self.finished = true,
            StreamItem::ToolStart { .. }
            | StreamItem::ToolDelta { .. }
            | StreamItem::Reasoning(_)
            | StreamItem::ReasoningSigned(_) => {}
        }
        let progress = Progress {
            text: &self.text,
            elapsed_ms,
        };
        D::frames(&self.head, &mut self.state, item, progress)
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The fold, and what is needed to write the request's line when it ends.
struct Run<D: Dialect> {
    fold: Fold<D>,
    log: Option<RequestLog>,
    state: Shared,
    meta: RequestMeta,
}

impl<D: Dialect> Run<D> {
    /// The frames of the next item; `None` (the producer is done) ends a stream that never
    /// got its summary with an error frame. Returns `None` once the stream is over.
    fn step(&mut self, item: Option<StreamItem>) -> Option<Vec<Frame>> {
        if self.fold.finished() {
            return None;
        }
        // The producer ended without a summary: its task died.
        let item = item
            .unwrap_or_else(|| StreamItem::Error(Error::Internal("the stream ended early".into())));
        let frames = self.fold.push(&item, self.meta.elapsed_ms());
        match &item {
            StreamItem::Done(summary) => self.close(|log| log.streamed(summary), None),
            StreamItem::Error(e) => self.close(|_| {}, Some(e)),
            _ => {}
        }
        Some(frames)
    }

    fn close(&mut self, fill: impl FnOnce(&mut RequestLog), error: Option<&Error>) {
        if let Some(mut log) = self.log.take() {
            fill(&mut log);
            log.output(self.fold.text(), self.state.options.log_content);
            log.close(&self.state, &self.meta, error);
        }
    }
}

/// The SSE response of a stream whose first token has arrived.
pub fn respond<D: Dialect + Send + 'static>(
    state: Shared,
    meta: RequestMeta,
    mut log: RequestLog,
    answer: AnswerStream,
    include_usage: bool,
    legacy_functions: bool,
) -> Response {
    log.streaming(&answer);
    let fold = Fold::<D>::new(Head::new(
        &meta.request_id,
        &answer,
        include_usage,
        legacy_functions,
    ));
    let opening = fold.opening();
    let request_id = meta.request_id.clone();
    let run = Run {
        fold,
        log: Some(log),
        state,
        meta,
    };
    let items = answer.events.map(Some).chain(stream::once(ready(None)));
    let frames = items
        .scan(run, |run, item| ready(run.step(item)))
        .flat_map(stream::iter);
    sse(stream::iter(opening).chain(frames), &request_id, KEEP_ALIVE)
}

/// Frames as an SSE response, with a comment after `keep_alive` of silence.
fn sse(
    frames: impl futures::Stream<Item = Frame> + Send + 'static,
    request_id: &str,
    keep_alive: Duration,
) -> Response {
    let events = frames.map(|frame| Ok::<_, Infallible>(frame.into_event()));
    let keep_alive = KeepAlive::new().interval(keep_alive).text("keep-alive");
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    let headers = response.headers_mut();
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// Streams to fold in tests.
#[cfg(test)]
pub(crate) mod testing {
    use quarry_core::guardrails::Findings;
    use quarry_core::model::{StopReason, TokenUsage};
    use quarry_core::service::{StreamItem, StreamSummary};
    use serde_json::Value;

    use super::{Frame, Head};

    pub fn head(include_usage: bool) -> Head {
        Head {
            request_id: "r-1".into(),
            completion_id: "chatcmpl-r-1".into(),
            created: 7,
            model: "m".into(),
            fallbacks: Vec::new(),
            cached: false,
            prompt: None,
            degraded_to: None,
            include_usage,
            legacy_functions: false,
            retrieval: None,
        }
    }

    /// The summary of an unpriced answer of 3 tokens in, 2 out.
    pub fn done(stop_reason: StopReason) -> StreamItem {
        StreamItem::Done(Box::new(StreamSummary {
            stop_reason,
            usage: TokenUsage {
                input: 3,
                output: 2,
                cache_read: 0,
                cache_write: 0,
                cache_write_1h: 0,
            },
            cost: None,
            json: None,
            guardrails: Findings::default(),
            model_latency_ms: 5,
            reasoning: Vec::new(),
            citations: Vec::new(),
            served: Default::default(),
            grounding: None,
        }))
    }

    pub fn data(frame: &Frame) -> Value {
        serde_json::from_str(&frame.data).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_on_the_wire_with_keep_alive_in_the_silences() {
        let first = stream::iter(vec![
            Frame::json(Some("start"), &serde_json::json!({"id": "r-1"})),
            Frame::json(None, &serde_json::json!({"n": 1})),
        ]);
        let late = stream::once(async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Frame::raw("[DONE]")
        });
        let response = sse(first.chain(late), "r-1", Duration::from_millis(50));
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        assert_eq!(response.headers()["x-request-id"], "r-1");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let opening = "event: start\ndata: {\"id\":\"r-1\"}\n\ndata: {\"n\":1}\n\n";
        assert!(body.starts_with(opening), "{body:?}");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body:?}");
        let silence = &body[opening.len()..body.len() - "data: [DONE]\n\n".len()];
        assert!(silence.starts_with(": keep-alive\n\n"), "{body:?}");
        assert_eq!(silence.replace(": keep-alive\n\n", ""), "", "{body:?}");
    }
}
