//! Guardrails: PII patterns and denied words, with BLOCK or ANONYMIZE, as ApplyGuardrail and
//! `guardrailConfig` on Converse apply them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use serde_json::{Value, json};

use crate::config::{GuardrailAction, GuardrailSpec};
use crate::error::{BedrockError, ErrorKind};
use crate::grounding::{self, GroundingFinding};
use crate::request::parse_json;

#[derive(Debug, Clone)]
pub struct PiiFinding {
    pub kind: String,
    pub matched: String,
    pub action: GuardrailAction,
}

#[derive(Debug, Clone)]
pub struct WordFinding {
    pub matched: String,
}

/// The result of running one guardrail over some texts.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    pub pii: Vec<PiiFinding>,
    pub words: Vec<WordFinding>,
    /// Contextual grounding checks run (ApplyGuardrail on OUTPUT only), passed or not.
    pub grounding: Vec<GroundingFinding>,
    /// The texts with ANONYMIZE matches masked as `{TYPE}`.
    pub outputs: Vec<String>,
    pub text_units: u32,
    /// Characters assessed.
    pub chars: usize,
}

impl Assessment {
    pub fn blocked(&self) -> bool {
        !self.words.is_empty()
            || self.pii.iter().any(|f| f.action == GuardrailAction::Block)
            || self.grounding.iter().any(GroundingFinding::blocked)
    }

    pub fn intervened(&self) -> bool {
        !self.words.is_empty() || !self.pii.is_empty() || self.blocked()
    }
}

fn builtin_pattern(kind: &str) -> Option<&'static Regex> {
    static PATTERNS: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            ("EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
            (
                "PHONE",
                r"(?:\+?1[-. ]?)?\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b",
            ),
            ("US_SOCIAL_SECURITY_NUMBER", r"\b\d{3}-\d{2}-\d{4}\b"),
            (
                "CREDIT_DEBIT_CARD_NUMBER",
                r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}\b",
            ),
            ("AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
            ("IP_ADDRESS", r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
        ]
        .into_iter()
        .filter_map(|(k, p)| Regex::new(p).ok().map(|r| (k, r)))
        .collect()
    });
    patterns.iter().find(|(k, _)| *k == kind).map(|(_, r)| r)
}

pub fn assess(spec: &GuardrailSpec, texts: &[String]) -> Result<Assessment, BedrockError> {
    let mut rules = Vec::with_capacity(spec.pii.len());
    for rule in &spec.pii {
        let regex = match &rule.pattern {
            Some(p) => std::borrow::Cow::Owned(Regex::new(p).map_err(|e| {
                BedrockError::validation(format!(
                    "Guardrail pattern for {} is invalid: {e}",
                    rule.kind
                ))
            })?),
            None => std::borrow::Cow::Borrowed(builtin_pattern(&rule.kind).ok_or_else(|| {
                BedrockError::validation(format!(
                    "Guardrail PII type {} has no built-in pattern; give it a pattern.",
                    rule.kind
                ))
            })?),
        };
        rules.push((rule, regex));
    }
    let words: Vec<Regex> = spec
        .denied_words
        .iter()
        .filter_map(|w| Regex::new(&format!(r"(?i)\b{}\b", regex::escape(w))).ok())
        .collect();

    let mut assessment = Assessment::default();
    for text in texts {
        let chars = text.chars().count();
        assessment.chars += chars;
        assessment.text_units += (chars as u32).div_ceil(1000).max(1);
        let mut masked = text.clone();
        for (rule, regex) in &rules {
            for m in regex.find_iter(text) {
                assessment.pii.push(PiiFinding {
                    kind: rule.kind.clone(),
                    matched: m.as_str().to_owned(),
                    action: rule.action,
                });
            }
            if rule.action == GuardrailAction::Anonymize {
                masked = regex
                    .replace_all(&masked, format!("{{{}}}", rule.kind).as_str())
                    .into_owned();
            }
        }
        for regex in &words {
            for m in regex.find_iter(text) {
                assessment.words.push(WordFinding {
                    matched: m.as_str().to_owned(),
                });
            }
        }
        assessment.outputs.push(masked);
    }
    Ok(assessment)
}

/// Bedrock's `GuardrailUsage`: the text units each configured policy was charged.
pub fn usage_json(spec: &GuardrailSpec, assessment: &Assessment) -> Value {
    json!({
        "topicPolicyUnits": 0,
        "contentPolicyUnits": 0,
        "wordPolicyUnits": if spec.denied_words.is_empty() { 0 } else { assessment.text_units },
        "sensitiveInformationPolicyUnits": if spec.pii.is_empty() { 0 } else { assessment.text_units },
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": if assessment.grounding.is_empty() { 0 } else { assessment.text_units },
    })
}

