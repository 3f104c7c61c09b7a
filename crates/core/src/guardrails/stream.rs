//! Guardrails on a stream: text is released only once it is checked, and only up to a point
//! no match can straddle, so that for any split of a text into deltas the released text is
//! the redaction of the whole, and text a `block` refuses is never sent first.
//!
//! A release point is a run of whitespace, right after it. PII patterns cross whitespace only
//! one character at a time and only between `[0-9A-Z)]` and `[0-9A-Z(]` (phone numbers,
//! grouped card numbers, SSNs, IBANs), so a run is a release point unless it is a single
//! whitespace character between two such characters. Denied phrases can span words: the
//! guard holds back as many whole words as the longest phrase has, less one, and checks each
//! release together with the words around it.

use super::fold::Folded;
use super::{Findings, GuardrailConfig, PiiAction, policy, scan_pii};

/// What a delta released: the text to send now, or the refusal.
pub type Released = Result<String, Box<Findings>>;

pub struct StreamGuard {
    config: GuardrailConfig,
    /// Received, not yet released.
    pending: String,
    /// The last words released, for a phrase that starts before a release point.
    context: String,
    /// Whole words a release point must have after it (the longest denied phrase, less one).
    hold_words: usize,
    /// Release points found in `pending` (byte offsets), with the whole words before each.
    cuts: Vec<(usize, usize)>,
    scan: Scan,
    pub findings: Findings,
}

/// Where the search for release points stopped in `pending`.
#[derive(Default)]
struct Scan {
    /// Bytes of `pending` looked at.
    at: usize,
    /// Whole words (followed by whitespace) in `pending[..at]`.
    words: usize,
    /// The folded form of the last visible character before the current whitespace run.
    before: Option<char>,
    /// The current whitespace run: its length in characters, when `at` is inside one.
    run: usize,
    in_word: bool,
}

/// The class of characters a PII match can cross whitespace between.
fn joins(left: Option<char>, right: Option<char>) -> bool {
    let l = left.is_some_and(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == ')');
    let r = right.is_some_and(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == '(');
    l && r
}

/// The first and last characters of a character's folded form (`None` when it folds to
/// nothing, as invisible characters do).
fn folded_ends(c: char) -> Option<(char, char)> {
    // Every character of a streamed text passes here: ASCII folds to itself, no allocation.
    if c.is_ascii() {
        return Some((c, c));
    }
    let mut buf = [0u8; 4];
    let f = Folded::new(c.encode_utf8(&mut buf));
    let mut chars = f.text().chars();
    let first = chars.next()?;
    Some((first, chars.last().unwrap_or(first)))
}

impl StreamGuard {
    /// A guard for what `config` checks on output; `None` when it checks nothing on text.
    pub fn new(config: &GuardrailConfig) -> Option<Self> {
        if config.pii == PiiAction::Off && config.denied_words.is_empty() {
            return None;
        }
        Some(Self {
            hold_words: policy::most_words(&config.denied_words).saturating_sub(1),
            config: config.clone(),
            pending: String::new(),
            context: String::new(),
            cuts: Vec::new(),
            scan: Scan::default(),
            findings: Findings::default(),
        })
    }

    /// Feeds a delta; returns the text now safe to send (maybe empty), or the refusal.
    pub fn push(&mut self, delta: &str) -> Released {
        self.pending.push_str(delta);
        self.find_cuts();
        let eligible = self
            .cuts
            .iter()
            .rev()
            .find(|(_, before)| self.scan.words - before >= self.hold_words)
            .map(|(at, _)| *at);
        match eligible {
            Some(cut) => self.release(cut),
            None => Ok(String::new()),
        }
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Released {
        self.release(self.pending.len())
    }

    /// Extends the scan over what arrived: a release point is decided when the first visible
    /// character after a whitespace run arrives.
    fn find_cuts(&mut self) {
        let Self {
            pending,
            scan,
            cuts,
            ..
        } = self;
        let Some(rest) = pending.get(scan.at..) else {
            return;
        };
        for (i, c) in rest.char_indices() {
            let at = scan.at + i;
            if c.is_whitespace() {
                if scan.in_word {
                    scan.words += 1;
                    scan.in_word = false;
                }
                scan.run += 1;
                continue;
            }
            let Some((first, last)) = folded_ends(c) else {
                continue;
            };
            if scan.run > 0 {
                if scan.run > 1 || !joins(scan.before, Some(first)) {
                    cuts.push((at, scan.words));
                }
                scan.run = 0;
            }
            scan.in_word = true;
            scan.before = Some(last);
        }
        scan.at = pending.len();
    }

    /// Checks `pending[..cut]` and releases it.
    fn release(&mut self, cut: usize) -> Released {
        let head: String = self.pending.get(..cut).unwrap_or_default().to_owned();
        // Denied phrases: the head with the words around it; a match touching the head
        // refuses it (matches wholly in the context were checked with the text before).
        if !self.config.denied_words.is_empty() {
            let after = self.words_after(cut);
            let window = format!(
                "{}{}",
                self.context,
                self.pending.get(..after).unwrap_or_default()
            );
            let folded = Folded::new(&window);
            let head_span = self.context.len()..self.context.len() + head.len();
            if policy::spans(&self.config.denied_words, folded.text())
                .into_iter()
                .map(|s| folded.original_span(s))
                .any(|s| s.start < head_span.end && head_span.start < s.end)
            {
                let refused = Findings {
                    blocked: vec!["denied_word".into()],
                    ..Findings::default()
                };
                self.findings.merge(refused.clone());
                return Err(Box::new(refused));
            }
        }
        let (masked, found) = scan_pii(&self.config, &head);
        if !found.blocked.is_empty() {
            self.findings.merge(found.clone());
            return Err(Box::new(found));
        }
        self.findings.merge(found);
        self.keep_context(&head);
        self.pending.drain(..cut);
        let words_released = self
            .cuts
            .iter()
            .find(|(at, _)| *at == cut)
            .map_or(self.scan.words, |(_, w)| *w);
        self.cuts.retain(|(at, _)| *at > cut);
        for (at, w) in &mut self.cuts {
            *at -= cut;
            *w -= words_released;
        }
        self.scan.at -= cut.min(self.scan.at);
        self.scan.words -= words_released.min(self.scan.words);
        Ok(masked)
    }

    /// The end of the `hold_words`-th whole word after `cut` (or of the text).
    fn words_after(&self, cut: usize) -> usize {
        if self.hold_words == 0 {
            return cut;
        }
        let rest = self.pending.get(cut..).unwrap_or_default();
        let mut words = 0;
        let mut in_word = false;
        for (i, c) in rest.char_indices() {
            if c.is_whitespace() {
                if in_word {
                    words += 1;
                    if words >= self.hold_words {
                        return cut + i;
                    }
                }
                in_word = false;
            } else {
                in_word = true;
            }
        }
        self.pending.len()
    }

    /// Keeps the last `hold_words` words released, with the whitespace after them.
    fn keep_context(&mut self, head: &str) {
        if self.hold_words == 0 {
            return;
        }
        self.context.push_str(head);
        let mut words = 0;
        let mut in_word = false;
        let mut start = 0;
        for (i, c) in self.context.char_indices().rev() {
            if c.is_whitespace() {
                if in_word {
                    words += 1;
                    if words == self.hold_words {
                        start = i + c.len_utf8();
                        break;
                    }
                }
                in_word = false;
            } else {
                in_word = true;
            }
        }
        self.context.drain(..start);
    }
}
