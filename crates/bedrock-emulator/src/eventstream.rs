//! `application/vnd.amazon.eventstream` framing (prelude, headers, prelude CRC, message CRC),
//! encoded by aws-smithy-eventstream, the same crate the SDK decodes with.

use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// One frame of a scripted stream and the delay before it leaves.
#[derive(Debug, Clone)]
pub struct Step {
    pub delay: Duration,
    pub frame: Bytes,
    /// Content deltas count towards a mid-stream fault.
    pub is_delta: bool,
}

fn encode(message: &Message) -> Bytes {
    let mut buf = Vec::with_capacity(message.payload().len() + 96);
    // Encoding only fails for headers or payloads beyond the format's limits (16 MB),
    // which generated output never reaches; an empty frame is dropped by the decoder's CRC
    // check rather than crashing the server.
    match write_message_to(message, &mut buf) {
        Ok(()) => Bytes::from(buf),
        Err(e) => {
            tracing::error!(error = %e, "event-stream frame could not be encoded");
            Bytes::new()
        }
    }
}

/// An event frame (`:message-type: event`).
pub fn event(event_type: &'static str, payload: &serde_json::Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    encode(&message)
}

/// An exception frame (`:message-type: exception`), as Bedrock sends after HTTP 200.
pub fn exception(member: &'static str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message });
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(member.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ));
    encode(&message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_round_trip_through_the_decoder() {
        let frame = event("messageStart", &serde_json::json!({"role": "assistant"}));
        let message = read_message_from(frame).unwrap();
        assert_eq!(message.payload().as_ref(), br#"{"role":"assistant"}"#);
        let kinds: Vec<_> = message
            .headers()
            .iter()
            .map(|h| h.name().as_str().to_owned())
            .collect();
        assert!(kinds.contains(&":event-type".to_owned()));
    }

    #[test]
    fn corrupt_frame_fails_crc() {
        let frame = event(
            "messageStop",
            &serde_json::json!({"stopReason": "end_turn"}),
        );
        let mut bytes = frame.to_vec();
        let last = bytes.len() - 5;
        bytes[last] ^= 0xff;
        assert!(read_message_from(Bytes::from(bytes)).is_err());
    }
}
