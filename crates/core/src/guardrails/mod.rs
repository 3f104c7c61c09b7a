//! Guardrails Quarry applies itself, before and after the model: PII detection (email,
//! phone, credit card with a Luhn check, US SSN, IBAN with its mod-97 check, AWS access key)
//! and the tenant's own patterns, with `mask`, `redact` or `block`; denied words and topics,
//! and prompt-injection heuristics.
//!
//! Configured per tenant (the tenant directory's `guardrails`) and per prompt (the prompt's
//! `guardrails`); the two combine, the stricter setting winning. Findings are reported by
//! kind and count only: the matched text never leaves this module except as a mask.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod fold;
mod mask;
mod patterns;
mod pii;
mod policy;
mod stream;

#[cfg(test)]
mod proptests;

use fold::Folded;
pub use fold::digit_value;
pub use mask::{Masks, Restorer};
pub use patterns::Patterns;
pub use pii::{PiiKind, iban_ok, luhn};
pub use stream::{Released, StreamGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    #[default]
    Off,
    /// Replace each value with a stable placeholder (`[EMAIL_1]`) the model sees, and put
    /// the values back in the answer. Weaker than `redact` (the client gets the values
    /// back), so `redact` wins when tenant and prompt disagree. On the answer itself, new
    /// values the model wrote are redacted.
    Mask,
    /// Mask and continue.
    Redact,
    /// Refuse the request (or the answer).
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionAction {
    #[default]
    Off,
    /// Log and count, let it through.
    Flag,
    Block,
}

/// A Bedrock guardrail to apply (guardrailConfig on Converse, ApplyGuardrail on streams).
/// Its identifier and version are checked against Bedrock's patterns when configuration is
/// read, so a bad one is a configuration error, never a request to Bedrock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawBedrockGuardrail")]
pub struct BedrockGuardrail {
    pub id: String,
    pub version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBedrockGuardrail {
    id: String,
    version: String,
}

impl TryFrom<RawBedrockGuardrail> for BedrockGuardrail {
    type Error = String;

    fn try_from(raw: RawBedrockGuardrail) -> Result<Self, String> {
        let plain_id = |s: &str| {
            (1..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        // `ID`, or `arn:PARTITION:bedrock:REGION:ACCOUNT:guardrail/ID`.
        let id_ok = plain_id(&raw.id)
            || (raw.id.len() <= 2048
                && raw.id.strip_prefix("arn:").is_some_and(|arn| {
                    let parts: Vec<&str> = arn.splitn(5, ':').collect();
                    matches!(
                        parts[..],
                        [partition, "bedrock", region, account, resource]
                            if partition.starts_with("aws")
                                && (1..=20).contains(&region.len())
                                && account.len() == 12
                                && account.chars().all(|c| c.is_ascii_digit())
                                && resource.strip_prefix("guardrail/").is_some_and(plain_id)
                    )
                }));
        let version_ok = raw.version == "DRAFT"
            || ((1..=8).contains(&raw.version.len())
                && raw.version.chars().all(|c| c.is_ascii_digit())
                && !raw.version.starts_with('0'));
        match (id_ok, version_ok) {
            (true, true) => Ok(Self {
                id: raw.id,
                version: raw.version,
            }),
            (false, _) => Err(format!(
                "guardrail id '{}' is not a Bedrock guardrail identifier (an ID of lowercase letters and digits, or its ARN)",
                raw.id.chars().take(80).collect::<String>()
            )),
            (true, false) => Err(format!(
                "guardrail version '{}' is not a version number or DRAFT",
                raw.version.chars().take(20).collect::<String>()
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    #[serde(default)]
    pub pii: PiiAction,
    /// PII kinds checked; all when empty.
    #[serde(default)]
    pub pii_kinds: Vec<PiiKind>,
    /// Words or phrases refused in input and output (whole words, any case).
    #[serde(default)]
    pub denied_words: Vec<String>,
    /// Topic name -> the phrases that mark it; a topic found in input is refused.
    #[serde(default)]
    pub denied_topics: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub injection: InjectionAction,
    #[serde(default)]
    pub bedrock: Option<BedrockGuardrail>,
    /// The tenant's own patterns (name -> regular expression), under the `pii` action.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub patterns: Patterns,
}

impl GuardrailConfig {
    /// The stricter of two configurations (tenant and prompt).
    pub fn combine(&self, other: &GuardrailConfig) -> GuardrailConfig {
        let mut kinds: Vec<PiiKind> = self
            .pii_kinds
            .iter()
            .chain(&other.pii_kinds)
            .copied()
            .collect();
        kinds.sort();
        kinds.dedup();
        // An empty list means all kinds: if either side checks all, so does the result.
        if (self.pii != PiiAction::Off && self.pii_kinds.is_empty())
            || (other.pii != PiiAction::Off && other.pii_kinds.is_empty())
        {
            kinds.clear();
        }
        let mut topics = self.denied_topics.clone();
        for (t, phrases) in &other.denied_topics {
            topics
                .entry(t.clone())
                .or_default()
                .extend(phrases.iter().cloned());
        }
        GuardrailConfig {
            pii: self.pii.max(other.pii),
            pii_kinds: kinds,
            denied_words: self
                .denied_words
                .iter()
                .chain(&other.denied_words)
                .cloned()
                .collect(),
            denied_topics: topics,
            injection: self.injection.max(other.injection),
            bedrock: other.bedrock.clone().or_else(|| self.bedrock.clone()),
            patterns: self.patterns.union(&other.patterns),
        }
    }

    pub fn is_active(&self) -> bool {
        self.pii != PiiAction::Off
            || !self.denied_words.is_empty()
            || !self.denied_topics.is_empty()
            || self.injection != InjectionAction::Off
            || self.bedrock.is_some()
    }

    fn checks(&self, kind: PiiKind) -> bool {
        self.pii != PiiAction::Off && (self.pii_kinds.is_empty() || self.pii_kinds.contains(&kind))
    }
}

/// What the guardrails found, by kind and count (never the matched text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Findings {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redacted: BTreeMap<PiiKind, u32>,
    /// Custom pattern matches redacted, by pattern name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub patterns: BTreeMap<String, u32>,
    /// Values replaced by a placeholder (`mask`), by label.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub masked: BTreeMap<String, u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<String>,
    /// Content Quarry's guardrails could not read (images, PDFs and office documents):
    /// said, rather than passed as checked. Bedrock's own guardrail reads images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<String>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.redacted.is_empty()
            && self.patterns.is_empty()
            && self.masked.is_empty()
            && self.blocked.is_empty()
            && self.flagged.is_empty()
            && self.unchecked.is_empty()
    }

    pub fn merge(&mut self, other: Findings) {
        for (k, n) in other.redacted {
            *self.redacted.entry(k).or_default() += n;
        }
        for (k, n) in other.patterns {
            *self.patterns.entry(k).or_default() += n;
        }
        for (k, n) in other.masked {
            *self.masked.entry(k).or_default() += n;
        }
        self.blocked.extend(other.blocked);
        self.flagged.extend(other.flagged);
        self.unchecked.extend(other.unchecked);
    }

    /// Actions taken (for the GuardrailActions metric).
    pub fn actions(&self) -> u32 {
        self.redacted.values().sum::<u32>()
            + self.patterns.values().sum::<u32>()
            + self.masked.values().sum::<u32>()
            + self.blocked.len() as u32
            + self.flagged.len() as u32
    }
}

/// A sensitive value found: a PII kind or a custom pattern, where in the folded text.
struct Hit<'a> {
    kind: Option<PiiKind>,
    pattern: &'a str,
    span: std::ops::Range<usize>,
}

impl Hit<'_> {
    /// The placeholder's label: `EMAIL`, `CUSTOMER_ID`.
    fn label(&self) -> &str {
        match self.kind {
            Some(k) => k.mask().trim_matches(['[', ']']),
            None => self.pattern,
        }
    }
}

/// PII kinds and custom patterns in a folded text, in order and apart (a match overlapping
/// an earlier one is dropped; built-in kinds come first).
fn hits<'a>(config: &'a GuardrailConfig, folded: &str) -> Vec<Hit<'a>> {
    let mut all: Vec<Hit<'a>> = pii::find(folded, |k| config.checks(k))
        .into_iter()
        .map(|f| Hit {
            kind: Some(f.kind),
            pattern: "",
            span: f.span,
        })
        .collect();
    for (name, span) in config.patterns.find(folded) {
        if !all
            .iter()
            .any(|h| h.span.start < span.end && span.start < h.span.end)
        {
            all.push(Hit {
                kind: None,
                pattern: name,
                span,
            });
        }
    }
    all.sort_by_key(|h| h.span.start);
    all
}

/// Redacts or detects PII and custom patterns in `text`; returns the (possibly masked) text
/// and findings. `mask` is treated as `redact` here: this is for text no placeholder may
/// come from (answers), see [`mask_input`] for the input.
///
/// Matching runs on the folded text (see `fold`): digits of any script, full-width forms,
/// any whitespace or dash, and invisible characters do not hide a match. The mask replaces
/// the original characters the match came from.
pub fn scan_pii(config: &GuardrailConfig, text: &str) -> (String, Findings) {
    scan_with(config, text, None)
}

/// Like [`scan_pii`], and under `mask` each value becomes its placeholder in `masks`.
pub fn mask_input(config: &GuardrailConfig, text: &str, masks: &mut Masks) -> (String, Findings) {
    scan_with(config, text, Some(masks))
}

fn scan_with(
    config: &GuardrailConfig,
    text: &str,
    mut masks: Option<&mut Masks>,
) -> (String, Findings) {
    let mut findings = Findings::default();
    if config.pii == PiiAction::Off {
        return (text.to_owned(), findings);
    }
    let folded = Folded::new(text);
    let found = hits(config, folded.text());
    if found.is_empty() {
        return (text.to_owned(), findings);
    }
    let mut replacements: Vec<(std::ops::Range<usize>, String)> = Vec::with_capacity(found.len());
    for h in &found {
        let replacement = match (config.pii, masks.as_deref_mut()) {
            (PiiAction::Block, _) => {
                let label = match h.kind {
                    Some(k) => format!("pii:{}", k.as_str()),
                    None => format!("pattern:{}", h.pattern),
                };
                if !findings.blocked.contains(&label) {
                    findings.blocked.push(label);
                }
                // Masked all the same: text that is shown rather than refused (a Knowledge
                // Base's passages in `sources`) never shows the value.
                format!("[{}]", h.label())
            }
            (PiiAction::Mask, Some(masks)) => {
                let original = text
                    .get(folded.original_span(h.span.clone()))
                    .unwrap_or_default();
                *findings.masked.entry(h.label().to_owned()).or_default() += 1;
                masks.placeholder(h.label(), original)
            }
            _ => {
                match h.kind {
                    Some(k) => *findings.redacted.entry(k).or_default() += 1,
                    None => *findings.patterns.entry(h.pattern.to_owned()).or_default() += 1,
                }
                format!("[{}]", h.label())
            }
        };
        replacements.push((h.span.clone(), replacement));
    }
    let spans: Vec<_> = replacements
        .iter()
        .map(|(span, r)| (span.clone(), r.as_str()))
        .collect();
    (folded.masked(&spans), findings)
}

/// Denied words (input and output) and, for input, denied topics and injection heuristics.
pub fn scan_policy(config: &GuardrailConfig, text: &str, input: bool) -> Findings {
    let mut findings = Findings::default();
    let wants_folded = !config.denied_words.is_empty()
        || (input
            && (!config.denied_topics.is_empty() || config.injection != InjectionAction::Off));
    if !wants_folded {
        return findings;
    }
    let folded = Folded::new(text);
    let folded = folded.text();
    if policy::any(&config.denied_words, folded) {
        findings.blocked.push("denied_word".into());
    }
    if input {
        for (topic, phrases) in &config.denied_topics {
            if policy::any(phrases, folded) {
                findings.blocked.push(format!("denied_topic:{topic}"));
            }
        }
        if config.injection != InjectionAction::Off && policy::injection(folded) {
            match config.injection {
                InjectionAction::Block => findings.blocked.push("prompt_injection".into()),
                _ => findings.flagged.push("prompt_injection".into()),
            }
        }
    }
    findings
}

/// Everything for one text: PII (masked when redacting), then policy.
pub fn check(config: &GuardrailConfig, text: &str, input: bool) -> (String, Findings) {
    let (masked, mut findings) = scan_pii(config, text);
    findings.merge(scan_policy(config, text, input));
    (masked, findings)
}

/// Everything for one text of the input: PII and patterns (placeholders under `mask`),
/// then policy.
pub fn check_input(config: &GuardrailConfig, text: &str, masks: &mut Masks) -> (String, Findings) {
    let (masked, mut findings) = mask_input(config, text, masks);
    findings.merge(scan_policy(config, text, true));
    (masked, findings)
}

#[cfg(test)]
mod tests;
