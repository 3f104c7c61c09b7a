//! Reversible masking (the `mask` action): each sensitive value in the input is replaced by a
//! stable placeholder such as `[CUSTOMER_ID_1]`, the model sees only placeholders, and the
//! answer has them restored before it reaches the client.
//!
//! - **Stable.** The same value gets the same placeholder everywhere in the request (the
//!   same characters: `１２３` and `123` are two values, so each comes back exactly as the
//!   client wrote it); two requests with the same
//!   question and different values are masked to the same text, so they share a cache entry
//!   without sharing a value.
//! - **Only in memory.** [`Masks`] lives with the request and is dropped with it; its `Debug`
//!   shows a count, never a value, so no log line, cache entry or audit record can carry one.
//! - **Never half a placeholder.** A stream is restored by a [`Restorer`], which holds back a
//!   tail that may be the start of a placeholder until it knows.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// The placeholders of one request and the values they stand for.
#[derive(Default, Clone)]
pub struct Masks {
    /// Placeholder -> original value.
    values: HashMap<String, String>,
    /// (label, value) -> placeholder.
    issued: HashMap<(String, String), String>,
    /// Placeholders issued per label, for the next number.
    counts: HashMap<String, u32>,
    /// The longest placeholder issued (how much a stream must hold back).
    longest: usize,
}

impl fmt::Debug for Masks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masks({} values)", self.values.len())
    }
}

impl Masks {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The placeholder for a value found under `label`.
    pub(super) fn placeholder(&mut self, label: &str, original: &str) -> String {
        let key = (label.to_owned(), original.to_owned());
        if let Some(p) = self.issued.get(&key) {
            return p.clone();
        }
        let n = self.counts.entry(label.to_owned()).or_default();
        *n += 1;
        let placeholder = format!("[{label}_{n}]");
        self.longest = self.longest.max(placeholder.len());
        self.values.insert(placeholder.clone(), original.to_owned());
        self.issued.insert(key, placeholder.clone());
        placeholder
    }

    /// The text with every placeholder of this request replaced by its value.
    pub fn restore(&self, text: &str) -> String {
        if self.values.is_empty() || !text.contains('[') {
            return text.to_owned();
        }
        let Some(placeholder) = placeholder_regex() else {
            return text.to_owned();
        };
        placeholder
            .replace_all(text, |c: &regex::Captures<'_>| {
                let whole = c.get(0).map_or("", |m| m.as_str());
                self.values
                    .get(whole)
                    .cloned()
                    .unwrap_or_else(|| whole.to_owned())
            })
            .into_owned()
    }

    /// Every string of a JSON value (keys included) restored.
    pub fn restore_json(&self, value: &mut Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            Value::String(s) => *s = self.restore(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.restore_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.restore_json(&mut v);
                    map.insert(self.restore(&k), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// JSON text (a tool call's arguments) restored: parsed and restored string by string,
    /// so a value with quotes or backslashes stays valid JSON; text that is not JSON is
    /// restored as text.
    pub fn restore_json_text(&self, json: &str) -> String {
        if self.values.is_empty() {
            return json.to_owned();
        }
        match serde_json::from_str::<Value>(json) {
            Ok(mut v) => {
                self.restore_json(&mut v);
                v.to_string()
            }
            Err(_) => self.restore(json),
        }
    }
}

/// `[LABEL_N]`: what [`Masks::placeholder`] issues.
fn placeholder_regex() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"\[[A-Z][A-Z0-9_]*_[0-9]+\]").ok())
        .as_ref()
}

/// Restores a streamed text delta by delta, never releasing the start of a placeholder
/// before its end has arrived.
pub struct Restorer {
    masks: Masks,
    held: String,
}

impl Restorer {
    pub fn new(masks: Masks) -> Self {
        Self {
            masks,
            held: String::new(),
        }
    }

    /// A delta in; the restored text that can be sent now (maybe empty).
    pub fn push(&mut self, delta: String) -> String {
        if self.masks.is_empty() {
            return delta;
        }
        self.held.push_str(&delta);
        let cut = self.open_placeholder().unwrap_or(self.held.len());
        let ready: String = self.held.drain(..cut).collect();
        self.masks.restore(&ready)
    }

    /// The rest, when the stream ends.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.masks.restore(&rest)
    }

    /// Where a tail that may still become a placeholder starts: the last `[` followed only
    /// by characters a placeholder has, shorter than the longest placeholder issued.
    fn open_placeholder(&self) -> Option<usize> {
        let at = self.held.rfind('[')?;
        let tail = &self.held[at + 1..];
        let could_be = tail.len() < self.masks.longest
            && tail
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        could_be.then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks() -> Masks {
        let mut m = Masks::default();
        assert_eq!(
            m.placeholder("CUSTOMER_ID", "1234567890"),
            "[CUSTOMER_ID_1]"
        );
        assert_eq!(m.placeholder("EMAIL", "a@b.io"), "[EMAIL_1]");
        assert_eq!(
            m.placeholder("CUSTOMER_ID", "1234567890"),
            "[CUSTOMER_ID_1]"
        );
        assert_eq!(
            m.placeholder("CUSTOMER_ID", "５５５５５５５５５５"),
            "[CUSTOMER_ID_2]"
        );
        m
    }

    #[test]
    fn placeholders_are_stable_and_restored() {
        let m = masks();
        assert_eq!(
            m.restore(
                "Dear [CUSTOMER_ID_1] ([EMAIL_1]), not [CUSTOMER_ID_3] nor [x_1] nor [CUSTOMER_ID_2"
            ),
            "Dear 1234567890 (a@b.io), not [CUSTOMER_ID_3] nor [x_1] nor [CUSTOMER_ID_2"
        );
        assert_eq!(format!("{m:?}"), "Masks(3 values)");
    }

    #[test]
    fn json_stays_json() {
        let mut m = Masks::default();
        m.placeholder("NOTE", "a\"b\\");
        let out = m.restore_json_text(r#"{"[NOTE_1]": ["x [NOTE_1] y"]}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a\"b\\": ["x a\"b\\ y"]}));
    }

    #[test]
    fn a_stream_never_releases_part_of_a_placeholder() {
        let m = masks();
        let text = "Hello [CUSTOMER_ID_1], your mail [EMAIL_1] and [CUSTOMER_ID_2]. [NOT] [";
        let expected = m.restore(text);
        for size in 1..=text.len() {
            let mut r = Restorer::new(m.clone());
            let mut out = String::new();
            for chunk in text.as_bytes().chunks(size) {
                let released = r.push(std::str::from_utf8(chunk).unwrap().to_owned());
                assert!(
                    !released.contains("[CUS") && !released.contains("[EM"),
                    "{size}: {released:?}"
                );
                out.push_str(&released);
            }
            out.push_str(&r.finish());
            assert_eq!(out, expected, "chunks of {size}");
        }
    }
}