/// Bedrock's `GuardrailAssessment`: the policies that found something, with what they did.
/// `masks` is false where ANONYMIZE rules could not act (a stream in async mode): their
/// findings are reported with action `NONE`.
pub fn assessment_json(assessment: &Assessment, masks: bool) -> Value {
    let pii: Vec<Value> = assessment
        .pii
        .iter()
        .map(|f| {
            let action = match f.action {
                GuardrailAction::Block => "BLOCKED",
                GuardrailAction::Anonymize if masks => "ANONYMIZED",
                GuardrailAction::Anonymize => "NONE",
            };
            json!({ "match": f.matched, "type": f.kind, "action": action, "detected": true })
        })
        .collect();
    let words: Vec<Value> = assessment
        .words
        .iter()
        .map(|w| json!({ "match": w.matched, "action": "BLOCKED", "detected": true }))
        .collect();
    let mut policies = serde_json::Map::new();
    if !pii.is_empty() {
        policies.insert(
            "sensitiveInformationPolicy".into(),
            json!({ "piiEntities": pii, "regexes": [] }),
        );
    }
    if !words.is_empty() {
        policies.insert(
            "wordPolicy".into(),
            json!({ "customWords": words, "managedWordLists": [] }),
        );
    }
    if !assessment.grounding.is_empty() {
        let filters: Vec<Value> = assessment
            .grounding
            .iter()
            .map(GroundingFinding::json)
            .collect();
        policies.insert(
            "contextualGroundingPolicy".into(),
            json!({ "filters": filters }),
        );
    }
    Value::Object(policies)
}

/// Why a guardrail intervened, as Bedrock words it.
pub fn action_reason(assessment: &Assessment) -> Option<&'static str> {
    if assessment.blocked() {
        Some("Guardrail blocked.")
    } else if assessment.intervened() {
        Some("Guardrail masked.")
    } else {
        None
    }
}

/// The ApplyGuardrail response body.
pub fn apply_response(
    spec: &GuardrailSpec,
    assessment: &Assessment,
    source_is_input: bool,
) -> Value {
    let action = if assessment.intervened() {
        "GUARDRAIL_INTERVENED"
    } else {
        "NONE"
    };
    let outputs: Vec<Value> = if assessment.blocked() {
        let message = if source_is_input {
            &spec.blocked_input_messaging
        } else {
            &spec.blocked_outputs_messaging
        };
        vec![json!({ "text": message })]
    } else if assessment.intervened() {
        assessment
            .outputs
            .iter()
            .map(|t| json!({ "text": t }))
            .collect()
    } else {
        Vec::new()
    };
    let mut body = json!({
        "usage": usage_json(spec, assessment),
        "action": action,
        "outputs": outputs,
        "assessments": [assessment_json(assessment, true)],
    });
    if let Some(reason) = action_reason(assessment) {
        body["actionReason"] = json!(reason);
    }
    body
}

/// Bedrock's patterns for a guardrail identifier (an ID or its ARN) and version; `at` is
/// where the request carries them (`guardrailConfig.`, or nothing for ApplyGuardrail).
pub fn check_guardrail_ref(id: &str, version: &str, at: &str) -> Result<(), BedrockError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let id_ok = id.len() <= 2048
        && (plain(id)
            || id.strip_prefix("arn:").is_some_and(|arn| {
                let parts: Vec<&str> = arn.splitn(5, ':').collect();
                matches!(
                    parts[..],
                    [partition, "bedrock", region, account, resource]
                        if partition.starts_with("aws")
                            && (1..=20).contains(&region.len())
                            && account.len() == 12
                            && account.bytes().all(|b| b.is_ascii_digit())
                            && resource.strip_prefix("guardrail/").is_some_and(plain)
                )
            }));
    if !id_ok {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{id}' at '{at}guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{{1,20}}:[0-9]{{12}}:guardrail/[a-z0-9]+))"
        )));
    }
    let version_ok = version == "DRAFT"
        || ((1..=8).contains(&version.len())
            && version.bytes().all(|b| b.is_ascii_digit())
            && !version.starts_with('0'));
    if !version_ok {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{version}' at '{at}guardrailVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (([1-9][0-9]{{0,7}})|(DRAFT))"
        )));
    }
    Ok(())
}

