//! Contextual grounding checks of ApplyGuardrail: how much of the guarded text the
//! grounding source supports (GROUNDING) and how much of the query it addresses
//! (RELEVANCE), by word overlap.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Words too common to show that two texts are about the same thing.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in",
    "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when",
    "where", "which", "who", "why", "with",
];

/// `contextual_grounding` of a guardrail: the lowest acceptable score of each check; a
/// check without a threshold is not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroundingSpec {
    pub grounding_threshold: Option<f64>,
    pub relevance_threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroundingFinding {
    /// `GROUNDING` or `RELEVANCE`.
    pub kind: &'static str,
    pub threshold: f64,
    pub score: f64,
}

impl GroundingFinding {
    pub fn blocked(&self) -> bool {
        self.score < self.threshold
    }

    pub fn json(&self) -> Value {
        json!({
            "type": self.kind,
            "threshold": self.threshold,
            "score": self.score,
            "action": if self.blocked() { "BLOCKED" } else { "NONE" },
            "detected": self.blocked(),
        })
    }
}

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// Share of `part`'s words found in `whole`, rounded to two decimals as Bedrock reports
/// scores; 1 when `part` has no words to check.
fn covered(part: &str, whole: &str) -> f64 {
    let part = words(part);
    if part.is_empty() {
        return 1.0;
    }
    let whole = words(whole);
    let shared = part.intersection(&whole).count() as f64;
    (shared / part.len() as f64 * 100.0).round() / 100.0
}

/// The checks that apply: GROUNDING when a grounding source was sent, RELEVANCE when a
/// query was. Grounding is the share of the guarded text's words the source contains;
/// relevance the share of the query's words the guarded text contains.
pub fn check(
    spec: &GroundingSpec,
    guarded: &str,
    source: Option<&str>,
    query: Option<&str>,
) -> Vec<GroundingFinding> {
    let mut findings = Vec::new();
    if let (Some(threshold), Some(source)) = (spec.grounding_threshold, source) {
        findings.push(GroundingFinding {
            kind: "GROUNDING",
            threshold,
            score: covered(guarded, source),
        });
    }
    if let (Some(threshold), Some(query)) = (spec.relevance_threshold, query) {
        findings.push(GroundingFinding {
            kind: "RELEVANCE",
            threshold,
            score: covered(query, guarded),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_word_overlap() {
        let spec = GroundingSpec {
            grounding_threshold: Some(0.5),
            relevance_threshold: Some(0.5),
        };
        let f = check(
            &spec,
            "Backups are kept thirty days",
            Some("Quarry keeps backups for thirty days."),
            Some("How long are backups kept?"),
        );
        assert_eq!(f[0].kind, "GROUNDING");
        // backups, kept, thirty, days: "kept" is not in the source.
        assert_eq!(f[0].score, 0.75);
        assert!(!f[0].blocked());
        // long, backups, kept: "long" is not in the answer.
        assert_eq!(f[1].score, 0.67);
        let off = check(
            &spec,
            "Bananas are yellow",
            Some("Quarry keeps backups"),
            None,
        );
        assert_eq!(off.len(), 1);
        assert!(off[0].blocked());
    }
}
