//! The grounding check: Bedrock Guardrails' contextual grounding scores an answer against the
//! passages it was given (grounding) and the question (relevance). Bedrock bounds what one
//! check reads, so a long answer is checked in parts and scored by its weakest part; the
//! prompt's thresholds, not the guardrail's, decide.

use serde::{Deserialize, Serialize};

use super::spec::{GroundingAction, GroundingSpec};

/// Longest grounding source one check reads, in characters.
pub const MAX_SOURCE_CHARS: usize = 100_000;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Longest answer part, in characters.
pub const MAX_ANSWER_CHARS: usize = 5_000;
/// Most parts checked: an answer longer than this many parts is checked on its first ones
/// and says so (`unchecked_chars`).
pub const MAX_PARTS: usize = 8;

/// What one check scored (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroundingScores {
    pub grounding: f64,
    pub relevance: f64,
}

/// The verdict on an answer, as the response reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingResult {
    pub score: f64,
    pub relevance_score: f64,
    pub threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance_threshold: Option<f64>,
    pub passed: bool,
    pub action: GroundingAction,
    /// Characters of the answer past what was checked (0 almost always).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unchecked_chars: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `text` cut into parts of at most `max` characters, on character boundaries.
pub fn parts(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let (part, tail) = rest.split_at(cut);
        out.push(part);
        rest = tail;
    }
    out
}

/// The first `max` characters.
pub fn clip(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| &text[..i])
}

/// The verdict from each part's scores (the weakest part decides).
pub fn verdict(
    spec: &GroundingSpec,
    scores: &[GroundingScores],
    unchecked: u64,
) -> GroundingResult {
    // Nothing scored (no passage, or no answer text) is nothing grounded: 0, not 1.
    let weakest =
        |f: fn(&GroundingScores) -> f64| scores.iter().map(f).reduce(f64::min).unwrap_or(0.0);
    let score = weakest(|s| s.grounding);
    let relevance = weakest(|s| s.relevance);
    let passed = !scores.is_empty()
        && score >= spec.threshold
        && spec.relevance_threshold.is_none_or(|t| relevance >= t);
    GroundingResult {
        score,
        relevance_score: relevance,
        threshold: spec.threshold,
        relevance_threshold: spec.relevance_threshold,
        passed,
        action: spec.action,
        unchecked_chars: unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(threshold: f64, relevance: Option<f64>) -> GroundingSpec {
        GroundingSpec {
            threshold,
            relevance_threshold: relevance,
            action: GroundingAction::Block,
            guardrail: None,
        }
    }

    #[test]
    fn parts_cut_on_characters_and_cover_the_text() {
        let text = "é".repeat(12_001);
        let p = parts(&text, MAX_ANSWER_CHARS);
        assert_eq!(
            p.iter().map(|s| s.chars().count()).collect::<Vec<_>>(),
            [5_000, 5_000, 2_001]
        );
        assert_eq!(p.concat(), text);
        assert!(parts("", 5).is_empty());
        assert_eq!(clip("héllo", 2), "hé");
    }

    #[test]
    fn the_weakest_part_and_both_thresholds_decide() {
        let s = |g, r| GroundingScores {
            grounding: g,
            relevance: r,
        };
        let v = verdict(&spec(0.7, None), &[s(0.9, 0.1), s(0.8, 0.9)], 0);
        assert!(v.passed);
        assert_eq!(v.score, 0.8);
        let v = verdict(&spec(0.7, Some(0.5)), &[s(0.9, 0.1)], 0);
        assert!(!v.passed);
        let v = verdict(&spec(0.7, None), &[s(0.69, 1.0)], 0);
        assert!(!v.passed);
        // Nothing scored is nothing passed, and says 0.
        let none = verdict(&spec(0.0, None), &[], 0);
        assert!(!none.passed);
        assert_eq!((none.score, none.relevance_score), (0.0, 0.0));
    }
}