/// The role of an ApplyGuardrail text block, from its `qualifiers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    GuardContent,
    GroundingSource,
    Query,
}

/// Text blocks with their role; a block without qualifiers is guarded content. Reference
/// blocks (grounding source, query) only feed the grounding check, as in Bedrock.
fn qualified_texts(content: &[Value]) -> Result<Vec<(Qualifier, String)>, BedrockError> {
    let mut blocks = Vec::new();
    for block in content {
        let Some(text) = block.get("text") else {
            continue;
        };
        let mut role = Qualifier::GuardContent;
        for q in text
            .get("qualifiers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match q.as_str() {
                Some("grounding_source") => role = Qualifier::GroundingSource,
                Some("query") if role != Qualifier::GroundingSource => role = Qualifier::Query,
                Some("query" | "guard_content") => {}
                _ => {
                    return Err(BedrockError::validation(format!(
                        "1 validation error detected: Value '{}' at 'content.member.text.qualifiers.member' failed to satisfy constraint: Member must satisfy enum value set: [grounding_source, query, guard_content]",
                        q.as_str().map_or_else(|| q.to_string(), str::to_owned)
                    )));
                }
            }
        }
        if let Some(t) = text.get("text").and_then(Value::as_str) {
            blocks.push((role, t.to_owned()));
        }
    }
    Ok(blocks)
}

/// The ApplyGuardrail operation.
pub fn apply(
    guardrails: &BTreeMap<String, GuardrailSpec>,
    id: &str,
    version: &str,
    body: &Bytes,
) -> Result<Response, BedrockError> {
    check_guardrail_ref(id, version, "")?;
    let spec = guardrails.get(id).ok_or_else(|| {
        BedrockError::new(
            ErrorKind::ResourceNotFoundException,
            format!("The guardrail {id} (version {version}) was not found."),
        )
    })?;
    let value = parse_json(body)?;
    let source = value.get("source").and_then(Value::as_str).ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value null at 'source' failed to satisfy constraint: Member must not be null")
    })?;
    let source_is_input = match source {
        "INPUT" => true,
        "OUTPUT" => false,
        other => {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{other}' at 'source' failed to satisfy constraint: Member must satisfy enum value set: [INPUT, OUTPUT]"
            )));
        }
    };
    let content = value.get("content").and_then(Value::as_array).ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null")
    })?;
    let blocks = qualified_texts(content)?;
    let texts: Vec<String> = blocks
        .iter()
        .filter(|(q, _)| *q == Qualifier::GuardContent)
        .map(|(_, t)| t.clone())
        .collect();
    let mut assessment = assess(spec, &texts)?;
    if let Some(grounding) = spec
        .contextual_grounding
        .as_ref()
        .filter(|_| !source_is_input)
    {
        let joined = |kind: Qualifier| {
            let parts: Vec<&str> = blocks
                .iter()
                .filter(|(q, _)| *q == kind)
                .map(|(_, t)| t.as_str())
                .collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        };
        assessment.grounding = grounding::check(
            grounding,
            &texts.join("\n"),
            joined(Qualifier::GroundingSource).as_deref(),
            joined(Qualifier::Query).as_deref(),
        );
    }
    Ok(axum::Json(apply_response(spec, &assessment, source_is_input)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PiiRule;

    fn spec() -> GuardrailSpec {
        GuardrailSpec {
            pii: vec![
                PiiRule {
                    kind: "EMAIL".into(),
                    action: GuardrailAction::Anonymize,
                    pattern: None,
                },
                PiiRule {
                    kind: "US_SOCIAL_SECURITY_NUMBER".into(),
                    action: GuardrailAction::Block,
                    pattern: None,
                },
            ],
            denied_words: vec!["secret plan".into()],
            ..GuardrailSpec::default()
        }
    }

    #[test]
    fn anonymizes_email() {
        let a = assess(&spec(), &["write to bob@example.com please".into()]).unwrap();
        assert!(a.intervened() && !a.blocked());
        assert_eq!(a.outputs[0], "write to {EMAIL} please");
    }

    #[test]
    fn blocks_ssn_and_words() {
        assert!(
            assess(&spec(), &["ssn 123-45-6789".into()])
                .unwrap()
                .blocked()
        );
        assert!(
            assess(&spec(), &["the Secret Plan is".into()])
                .unwrap()
                .blocked()
        );
        assert!(
            !assess(&spec(), &["nothing here".into()])
                .unwrap()
                .intervened()
        );
    }
}
