//! The batch worker's SQS message parser, `batch_worker::message::parse`.
//!
//! Properties: never a panic; `Ok` or a typed `Invalid` with a reason; IDs recovered from an
//! invalid message are valid IDs taken from the body; an accepted message satisfies the
//! rules of `infra/batch-message.schema.json` (IDs, exclusive fields, parameter ranges), and serialized then parsed again gives the same message (numbers that
//! are not integers within the precision of serde_json's float parser).

#![no_main]

use batch_worker::message::{BatchMessage, SCHEMA_VERSION, parse};
use libfuzzer_sys::fuzz_target;
use quarry_fuzz::has_float;
use serde_json::Value;

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Equal, with floats compared to a relative 1e-15 (serde_json's default float parsing is
/// not guaranteed to round-trip the last bit).
fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && json_close(va, vb))
        }
        _ => a == b,
    }
}

fn check_valid(m: &BatchMessage, body: &Value) {
    assert_eq!(m.schema_version, SCHEMA_VERSION);
    assert!(id_ok(&m.job_id) && id_ok(&m.item_id) && id_ok(&m.tenant));
    assert!(m.prompt.is_some() || !m.messages.is_empty());
    assert!(!(m.version.is_some() && m.label.is_some()));
    assert!(!(m.tier.is_some() && m.model.is_some()));
    // The ranges of infra/batch-message.schema.json.
    for v in [m.temperature, m.top_p].into_iter().flatten() {
        assert!(
            (0.0..=1.0).contains(&v),
            "{v} accepted as temperature or top_p"
        );
    }
    assert_ne!(m.max_tokens, Some(0));
    assert!(m.stop.iter().all(|s| !s.is_empty()));
    assert_eq!(
        body.get("job_id").and_then(Value::as_str),
        Some(m.job_id.as_str())
    );
    assert_eq!(
        body.get("tenant").and_then(Value::as_str),
        Some(m.tenant.as_str())
    );
}

fuzz_target!(|data: &[u8]| {
    // An SQS body is a string.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let parsed_json: Option<Value> = serde_json::from_str(body).ok();
    let message = match parse(body) {
        Ok(m) => m,
        Err(invalid) => {
            assert!(!invalid.reason.is_empty());
            if let Some(ids) = &invalid.ids {
                let json = parsed_json.expect("IDs recovered from a body that is not JSON");
                assert!(id_ok(&ids.job_id) && id_ok(&ids.item_id) && id_ok(&ids.tenant));
                assert_eq!(
                    json.get("job_id").and_then(Value::as_str),
                    Some(ids.job_id.as_str())
                );
                assert_eq!(
                    json.get("item_id").and_then(Value::as_str),
                    Some(ids.item_id.as_str())
                );
                assert_eq!(
                    json.get("tenant").and_then(Value::as_str),
                    Some(ids.tenant.as_str())
                );
            }
            return;
        }
    };
    let json = parsed_json.expect("a body that is not JSON was accepted");
    check_valid(&message, &json);

    // Round trip: what the API or the CLI would enqueue for this message parses back to it.
    let text = serde_json::to_string(&message).expect("a parsed message serializes");
    let again =
        parse(&text).unwrap_or_else(|e| panic!("re-serialized message refused: {e}\n{text}"));
    let floats = message.variables.values().any(has_float)
        || message.output_schema.as_ref().is_some_and(has_float);
    if floats {
        let a = serde_json::to_value(&message).expect("serializes");
        let b = serde_json::to_value(&again).expect("serializes");
        assert!(
            json_close(&a, &b),
            "round trip changed the message:\n{a}\n{b}"
        );
    } else {
        assert_eq!(message, again, "round trip changed the message");
    }

    // The domain input keeps every message (system ones become system text).
    let count = message.messages.len();
    let input = message.into_input();
    assert_eq!(input.system.len() + input.messages.len(), count);
});
