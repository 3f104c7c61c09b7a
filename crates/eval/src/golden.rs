//! Golden sets: JSONL files of cases, each with its input (prompt variables and/or messages)
//! and the assertions its answer must meet, optionally scored by a judge model.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A golden set that cannot be used, with the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoldenError {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}: the golden set has no cases")]
    Empty(String),
}

/// One case of a golden set (one JSONL line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    /// Unique in its set; `eval compare` matches cases by it.
    pub id: String,
    /// Variables of the prompt under test.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    /// Conversation messages (after the prompt's own, when a prompt is under test).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<CaseMessage>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<Assertion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseMessage {
    pub role: CaseRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseRole {
    System,
    User,
    Assistant,
}

/// What an answer must meet. Text assertions apply to the answer's text, trimmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Assertion {
    Equals {
        value: String,
    },
    Contains {
        value: String,
    },
    NotContains {
        value: String,
    },
    Regex {
        pattern: String,
    },
    /// The answer is JSON and validates against `schema`.
    JsonSchema {
        schema: Value,
    },
    /// The answer is JSON and the value at `path` (`$.a.b[0]`) equals `equals`.
    JsonPath {
        path: String,
        equals: Value,
    },
    MaxOutputTokens {
        value: u64,
    },
    /// End-to-end latency of the request, retries included.
    MaxLatencyMs {
        value: u64,
    },
    /// A source the answer was given: `uri` (or its ending, `pricing.md`) is among the
    /// answer's `sources`, and, when the model cited its sources, among those it cited.
    Cites {
        uri: String,
    },
    /// The grounding check scored the answer at least `min_score`.
    Grounded {
        min_score: f64,
    },
    /// Retrieval found `uri` (or its ending) among its first `k` passages (all of them when
    /// `k` is absent): a case of the retrieval hit rate.
    RetrievalHit {
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        k: Option<usize>,
    },
}

/// `uri` is `wanted`, or ends with it after a `/`.
pub fn same_source(uri: &str, wanted: &str) -> bool {
    uri == wanted
        || uri
            .strip_suffix(wanted)
            .is_some_and(|head| head.ends_with('/'))
}

/// An LLM-as-judge rubric: `model` scores the answer from 1 to 5; the case passes at
/// `min_score` or more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    /// A tier or model ID.
    pub model: String,
    pub rubric: String,
    #[serde(default = "default_min_score")]
    pub min_score: u8,
}

fn default_min_score() -> u8 {
    4
}

/// What an assertion looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub text: &'a str,
    /// Structured output, when the request asked for it.
    pub json: Option<&'a Value>,
    pub output_tokens: u64,
    pub latency_ms: u64,
    /// The URIs of the answer's sources, best first.
    pub sources: &'a [String],
    /// The URIs of the sources its citations name.
    pub cited: &'a [String],
    /// The grounding check's score, when one ran.
    pub grounding: Option<f64>,
}

impl Assertion {
    /// `Err` says what the answer missed.
    pub fn check(&self, o: &Observed<'_>) -> Result<(), String> {
        let text = o.text.trim();
        let ok = match self {
            Self::Equals { value } => text == value.trim(),
            Self::Contains { value } => text.contains(value.as_str()),
            Self::NotContains { value } => !text.contains(value.as_str()),
            Self::Regex { pattern } => regex::Regex::new(pattern)
                .map_err(|e| format!("regex {pattern:?}: {e}"))?
                .is_match(text),
            Self::JsonSchema { schema } => {
                let value = json_of(o)?;
                let validator = jsonschema::validator_for(schema)
                    .map_err(|e| format!("json_schema: the schema is invalid: {e}"))?;
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .take(3)
                    .map(|e| format!("{} {e}", e.instance_path()))
                    .collect();
                if !errors.is_empty() {
                    return Err(format!("json_schema: {}", errors.join("; ")));
                }
                true
            }
            Self::JsonPath { path, equals } => {
                let value = json_of(o)?;
                let pointer = json_pointer(path)?;
                match value.pointer(&pointer) {
                    Some(found) if found == equals => true,
                    Some(found) => {
                        return Err(format!("json_path {path}: expected {equals}, got {found}"));
                    }
                    None => return Err(format!("json_path {path}: no such value")),
                }
            }
            Self::MaxOutputTokens { value } => {
                if o.output_tokens > *value {
                    return Err(format!(
                        "max_output_tokens: {} output tokens, limit {value}",
                        o.output_tokens
                    ));
                }
                true
            }
            Self::MaxLatencyMs { value } => {
                if o.latency_ms > *value {
                    return Err(format!(
                        "max_latency_ms: took {} ms, limit {value}",
                        o.latency_ms
                    ));
                }
                true
            }
            Self::Cites { uri } => {
                if !o.sources.iter().any(|s| same_source(s, uri)) {
                    return Err(format!("cites: {uri} is not among the sources"));
                }
                if !o.cited.is_empty() && !o.cited.iter().any(|s| same_source(s, uri)) {
                    return Err(format!("cites: the answer cites other sources than {uri}"));
                }
                true
            }
            Self::Grounded { min_score } => match o.grounding {
                None => {
                    return Err(
                        "grounded: no grounding check ran (does the prompt set grounding?)".into(),
                    );
                }
                Some(score) if score < *min_score => {
                    return Err(format!(
                        "grounded: score {score:.2}, at least {min_score:.2} wanted"
                    ));
                }
                Some(_) => true,
            },
            Self::RetrievalHit { uri, k } => {
                let top = k.unwrap_or(usize::MAX);
                if !o.sources.iter().take(top).any(|s| same_source(s, uri)) {
                    return Err(format!(
                        "retrieval_hit: {uri} not among the first {} sources",
                        k.map_or("".to_owned(), |k| k.to_string())
                    )
                    .replace("first  sources", "sources"));
                }
                true
            }
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                Self::Equals { value } => format!("equals: expected {value:?}"),
                Self::Contains { value } => format!("contains: {value:?} not found"),
                Self::NotContains { value } => format!("not_contains: {value:?} found"),
                Self::Regex { pattern } => format!("regex: {pattern:?} does not match"),
                _ => "assertion failed".to_owned(),
            })
        }
    }

    /// Whether the assertion itself is usable (regex, schema, path).
    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Regex { pattern } => regex::Regex::new(pattern)
                .map(|_| ())
                .map_err(|e| format!("invalid regex {pattern:?}: {e}")),
            Self::JsonSchema { schema } => jsonschema::validator_for(schema)
                .map(|_| ())
                .map_err(|e| format!("invalid JSON Schema: {e}")),
            Self::JsonPath { path, .. } => json_pointer(path).map(|_| ()),
            Self::Grounded { min_score } if !(0.0..=1.0).contains(min_score) => {
                Err("grounded: min_score is between 0 and 1".into())
            }
            Self::RetrievalHit { k: Some(0), .. } => Err("retrieval_hit: k is at least 1".into()),
            _ => Ok(()),
        }
    }
}

