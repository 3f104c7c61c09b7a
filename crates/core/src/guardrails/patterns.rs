//! A tenant's own sensitive patterns (`patterns: {CUSTOMER_ID: '\b[0-9]{10}\b'}`), checked
//! beside the built-in PII kinds under the same action (`redact`, `mask`, `block`).
//!
//! A pattern is checked when configuration is read, so a bad one is a configuration error and
//! never a request that slips through:
//! - its name is the label of its placeholder: `[A-Z][A-Z0-9_]{0,31}`;
//! - it compiles within a small size limit (the `regex` crate runs in linear time, so no
//!   pattern can stall a request);
//! - it cannot match whitespace. The stream guard releases text at whitespace (see
//!   `stream`): a match that could span a release point could leave half of it unmasked in a
//!   stream. Use `\S` or explicit classes rather than `.` or `\s`.
//!
//! Patterns run on the folded text (digits of every script are ASCII there, full-width forms
//! are plain), like the built-in kinds.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind};
use serde::{Deserialize, Serialize};

/// The most patterns one configuration may define.
pub const MAX_PATTERNS: usize = 32;
/// The longest pattern source accepted.
const MAX_SOURCE: usize = 512;
/// Compiled size limit of one pattern (bytes).
const SIZE_LIMIT: usize = 1 << 20;

/// Named custom patterns, compiled once when read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Patterns(Arc<Vec<(String, Regex)>>);

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.sources() == other.sources()
    }
}

impl Patterns {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sources(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(name, r)| (name.clone(), r.as_str().to_owned()))
            .collect()
    }

    /// Both sets; where both name a pattern, `self`'s (the tenant's) is kept.
    pub fn union(&self, other: &Patterns) -> Patterns {
        let mut all = other.sources();
        all.extend(self.sources());
        Patterns::try_from(all).unwrap_or_else(|_| self.clone())
    }

    /// Matches in a folded text, by pattern name.
    pub fn find<'a>(&'a self, folded: &str) -> Vec<(&'a str, Range<usize>)> {
        self.0
            .iter()
            .flat_map(|(name, r)| {
                r.find_iter(folded)
                    .filter(|m| !m.is_empty())
                    .map(|m| (name.as_str(), m.range()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl From<Patterns> for BTreeMap<String, String> {
    fn from(p: Patterns) -> Self {
        p.sources()
    }
}

impl TryFrom<BTreeMap<String, String>> for Patterns {
    type Error = String;

    fn try_from(raw: BTreeMap<String, String>) -> Result<Self, String> {
        if raw.len() > MAX_PATTERNS {
            return Err(format!(
                "{} custom patterns: at most {MAX_PATTERNS} are allowed",
                raw.len()
            ));
        }
        let mut compiled = Vec::with_capacity(raw.len());
        for (name, source) in raw {
            compiled.push((name.clone(), compile(&name, &source)?));
        }
        Ok(Self(Arc::new(compiled)))
    }
}

fn compile(name: &str, source: &str) -> Result<Regex, String> {
    let shown: String = name.chars().take(40).collect();
    let name_ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(format!(
            "custom pattern name '{shown}' must be 1 to 32 characters of A-Z, 0-9 and _, starting with a letter (it becomes the placeholder's label)"
        ));
    }
    if source.len() > MAX_SOURCE {
        return Err(format!(
            "custom pattern {name} is {} bytes long: at most {MAX_SOURCE}",
            source.len()
        ));
    }
    let hir = regex_syntax::Parser::new()
        .parse(source)
        .map_err(|e| format!("custom pattern {name} is not a valid regular expression: {e}"))?;
    if can_match_whitespace(&hir) {
        return Err(format!(
            "custom pattern {name} can match whitespace: patterns must match within a word (use \\S or explicit classes instead of . or \\s), so that a stream can be checked piece by piece"
        ));
    }
    if hir.properties().minimum_len() == Some(0) {
        return Err(format!("custom pattern {name} matches the empty string"));
    }
    regex::RegexBuilder::new(source)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| format!("custom pattern {name} does not compile: {e}"))
}

/// True when some character the pattern can consume is whitespace.
fn can_match_whitespace(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => String::from_utf8_lossy(&lit.0)
            .chars()
            .any(char::is_whitespace),
        HirKind::Class(Class::Unicode(class)) => class.ranges().iter().any(|r| {
            // Whitespace characters are few: test each against the range.
            WHITESPACE.iter().any(|&c| r.start() <= c && c <= r.end())
        }),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .any(|r| (r.start()..=r.end()).any(|b| (b as char).is_whitespace())),
        HirKind::Repetition(rep) => can_match_whitespace(&rep.sub),
        HirKind::Capture(cap) => can_match_whitespace(&cap.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().any(can_match_whitespace),
    }
}

/// Every character with the Unicode White_Space property.
const WHITESPACE: [char; 25] = [
    '\u{9}', '\u{A}', '\u{B}', '\u{C}', '\u{D}', ' ', '\u{85}', '\u{A0}', '\u{1680}', '\u{2000}',
    '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
    '\u{2009}', '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}', '\u{3000}',
];

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Patterns, String> {
        Patterns::try_from(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn whitespace_table_is_every_white_space_char() {
        let all: Vec<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        assert_eq!(all, WHITESPACE);
    }

    #[test]
    fn patterns_are_checked_when_read() {
        assert!(read(&[("CUSTOMER_ID", r"\b[0-9]{10}\b")]).is_ok());
        assert!(read(&[("ORDER", r"ORD-\d{6}")]).is_ok());
        for (name, source) in [
            ("customer", r"\d{10}"),
            ("1ID", r"\d{10}"),
            ("ID", r"\d{3} \d{3}"),
            ("ID", r"\d{3}\s\d{3}"),
            ("ID", r"acct.\d+"),
            ("ID", r"[^a]+"),
            ("ID", r"(unclosed"),
            ("ID", r"x*"),
        ] {
            assert!(read(&[(name, source)]).is_err(), "{name} {source}");
        }
        let too_many: Vec<(String, String)> = (0..=MAX_PATTERNS)
            .map(|i| (format!("P{i}"), r"\d{4}".to_owned()))
            .collect();
        assert!(Patterns::try_from(too_many.into_iter().collect::<BTreeMap<_, _>>()).is_err());
    }

    #[test]
    fn finds_by_name_and_unions_keep_the_tenants() {
        let tenant = read(&[("CUSTOMER_ID", r"\b[0-9]{10}\b")]).unwrap();
        let prompt = read(&[("CUSTOMER_ID", r"\b[0-9]{8}\b"), ("ORDER", r"ORD-\d+")]).unwrap();
        let both = tenant.union(&prompt);
        let found = both.find("customer 1234567890 order ORD-77 and 12345678");
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["CUSTOMER_ID", "ORDER"]);
    }
}
