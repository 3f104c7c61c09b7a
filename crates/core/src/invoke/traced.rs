//! A stream's attempt span, kept open until the stream ends: a streamed call's usage and
//! stop reason arrive with its last events, long after the first token ended the attempt's
//! retry loop.

use futures::StreamExt;
use tracing::Span;

use crate::model::{ModelStream, StopReason, StreamEvent, TokenUsage};

/// What the span records when the stream ends.
struct Seen {
    span: Span,
    usage: Option<TokenUsage>,
    stop: Option<StopReason>,
}

impl Seen {
    fn see(&mut self, item: &Result<StreamEvent, crate::model::ModelError>) {
        match item {
            Ok(StreamEvent::Metadata { usage, .. }) => self.usage = Some(*usage),
            Ok(StreamEvent::MessageStop { stop_reason }) => self.stop = Some(stop_reason.clone()),
            Ok(_) => {}
            Err(e) => crate::trace::failed(&self.span, e.kind.as_str()),
        }
    }
}

impl Drop for Seen {
    /// Ended or dropped (a client that went away): what was seen is recorded, then the span
    /// closes with it. The response model was recorded when the stream opened.
    fn drop(&mut self) {
        if let Some(usage) = &self.usage {
            crate::trace::usage(&self.span, usage, self.stop.as_ref());
        }
    }
}

/// `stream`, holding `span` until it ends (or is dropped).
pub(super) fn until_end(stream: ModelStream, span: Span) -> ModelStream {
    let mut seen = Seen {
        span,
        usage: None,
        stop: None,
    };
    Box::pin(stream.inspect(move |item| seen.see(item)))
}
