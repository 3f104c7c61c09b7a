//! The text the guardrails match on: a folded view of the original, so that look-alike
//! characters cannot hide a match, with a map back to the original for masking.
//!
//! Per character: compatibility forms decompose (full-width `４` to `4`, math `𝟒` to `4`,
//! ligatures), decimal digits of every script become ASCII digits, every whitespace becomes
//! a space, dash look-alikes become `-`, and format characters (zero-width spaces, soft
//! hyphens, direction marks) and combining marks are dropped. Case is left alone: patterns
//! say where case matters.

use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Code points of the digit zero of each decimal digit set (Unicode 16); each set is the ten
/// code points from its zero. Digits of sets added later are found by [`digit_value`]'s
/// fallback.
pub(super) const DIGIT_ZEROS: [u32; 75] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950,
];

/// Format characters (general category Cf): invisible, so dropped.
const FORMAT: [(u32, u32); 21] = [
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// The value of a decimal digit of any script, `None` for anything else.
pub fn digit_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return c.to_digit(10);
    }
    if c.is_ascii() {
        return None;
    }
    let cp = c as u32;
    if let Some(zero) = DIGIT_ZEROS
        .iter()
        .rev()
        .find(|z| **z <= cp)
        .filter(|z| cp - **z < 10)
    {
        return Some(cp - zero);
    }
    // A set newer than the table: decimal digits are assigned in runs of ten from zero, so
    // the value is the distance to the start of the run of digits, modulo ten.
    if !is_decimal(c) {
        return None;
    }
    let mut start = cp;
    while let Some(prev) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_decimal(prev) {
            break;
        }
        start -= 1;
    }
    Some((cp - start) % 10)
}

fn is_decimal(c: char) -> bool {
    static ND: OnceLock<Option<Regex>> = OnceLock::new();
    let mut buf = [0u8; 4];
    ND.get_or_init(|| Regex::new(r"^\p{Nd}$").ok())
        .as_ref()
        .is_some_and(|r| r.is_match(c.encode_utf8(&mut buf)))
}

fn is_format(c: char) -> bool {
    let cp = c as u32;
    FORMAT.iter().any(|(lo, hi)| (*lo..=*hi).contains(&cp))
}

fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2015}' | '\u{2043}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}'
    )
}

/// Pushes the folded form of `c` (nothing, one or a few characters).
fn fold_char(c: char, out: &mut String) {
    if !fold_simple(c, out) {
        decompose_compatible(c, |d| {
            if !fold_simple(d, out) {
                out.push(d);
            }
        });
    }
}

/// The folds that need no decomposition; false when `c` is none of them.
fn fold_simple(c: char, out: &mut String) -> bool {
    if c.is_ascii() {
        out.push(c);
    } else if c.is_whitespace() {
        out.push(' ');
    } else if let Some(d) = digit_value(c) {
        out.push(char::from(b'0' + d as u8));
    } else if is_dash(c) {
        out.push('-');
    } else if !(is_format(c) || is_combining_mark(c)) {
        return false;
    }
    true
}

/// A folded view of a text and, for each of its bytes, where it came from.
pub struct Folded<'a> {
    original: &'a str,
    text: String,
    /// For each byte of `text`, the byte range of the original character it came from;
    /// empty when nothing was folded (the two texts are the same).
    origin: Vec<Range<usize>>,
}

impl<'a> Folded<'a> {
    pub fn new(original: &'a str) -> Self {
        // Printable ASCII and the usual whitespace fold to themselves: no map needed.
        if original.is_ascii() {
            return Self {
                original,
                text: original.to_owned(),
                origin: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        for (i, c) in original.char_indices() {
            let before = text.len();
            fold_char(c, &mut text);
            let from = i..i + c.len_utf8();
            origin.extend(std::iter::repeat_n(from, text.len() - before));
        }
        Self {
            original,
            text,
            origin,
        }
    }

    /// The folded text, to match on.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The original span a match of the folded text covers: from the start of the first
    /// character it came from to the end of the last, so a mask hides all of it.
    pub fn original_span(&self, folded: Range<usize>) -> Range<usize> {
        if self.origin.is_empty() {
            return folded;
        }
        let start = self
            .origin
            .get(folded.start)
            .map_or(self.original.len(), |r| r.start);
        let end = folded
            .end
            .checked_sub(1)
            .and_then(|last| self.origin.get(last))
            .map_or(start, |r| r.end);
        start..end.max(start)
    }

    /// The original text with each span replaced by its mask (spans in order, apart).
    pub fn masked(&self, spans: &[(Range<usize>, &str)]) -> String {
        let mut out = String::with_capacity(self.original.len());
        let mut at = 0;
        for (span, mask) in spans {
            let span = self.original_span(span.clone());
            if span.start < at {
                continue;
            }
            out.push_str(self.original.get(at..span.start).unwrap_or_default());
            out.push_str(mask);
            at = span.end;
        }
        out.push_str(self.original.get(at..).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_of_every_script_fold_to_ascii() {
        for zero in DIGIT_ZEROS {
            for v in 0..10 {
                let c = char::from_u32(zero + v).unwrap();
                assert_eq!(digit_value(c), Some(v), "U+{:X}", zero + v);
            }
        }
        assert_eq!(digit_value('a'), None);
        assert_eq!(digit_value('Ⅳ'), None);
    }

    #[test]
    fn look_alikes_fold_and_spans_map_back() {
        let s = "ssn\u{00A0}１２３\u{2011}4\u{200B}5‐６７８９ é";
        let f = Folded::new(s);
        assert_eq!(f.text(), "ssn 123-45-6789 e");
        let start = f.text().find('1').unwrap();
        let span = f.original_span(start..start + 11);
        assert_eq!(&s[span.clone()], "１２３\u{2011}4\u{200B}5‐６７８９");
        assert_eq!(f.masked(&[(start..start + 11, "[X]")]), "ssn\u{00A0}[X] é");
    }
}
