//! PII detection: where each kind matches in a folded text, confirmed by its checksum.

use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::fold::digit_value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    CreditCard,
    UsSsn,
    Iban,
    AwsAccessKey,
}

impl PiiKind {
    pub const ALL: [PiiKind; 6] = [
        Self::Email,
        Self::Phone,
        Self::CreditCard,
        Self::UsSsn,
        Self::Iban,
        Self::AwsAccessKey,
    ];

    pub fn mask(self) -> &'static str {
        match self {
            Self::Email => "[EMAIL]",
            Self::Phone => "[PHONE]",
            Self::CreditCard => "[CREDIT_CARD]",
            Self::UsSsn => "[US_SSN]",
            Self::Iban => "[IBAN]",
            Self::AwsAccessKey => "[AWS_ACCESS_KEY]",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::CreditCard => "credit_card",
            Self::UsSsn => "us_ssn",
            Self::Iban => "iban",
            Self::AwsAccessKey => "aws_access_key",
        }
    }

    /// Patterns over the folded text (digits are ASCII there). Numbers may be grouped with
    /// spaces, dots or dashes. The stream guard relies on one property of these patterns:
    /// a match crosses whitespace only between `[0-9A-Z)]` and `[0-9A-Z(]`, one
    /// whitespace character at a time (see `stream::joins`).
    fn pattern(self) -> &'static str {
        match self {
            Self::Email => r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            Self::Phone => {
                r"(?:\+[0-9]{1,3}[\s.-]?)?\(?\b[0-9]{3}\)?[\s.-][0-9]{3}[\s.-][0-9]{4}\b"
            }
            Self::CreditCard => r"\b(?:[0-9][\s.-]?){12,18}[0-9]\b",
            Self::UsSsn => r"\b[0-9]{3}[\s.-][0-9]{2}[\s.-][0-9]{4}\b",
            Self::Iban => r"\b[A-Z]{2}[0-9]{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b",
            Self::AwsAccessKey => r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b",
        }
    }

    /// Checks that remove look-alikes: card numbers must pass Luhn, IBANs mod 97, SSNs
    /// must not use the numbers the SSA never issues.
    fn confirm(self, matched: &str) -> bool {
        match self {
            Self::CreditCard => luhn(matched),
            Self::Iban => iban_ok(matched),
            Self::UsSsn => {
                let d: Vec<u32> = matched.chars().filter_map(digit_value).collect();
                let (area, group, serial) = (&d[..3.min(d.len())], d.get(3..5), d.get(5..));
                d.len() == 9
                    && area != [0, 0, 0]
                    && area != [6, 6, 6]
                    && area.first() != Some(&9)
                    && group != Some(&[0, 0])
                    && serial != Some(&[0, 0, 0, 0])
            }
            _ => true,
        }
    }
}

/// The compiled patterns; one that fails to compile is a defect, caught by the tests (and
/// detection then fails closed: see [`find`]).
fn regexes() -> &'static [(PiiKind, Option<Regex>)] {
    static R: OnceLock<Vec<(PiiKind, Option<Regex>)>> = OnceLock::new();
    R.get_or_init(|| {
        PiiKind::ALL
            .iter()
            .map(|k| (*k, Regex::new(k.pattern()).ok()))
            .collect()
    })
}

/// A confirmed match in the folded text.
pub struct Found {
    pub kind: PiiKind,
    pub span: Range<usize>,
}

/// The confirmed matches of the kinds `checks` accepts, in order and apart: kinds are tried
/// in [`PiiKind::ALL`] order, and a match overlapping an earlier one is dropped. A kind
/// whose pattern did not compile matches the whole text, so it is masked, never let through.
pub fn find(folded: &str, checks: impl Fn(PiiKind) -> bool) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for (kind, regex) in regexes() {
        if !checks(*kind) {
            continue;
        }
        let spans: Vec<Range<usize>> = match regex {
            Some(r) => {
                let taken: Vec<Range<usize>> = found.iter().map(|f| f.span.clone()).collect();
                confirmed(*kind, r, folded, &taken)
            }
            None if folded.is_empty() => Vec::new(),
            None => std::iter::once(0..folded.len()).collect(),
        };
        for span in spans {
            if !found
                .iter()
                .any(|f| f.span.start < span.end && span.start < f.span.end)
            {
                found.push(Found { kind: *kind, span });
            }
        }
    }
    found.sort_by_key(|f| f.span.start);
    found
}

/// The confirmed matches of one kind. A match that fails its check may hold a shorter one
/// that passes (a card number followed by more digits: `4111 1111 1111 1111 123 45 6789`),
/// or one may start inside it: so a failed match is tried shorter, ending at each earlier
/// word boundary, and the search resumes one character after its start, not after its end.
/// A match overlapping `taken` (an earlier kind's) is passed over the same way, so one that
/// starts after it is still found.
fn confirmed(kind: PiiKind, r: &Regex, folded: &str, taken: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(m) = r.find_at(folded, at) {
        let overlaps = |s: &Range<usize>| taken.iter().any(|t| t.start < s.end && s.start < t.end);
        let hit = if kind.confirm(m.as_str()) {
            Some(m.range())
        } else {
            shorter(kind, r, folded, m.range())
        }
        .filter(|s| !overlaps(s));
        match hit {
            Some(span) => {
                at = span.end.max(at + 1);
                spans.push(span);
            }
            None => {
                // The next character boundary after the start.
                at = folded
                    .get(m.start()..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(folded.len(), |c| m.start() + c.len_utf8());
            }
        }
        if at >= folded.len() {
            break;
        }
    }
    spans
}

/// The longest prefix of a failed match that is itself a whole match (ending at a word
/// boundary) and passes the check.
fn shorter(kind: PiiKind, r: &Regex, folded: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = folded.get(span.clone())?;
    let ends = text
        .char_indices()
        .filter(|(i, c)| {
            let end = span.start + i + c.len_utf8();
            end < span.end
                && c.is_alphanumeric()
                && folded[end..]
                    .chars()
                    .next()
                    .is_none_or(|n| !n.is_alphanumeric() && n != '_')
        })
        .map(|(i, c)| span.start + i + c.len_utf8())
        .collect::<Vec<_>>();
    ends.into_iter().rev().find_map(|end| {
        let piece = folded.get(span.start..end)?;
        r.find(piece)
            .filter(|m| m.start() == 0 && m.end() == piece.len() && kind.confirm(piece))
            .map(|_| span.start..end)
    })
}

pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(digit_value).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    sum % 10 == 0
}

pub fn iban_ok(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    // The country and check digits move to the end.
    let (head, tail) = compact.split_at(4);
    let mut remainder: u64 = 0;
    for c in tail.iter().chain(head) {
        let Some(value) = c.to_digit(36) else {
            return false;
        };
        let factor = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * factor + u64::from(value)) % 97;
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for (kind, regex) in regexes() {
            assert!(regex.is_some(), "{kind:?}");
        }
    }

    #[test]
    fn checksums() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(iban_ok("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_ok("GB82 WEST 1234 5698 7654 33"));
        // Short or odd input is not an IBAN, and does not panic.
        assert!(!iban_ok("GB8"));
        assert!(!iban_ok("ÄÖÜ1 2345 6789 0123 45"));
    }
}
