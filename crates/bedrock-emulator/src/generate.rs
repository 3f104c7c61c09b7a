//! Deterministic output: the same request always gets the same text, tool input or JSON.
//!
//! A request is hashed (SHA-256 of its canonical parts) into a seed that drives a splitmix64
//! generator, written here rather than taken from a crate so the output never changes with a
//! dependency upgrade.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// splitmix64: tiny, fast, stable.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn from_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Self(u64::from_le_bytes(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        let len = items.len().max(1) as u64;
        items
            .get((self.next_u64() % len) as usize)
            .copied()
            .unwrap_or("")
    }
}

/// Bedrock-like token estimate: about four characters a token, at least one for any text.
pub fn count_tokens(text: &str) -> u32 {
    let chars = text.chars().count() as u32;
    if chars == 0 { 0 } else { chars.div_ceil(4) }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "answer",
    "request",
    "data",
    "system",
    "value",
    "result",
    "quarry",
    "bedrock",
    "gateway",
    "token",
    "stream",
    "cache",
    "budget",
    "prompt",
    "version",
    "deterministic",
    "response",
    "service",
    "region",
    "latency",
    "cost",
    "tenant",
    "batch",
    "queue",
    "message",
    "simple",
    "clear",
    "useful",
    "summary",
    "detail",
    "context",
    "example",
    "question",
    "reason",
    "because",
    "therefore",
    "however",
    "and",
    "with",
    "for",
    "from",
    "into",
    "about",
    "each",
    "every",
    "other",
    "first",
    "next",
    "last",
    "small",
    "large",
    "quick",
    "steady",
    "careful",
    "good",
    "new",
    "old",
    "same",
    "different",
    "important",
    "is",
    "are",
    "was",
    "will",
    "can",
    "should",
    "may",
    "might",
    "helps",
    "shows",
    "keeps",
    "makes",
    "takes",
    "gives",
    "finds",
    "uses",
    "runs",
    "reads",
    "writes",
    "sends",
    "returns",
    "checks",
    "counts",
    "measures",
    "this",
    "that",
    "these",
    "those",
    "it",
    "we",
    "you",
    "they",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "at",
    "by",
    "as",
    "or",
    "not",
    "only",
    "also",
    "then",
    "when",
    "where",
    "while",
];

/// A deterministic reply of between `min_words` and `max_words` words, as a list of tokens
/// (each token is one word with its trailing space or punctuation) so streams and usage agree.
pub fn reply_tokens(rng: &mut Prng, min_words: u64, max_words: u64) -> Vec<String> {
    let n = rng.range(min_words, max_words) as usize;
    let mut tokens = Vec::with_capacity(n);
    let mut sentence_left = rng.range(6, 14);
    let mut capitalize = true;
    for i in 0..n {
        let word = rng.pick(WORDS);
        let mut token = if capitalize {
            let mut chars = word.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            }
        } else {
            word.to_owned()
        };
        capitalize = false;
        sentence_left = sentence_left.saturating_sub(1);
        let last = i + 1 == n;
        if sentence_left == 0 || last {
            token.push('.');
            sentence_left = rng.range(6, 14);
            capitalize = true;
        }
        if !last {
            token.push(' ');
        }
        tokens.push(token);
    }
    tokens
}

/// A value that validates against `schema` (the subset of JSON Schema that tool and output
/// schemas use: types, properties, required, items, enum, const, min/max, anyOf/oneOf/allOf,
/// local `$ref`).
pub fn instance_of(schema: &Value, rng: &mut Prng) -> Value {
    instance_at(schema, schema, rng, 0)
}

fn instance_at(schema: &Value, root: &Value, rng: &mut Prng, depth: usize) -> Value {
    if depth > 12 {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        // `true` or an empty schema accepts anything.
        return Value::String("value".into());
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        return match resolve_ref(root, reference) {
            Some(target) => instance_at(target, root, rng, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(value) = obj.get("const") {
        return value.clone();
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array)
        && !options.is_empty()
    {
        let i = (rng.next_u64() % options.len() as u64) as usize;
        return options.get(i).cloned().unwrap_or(Value::Null);
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(first) = obj
            .get(combinator)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return instance_at(first, root, rng, depth + 1);
        }
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in all {
            if let Value::Object(fields) = instance_at(part, root, rng, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ if obj.contains_key("items") => "array",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    out.insert(name.clone(), instance_at(prop, root, rng, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let max = obj
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(min.max(3));
            let n = rng.range(min, max.max(min));
            let items = obj.get("items").cloned().unwrap_or(Value::Bool(true));
            Value::Array(
                (0..n)
                    .map(|_| instance_at(&items, root, rng, depth + 1))
                    .collect(),
            )
        }
        "integer" => {
            let lo = obj.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            let hi = obj
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(lo.saturating_add(100));
            let span = hi.saturating_sub(lo).max(0) as u64;
            Value::from(lo.saturating_add((rng.next_u64() % (span + 1)) as i64))
        }
        "number" => {
            let lo = obj.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let hi = obj
                .get("maximum")
                .and_then(Value::as_f64)
                .unwrap_or(lo + 100.0);
            let value = lo + (hi - lo) * rng.unit();
            Value::from((value * 100.0).round() / 100.0)
        }
        "boolean" => Value::Bool(rng.next_u64() % 2 == 0),
        "null" => Value::Null,
        _ => Value::String(string_instance(obj, rng)),
    }
}

fn string_instance(obj: &Map<String, Value>, rng: &mut Prng) -> String {
    let base = match obj.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-15T09:30:00Z".to_owned(),
        Some("date") => "2026-01-15".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri") => "https://example.com/item".to_owned(),
        Some("uuid") => "123e4567-e89b-42d3-a456-426614174000".to_owned(),
        _ => {
            let n = rng.range(1, 4) as usize;
            (0..n)
                .map(|_| rng.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = obj
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| m as usize);
    let mut s = base;
    while s.chars().count() < min {
        s.push('x');
    }
    if let Some(max) = max {
        s = s.chars().take(max).collect();
    }
    s
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

/// A value that does NOT validate against `schema` (for the malformed-output fault): an object
/// schema gets an object with its required fields missing, anything else a wrong type.
pub fn violation_of(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None => serde_json::json!({ "unexpected": true }),
        Some("string") => Value::from(42),
        _ => Value::String("not what the schema asked for".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text() {
        let a = reply_tokens(&mut Prng::from_parts(&[b"x"]), 5, 50);
        let b = reply_tokens(&mut Prng::from_parts(&[b"x"]), 5, 50);
        let c = reply_tokens(&mut Prng::from_parts(&[b"y"]), 5, 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.concat().ends_with('.'));
    }

    #[test]
    fn token_estimate() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("abc"), 1);
        assert_eq!(count_tokens("abcdefgh"), 2);
        assert_eq!(count_tokens("abcdefghi"), 3);
    }

    #[test]
    fn instance_follows_schema() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 3},
                "unit": {"enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "nested": {"$ref": "#/$defs/n"}
            },
            "required": ["city", "unit"],
            "$defs": {"n": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}
        });
        let v = instance_of(&schema, &mut Prng::new(7));
        assert!(v["city"].as_str().unwrap().len() >= 3);
        assert!(["c", "f"].contains(&v["unit"].as_str().unwrap()));
        let days = v["days"].as_i64().unwrap();
        assert!((1..=7).contains(&days));
        assert!(v["tags"].as_array().unwrap().len() >= 2);
        assert!(v["nested"]["ok"].is_boolean());
    }
}
