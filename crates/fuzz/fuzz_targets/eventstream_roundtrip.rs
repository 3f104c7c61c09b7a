//! The emulator's event-stream encoder (`bedrock_emulator::eventstream::{event, exception}`)
//! against the decoder the AWS SDK uses (aws-smithy-eventstream, `MessageFrameDecoder` fed
//! through a `SegmentedBuf` as the SDK's receiver does, and `read_message_from`).
//!
//! Input: a mode byte, then
//! - mode 0 (event) / 2 (exception): an event type (a `Reader` string), then the payload: the
//!   rest of the input, as JSON when it parses, else as a JSON string. Property:
//!   decode(encode(x)) == x, whole and fed in small chunks.
//! - mode 1 (decoder): a chunking seed byte, then arbitrary bytes. Properties: never a panic;
//!   the same messages and the same outcome however the bytes are chunked; `read_message_from`
//!   agrees with the streaming decoder on the first frame; a decoded frame re-encodes to the
//!   exact bytes it came from.

#![no_main]

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use aws_smithy_eventstream::frame::{
    DecodedFrame, MessageFrameDecoder, read_message_from, write_message_to,
};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bedrock_emulator::eventstream::{event, exception};
use bytes::{Buf, Bytes};
use bytes_utils::SegmentedBuf;
use libfuzzer_sys::fuzz_target;
use quarry_fuzz::{Reader, has_float};
use serde_json::Value;

/// The encoder's limit on a string header value.
const MAX_HEADER_VALUE_LEN: usize = i16::MAX as usize;

/// `event` takes a `&'static str` event type: fuzzed ones are interned, kept reachable (so
/// not leaks), up to 16 MiB of them. run.sh turns libFuzzer's per-input leak check off for
/// this target: an interned name is a malloc without a free, which would make it scan the
/// whole heap after each new name.
fn intern(s: &str) -> Option<&'static str> {
    static SEEN: Mutex<(BTreeSet<&'static str>, usize)> = Mutex::new((BTreeSet::new(), 0));
    let mut guard = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let (seen, bytes) = &mut *guard;
    if let Some(t) = seen.get(s) {
        return Some(*t);
    }
    if *bytes + s.len() > 16 << 20 {
        return None;
    }
    let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(t);
    *bytes += s.len() + 16;
    Some(t)
}

#[derive(Debug, PartialEq)]
enum End {
    /// All input consumed, with the bytes left over (an incomplete frame).
    Done {
        leftover: usize,
    },
    Error(String),
}

/// Decodes `data` delivered in chunks of the given sizes (the last chunk takes the rest), the
/// way the SDK's `Receiver` does: decode while buffered data remains, else take a chunk.
fn stream(data: &[u8], mut sizes: impl FnMut() -> usize) -> (Vec<Message>, End) {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf: SegmentedBuf<Bytes> = SegmentedBuf::new();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        while buf.has_remaining() {
            match decoder.decode_frame(&mut buf) {
                Ok(DecodedFrame::Complete(m)) => out.push(m),
                Ok(DecodedFrame::Incomplete) => break,
                Err(e) => return (out, End::Error(e.to_string())),
            }
        }
        if pos == data.len() {
            return (
                out,
                End::Done {
                    leftover: buf.remaining(),
                },
            );
        }
        let n = sizes().clamp(1, data.len() - pos);
        buf.push(Bytes::copy_from_slice(&data[pos..pos + n]));
        pos += n;
    }
}

fn whole(data: &[u8]) -> (Vec<Message>, End) {
    stream(data, || usize::MAX)
}

fn chunked(data: &[u8], seed: u8) -> (Vec<Message>, End) {
    let mut x = u32::from(seed);
    stream(data, move || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + ((x >> 16) % 32) as usize
    })
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write_message_to(m, &mut out).ok().map(|()| out)
}

fn header<'m>(m: &'m Message, name: &str) -> Option<&'m str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

fn check_frame(frame: &Bytes, kind: &str, type_header: &str, type_value: &str, payload: &Value) {
    let decoded = read_message_from(frame.clone()).expect("an encoded frame decodes");
    let names: Vec<&str> = decoded
        .headers()
        .iter()
        .map(|h| h.name().as_str())
        .collect();
    assert_eq!(names, [type_header, ":content-type", ":message-type"]);
    assert_eq!(header(&decoded, type_header), Some(type_value));
    assert_eq!(header(&decoded, ":content-type"), Some("application/json"));
    assert_eq!(header(&decoded, ":message-type"), Some(kind));
    assert_eq!(decoded.payload().as_ref(), payload.to_string().as_bytes());
    let back: Value = serde_json::from_slice(decoded.payload()).expect("the payload is JSON");
    if !has_float(payload) {
        assert_eq!(&back, payload);
    }
    // The SDK reads frames off the wire in pieces (of 1 to 16 bytes here).
    let size = 1 + frame.len() % 16;
    let (messages, end) = stream(frame, || size);
    assert_eq!(end, End::Done { leftover: 0 });
    assert_eq!(messages, [decoded]);
}

fn roundtrip(r: &mut Reader, exception_frame: bool) {
    let name = r.string();
    let rest = r.rest();
    let payload: Value = serde_json::from_slice(rest)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
    let Some(name) = intern(&name) else {
        return;
    };
    if exception_frame {
        let message = payload.to_string();
        let frame = exception(name, &message);
        if name.len() > MAX_HEADER_VALUE_LEN {
            assert!(frame.is_empty());
            return;
        }
        let expected = serde_json::json!({ "message": message });
        check_frame(&frame, "exception", ":exception-type", name, &expected);
    } else {
        let frame = event(name, &payload);
        if name.len() > MAX_HEADER_VALUE_LEN {
            assert!(frame.is_empty());
            return;
        }
        check_frame(&frame, "event", ":event-type", name, &payload);
    }
}

fn decode_arbitrary(r: &mut Reader) {
    let seed = r.byte();
    let data = r.rest();
    let (messages, end) = whole(data);
    let (messages2, end2) = chunked(data, seed);
    assert_eq!(messages, messages2, "chunking changed the messages");
    assert_eq!(end, end2, "chunking changed the outcome");

    // read_message_from agrees with the streaming decoder on the first frame.
    match (read_message_from(data), messages.first()) {
        (Ok(m), Some(first)) => assert_eq!(&m, first),
        (Ok(m), None) => panic!("read_message_from decoded {m:?}, the stream decoder nothing"),
        (Err(e), Some(first)) => panic!("read_message_from failed ({e}), stream gave {first:?}"),
        (Err(_), None) => {}
    }

    // A decoded frame re-encodes to the bytes it came from.
    let mut offset = 0;
    for m in &messages {
        let total = u32::from_be_bytes([
            data[offset],
            data[offset + 1],
            data[offset + 2],
            data[offset + 3],
        ]) as usize;
        let original = &data[offset..offset + total];
        match encode(m) {
            Some(bytes) => assert_eq!(bytes, original, "re-encoding changed the frame"),
            None => assert!(
                m.headers().iter().any(|h| match h.value() {
                    HeaderValue::String(s) => s.as_str().len() > MAX_HEADER_VALUE_LEN,
                    HeaderValue::ByteArray(b) => b.len() > MAX_HEADER_VALUE_LEN,
                    _ => false,
                }),
                "a decoded frame cannot be encoded: {m:?}"
            ),
        }
        offset += total;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    match r.byte() % 3 {
        0 => roundtrip(&mut r, false),
        1 => decode_arbitrary(&mut r),
        _ => roundtrip(&mut r, true),
    }
});