fn json_of(o: &Observed<'_>) -> Result<Value, String> {
    if let Some(v) = o.json {
        return Ok(v.clone());
    }
    serde_json::from_str(o.text.trim()).map_err(|e| format!("the answer is not JSON: {e}"))
}

/// `$.a.b[0]` (or `a.b[0]`) as the JSON pointer `/a/b/0`.
pub fn json_pointer(path: &str) -> Result<String, String> {
    let bad = || format!("invalid JSON path {path:?}: use $.field.sub[0]");
    let rest = path.strip_prefix('$').unwrap_or(path);
    let mut pointer = String::new();
    for segment in rest.split('.').filter(|s| !s.is_empty()) {
        let (name, mut indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        while !indexes.is_empty() {
            let close = indexes.find(']').ok_or_else(bad)?;
            let index = indexes
                .get(1..close)
                .filter(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(bad)?;
            pointer.push('/');
            pointer.push_str(index);
            indexes = &indexes[close + 1..];
            if !indexes.is_empty() && !indexes.starts_with('[') {
                return Err(bad());
            }
        }
    }
    if pointer.is_empty() && rest.chars().any(|c| c != '.') {
        return Err(bad());
    }
    Ok(pointer)
}

/// Parses a golden set; `file` names it in errors. Blank lines are skipped.
pub fn parse_set(file: &str, text: &str) -> Result<Vec<GoldenCase>, GoldenError> {
    let invalid = |line: usize, message: String| GoldenError::Invalid {
        file: file.to_owned(),
        line,
        message,
    };
    let mut cases = Vec::new();
    let mut ids = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let case: GoldenCase =
            serde_json::from_str(raw).map_err(|e| invalid(line, e.to_string()))?;
        if case.id.trim().is_empty() {
            return Err(invalid(line, "`id` must not be empty".into()));
        }
        if !ids.insert(case.id.clone()) {
            return Err(invalid(line, format!("duplicate case id {:?}", case.id)));
        }
        for a in &case.assertions {
            a.validate().map_err(|m| invalid(line, m))?;
        }
        if let Some(j) = &case.judge {
            if !(1..=5).contains(&j.min_score) {
                return Err(invalid(line, "judge.min_score must be 1 to 5".into()));
            }
            if j.rubric.trim().is_empty() || j.model.trim().is_empty() {
                return Err(invalid(line, "judge needs a model and a rubric".into()));
            }
        }
        if case.assertions.is_empty() && case.judge.is_none() {
            return Err(invalid(
                line,
                format!("case {:?} has neither `assert` nor `judge`", case.id),
            ));
        }
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(GoldenError::Empty(file.to_owned()));
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(text: &str) -> Observed<'_> {
        Observed {
            text,
            json: None,
            output_tokens: 10,
            latency_ms: 100,
            sources: &[],
            cited: &[],
            grounding: None,
        }
    }

    #[test]
    fn retrieval_assertions_read_sources_citations_and_grounding() {
        let sources = [
            "s3://KB/docs/pricing.md".to_owned(),
            "s3://KB/security.md".to_owned(),
        ];
        let with = |cited: &'static [String], grounding| Observed {
            sources: &sources,
            cited,
            grounding,
            ..observed("x")
        };
        let cites = Assertion::Cites {
            uri: "pricing.md".into(),
        };
        assert_eq!(cites.check(&with(&[], None)), Ok(()));
        // A suffix matches whole path segments only.
        let partial = Assertion::Cites {
            uri: "ricing.md".into(),
        };
        assert!(partial.check(&with(&[], None)).is_err());
        assert!(cites.check(&observed("x")).is_err());
        let hit = |k| Assertion::RetrievalHit {
            uri: "security.md".into(),
            k,
        };
        assert_eq!(hit(None).check(&with(&[], None)), Ok(()));
        assert_eq!(hit(Some(2)).check(&with(&[], None)), Ok(()));
        assert!(
            hit(Some(1))
                .check(&with(&[], None))
                .unwrap_err()
                .contains("first 1")
        );
        let grounded = Assertion::Grounded { min_score: 0.7 };
        assert_eq!(grounded.check(&with(&[], Some(0.7))), Ok(()));
        assert!(grounded.check(&with(&[], Some(0.69))).is_err());
        assert!(
            grounded
                .check(&with(&[], None))
                .unwrap_err()
                .contains("no grounding")
        );
    }

    #[test]
    fn every_assertion_passes_and_fails() {
        let json_text = r#"{"sentiment": "positive", "tags": ["a", "b"]}"#;
        let cases = [
            (json!({"type": "equals", "value": "yes"}), " yes\n", "no"),
            (
                json!({"type": "contains", "value": "cat"}),
                "a cat",
                "a dog",
            ),
            (
                json!({"type": "not_contains", "value": "cat"}),
                "a dog",
                "a cat",
            ),
            (json!({"type": "regex", "pattern": "^\\d+$"}), "42", "4 2"),
            (
                json!({"type": "json_schema", "schema": {"type": "object", "required": ["sentiment"]}}),
                json_text,
                "{}",
            ),
            (
                json!({"type": "json_path", "path": "$.tags[1]", "equals": "b"}),
                json_text,
                r#"{"tags": ["a"]}"#,
            ),
        ];
        for (assertion, pass, fail) in cases {
            let a: Assertion = serde_json::from_value(assertion.clone()).unwrap();
            assert_eq!(a.check(&observed(pass)), Ok(()), "{assertion}");
            assert!(a.check(&observed(fail)).is_err(), "{assertion}");
        }
        let tokens = Assertion::MaxOutputTokens { value: 10 };
        assert!(tokens.check(&observed("x")).is_ok());
        let over = Observed {
            output_tokens: 11,
            ..observed("x")
        };
        assert!(tokens.check(&over).unwrap_err().contains("11"));
        let latency = Assertion::MaxLatencyMs { value: 99 };
        assert!(
            latency
                .check(&observed("x"))
                .unwrap_err()
                .contains("100 ms")
        );
    }

    #[test]
    fn structured_output_is_checked_as_json() {
        let value = json!({"score": 3});
        let o = Observed {
            json: Some(&value),
            ..observed("not json")
        };
        let a = Assertion::JsonPath {
            path: "$.score".into(),
            equals: json!(3),
        };
        assert_eq!(a.check(&o), Ok(()));
        assert!(
            a.check(&observed("not json"))
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn json_paths() {
        assert_eq!(json_pointer("$.a.b[0][2].c").unwrap(), "/a/b/0/2/c");
        assert_eq!(json_pointer("a").unwrap(), "/a");
        assert_eq!(json_pointer("$").unwrap(), "");
        assert!(json_pointer("$.a[x]").is_err());
        assert!(json_pointer("$.a[1]b").is_err());
    }

    #[test]
    fn sets_are_validated_with_line_numbers() {
        let good = r#"{"id": "a", "variables": {"x": 1}, "assert": [{"type": "contains", "value": "."}]}

{"id": "b", "messages": [{"role": "user", "content": "hi"}], "judge": {"model": "fast", "rubric": "polite"}}"#;
        let cases = parse_set("set.jsonl", good).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].judge.as_ref().unwrap().min_score, 4);

        let err = |text: &str| parse_set("set.jsonl", text).unwrap_err().to_string();
        assert!(
            err(r#"{"id": "a", "assert": [{"type": "regex", "pattern": "("}]}"#)
                .starts_with("set.jsonl:1: invalid regex")
        );
        let dup = r#"{"id": "a", "assert": [{"type": "contains", "value": "x"}]}
{"id": "a", "assert": [{"type": "contains", "value": "x"}]}"#;
        assert!(err(dup).contains("set.jsonl:2: duplicate"));
        assert!(
            err(r#"{"id": "a", "assert": [{"type": "sounds_good"}]}"#).contains("unknown variant")
        );
        assert!(
            err(r#"{"id": "a", "assert": [{"type": "contains", "value": "x", "extra": 1}]}"#)
                .contains("unknown field")
        );
        assert!(err(r#"{"id": "a"}"#).contains("neither"));
        assert!(
            err(r#"{"id": "a", "judge": {"model": "m", "rubric": "r", "min_score": 9}}"#)
                .contains("1 to 5")
        );
        assert!(err("\n\n").contains("no cases"));
    }
}
