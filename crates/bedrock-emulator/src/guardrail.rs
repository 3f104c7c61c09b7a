//! Guardrails: PII patterns and denied words, with BLOCK or ANONYMIZE, as ApplyGuardrail and
//! `guardrailConfig` on Converse apply them.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::config::{GuardrailAction, GuardrailSpec};
use crate::error::BedrockError;

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
    /// The texts with ANONYMIZE matches masked as `{TYPE}`.
    pub outputs: Vec<String>,
    pub text_units: u32,
}

impl Assessment {
    pub fn blocked(&self) -> bool {
        !self.words.is_empty() || self.pii.iter().any(|f| f.action == GuardrailAction::Block)
    }

    pub fn intervened(&self) -> bool {
        !self.words.is_empty() || !self.pii.is_empty()
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
        assessment.text_units += (text.chars().count() as u32).div_ceil(1000).max(1);
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
    let pii: Vec<Value> = assessment
        .pii
        .iter()
        .map(|f| {
            json!({
                "match": f.matched,
                "type": f.kind,
                "action": if f.action == GuardrailAction::Block { "BLOCKED" } else { "ANONYMIZED" },
                "detected": true,
            })
        })
        .collect();
    let words: Vec<Value> = assessment
        .words
        .iter()
        .map(|w| json!({ "match": w.matched, "action": "BLOCKED", "detected": true }))
        .collect();
    let mut assessment_obj = serde_json::Map::new();
    if !pii.is_empty() {
        assessment_obj.insert(
            "sensitiveInformationPolicy".into(),
            json!({ "piiEntities": pii, "regexes": [] }),
        );
    }
    if !words.is_empty() {
        assessment_obj.insert(
            "wordPolicy".into(),
            json!({ "customWords": words, "managedWordLists": [] }),
        );
    }
    let mut body = json!({
        "usage": {
            "topicPolicyUnits": 0,
            "contentPolicyUnits": 0,
            "wordPolicyUnits": if spec.denied_words.is_empty() { 0 } else { assessment.text_units },
            "sensitiveInformationPolicyUnits": if spec.pii.is_empty() { 0 } else { assessment.text_units },
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        },
        "action": action,
        "outputs": outputs,
        "assessments": [Value::Object(assessment_obj)],
    });
    if assessment.intervened() {
        body["actionReason"] = json!(if assessment.blocked() {
            "Guardrail blocked."
        } else {
            "Guardrail masked."
        });
    }
    body
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
