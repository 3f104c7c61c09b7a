//! `quarry tenants set`: an edit of a tenant's policy. Fields not named keep their values
//! (`--clear FIELD` removes one); the change is printed as a before -> after diff, so an
//! operator sees what a command did before traffic does.

use clap::ValueEnum;
use quarry_core::guardrails::{BedrockGuardrail, GuardrailConfig, InjectionAction, PiiAction};
use quarry_core::tenancy::{RateLimits, TenantPolicy};
use serde_json::Value;

/// A field `--clear` can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Field {
    Tiers,
    Models,
    BatchSenders,
    Prompts,
    RequestsPerMinute,
    TokensPerMinute,
    MaxTokens,
    Guardrails,
    DeniedWords,
    DeniedTopics,
    Bedrock,
    KnowledgeBases,
    Residency,
    Patterns,
    Audit,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyEdit {
    /// Tiers it may use (`*`: all). A new tenant gets `*`.
    #[arg(long, value_delimiter = ',')]
    pub tiers: Option<Vec<String>>,
    /// Models, profiles or ARNs it may name directly (`*`: all the routing knows).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// SQS SenderIds allowed to submit batch items for it (`*`: any producer).
    #[arg(long, value_delimiter = ',')]
    pub batch_senders: Option<Vec<String>>,
    /// Prompts it may use, by name (`*`: all).
    #[arg(long, value_delimiter = ',')]
    pub prompts: Option<Vec<String>>,
    #[arg(long)]
    pub requests_per_minute: Option<u64>,
    #[arg(long)]
    pub tokens_per_minute: Option<u64>,
    /// Most output tokens a request may ask for.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Refuse (503) rather than admit when its budget state cannot be read.
    #[arg(long)]
    pub strict_budget: Option<bool>,
    /// PII (and its own patterns) in its requests and answers: off, mask (placeholders the
    /// answer has restored), redact or block.
    #[arg(long, value_parser = ["off", "mask", "redact", "block"])]
    pub pii: Option<String>,
    /// A pattern of its own, `NAME=REGEX` (e.g. `CUSTOMER_ID=\b[0-9]{10}\b`), checked
    /// under `--pii` like the built-in kinds; repeat for more (they replace the tenant's).
    #[arg(long)]
    pub pattern: Vec<String>,
    /// Audit records of its answers: off, metadata or full.
    #[arg(long, value_parser = ["off", "metadata", "full"])]
    pub audit: Option<String>,
    /// PII kinds checked (all when empty): email, phone, credit_card, us_ssn, iban,
    /// aws_access_key.
    #[arg(long, value_delimiter = ',')]
    pub pii_kinds: Option<Vec<String>>,
    /// Words or phrases refused in input and output.
    #[arg(long, value_delimiter = ',')]
    pub denied_words: Option<Vec<String>>,
    /// A denied topic and its phrases, `NAME=phrase|phrase` (repeat for more topics; the
    /// topics given replace the tenant's).
    #[arg(long)]
    pub denied_topic: Vec<String>,
    /// Prompt-injection heuristics: off, flag or block.
    #[arg(long, value_parser = ["off", "flag", "block"])]
    pub injection: Option<String>,
    /// A Bedrock guardrail, `ID:VERSION` (VERSION a number or DRAFT).
    #[arg(long)]
    pub bedrock_guardrail: Option<String>,
    /// Knowledge Bases its prompts may retrieve from, by ID.
    #[arg(long, value_delimiter = ',')]
    pub knowledge_bases: Option<Vec<String>>,
    /// Create an application inference profile, tagged `tenant` and `stage`, for each model
    /// its tiers route to, and send its requests through them (cost allocation by tenant).
    #[arg(long)]
    pub inference_profiles: bool,
    /// Data residency: the only regions its requests may be served in (`eu-central-1,...`).
    #[arg(long, value_delimiter = ',')]
    pub regions: Option<Vec<String>>,
    /// Data residency: the only geographies its requests may be served in (`eu`, `us`,
    /// `apac`), their regions and cross-region profiles.
    #[arg(long, value_delimiter = ',')]
    pub geographies: Option<Vec<String>>,
    /// Fields to remove (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub clear: Vec<Field>,
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("--{what}: {e}"))
}

impl PolicyEdit {
    /// Applies the edit to `policy`: named fields replaced, cleared fields removed, the rest
    /// kept.
    pub fn apply(self, policy: &mut TenantPolicy) -> Result<(), String> {
        for field in &self.clear {
            match field {
                Field::Tiers => policy.allowed_tiers.clear(),
                Field::Models => policy.allowed_models.clear(),
                Field::BatchSenders => policy.batch_senders.clear(),
                Field::Prompts => policy.allowed_prompts = None,
                Field::RequestsPerMinute => {
                    if let Some(r) = policy.rate_limits.as_mut() {
                        r.requests_per_minute = None;
                    }
                }
                Field::TokensPerMinute => {
                    if let Some(r) = policy.rate_limits.as_mut() {
                        r.tokens_per_minute = None;
                    }
                }
                Field::MaxTokens => policy.max_tokens = None,
                Field::Guardrails => policy.guardrails = None,
                Field::DeniedWords => {
                    if let Some(g) = policy.guardrails.as_mut() {
                        g.denied_words.clear();
                    }
                }
                Field::DeniedTopics => {
                    if let Some(g) = policy.guardrails.as_mut() {
                        g.denied_topics.clear();
                    }
                }
                Field::Bedrock => {
                    if let Some(g) = policy.guardrails.as_mut() {
                        g.bedrock = None;
                    }
                }
                Field::KnowledgeBases => policy.knowledge_bases.clear(),
                Field::Residency => policy.residency = None,
                Field::Patterns => {
                    if let Some(g) = policy.guardrails.as_mut() {
                        g.patterns = Default::default();
                    }
                }
                Field::Audit => policy.audit = None,
            }
        }
        if let Some(v) = self.knowledge_bases {
            if let Some(bad) = v
                .iter()
                .find(|id| !quarry_core::retrieval::spec::valid_id(id) || id.starts_with("arn:"))
            {
                return Err(format!(
                    "--knowledge-bases: '{bad}' is not a Knowledge Base ID (10 letters and digits)"
                ));
            }
            policy.knowledge_bases = v;
        }
        if self.regions.is_some() || self.geographies.is_some() {
            let r = policy.residency.get_or_insert_with(Default::default);
            if let Some(regions) = self.regions {
                if let Some(bad) = regions.iter().find(|r| !quarry_core::routing::region_ok(r)) {
                    return Err(format!(
                        "--regions: '{bad}' is not an AWS region (eu-central-1, us-east-1, ...)"
                    ));
                }
                r.regions = regions;
            }
            if let Some(geographies) = self.geographies {
                const KNOWN: [&str; 7] = ["us", "eu", "apac", "ca", "sa", "me", "us-gov"];
                if let Some(bad) = geographies.iter().find(|g| !KNOWN.contains(&g.as_str())) {
                    return Err(format!(
                        "--geographies: '{bad}' is not one of {}",
                        KNOWN.join(", ")
                    ));
                }
                r.geographies = geographies;
            }
            if !r.is_restricted() {
                policy.residency = None;
            }
        }
        if let Some(v) = self.tiers {
            policy.allowed_tiers = v;
        }
        if let Some(v) = self.models {
            policy.allowed_models = v;
        }
        if let Some(v) = self.batch_senders {
            policy.batch_senders = v;
        }
        if self.prompts.is_some() {
            policy.allowed_prompts = self.prompts;
        }
        if self.requests_per_minute.is_some() || self.tokens_per_minute.is_some() {
            let limits = policy.rate_limits.get_or_insert(RateLimits::default());
            if let Some(r) = self.requests_per_minute {
                limits.requests_per_minute = Some(r);
            }
            if let Some(t) = self.tokens_per_minute {
                limits.tokens_per_minute = Some(t);
            }
        }
        if policy
            .rate_limits
            .is_some_and(|r| r.requests_per_minute.is_none() && r.tokens_per_minute.is_none())
        {
            policy.rate_limits = None;
        }
        if let Some(m) = self.max_tokens {
            policy.max_tokens = Some(m);
        }
        if let Some(s) = self.strict_budget {
            policy.strict_budget = s;
        }
        if let Some(a) = self.audit {
            policy.audit = Some(parse("audit", Value::String(a))?);
        }
        let touches_guardrails = self.pii.is_some()
            || !self.pattern.is_empty()
            || self.pii_kinds.is_some()
            || self.denied_words.is_some()
            || !self.denied_topic.is_empty()
            || self.injection.is_some()
            || self.bedrock_guardrail.is_some();
        if touches_guardrails {
            let g = policy
                .guardrails
                .get_or_insert_with(GuardrailConfig::default);
            if let Some(p) = self.pii {
                g.pii = parse::<PiiAction>("pii", Value::String(p))?;
            }
            if let Some(kinds) = self.pii_kinds {
                g.pii_kinds = parse("pii-kinds", Value::from(kinds))?;
            }
            if let Some(words) = self.denied_words {
                g.denied_words = words;
            }
            if !self.denied_topic.is_empty() {
                g.denied_topics.clear();
                for t in &self.denied_topic {
                    let (name, phrases) = t
                        .split_once('=')
                        .ok_or_else(|| format!("--denied-topic '{t}': write NAME=phrase|phrase"))?;
                    g.denied_topics.insert(
                        name.trim().to_owned(),
                        phrases.split('|').map(|p| p.trim().to_owned()).collect(),
                    );
                }
            }
            if !self.pattern.is_empty() {
                let mut patterns = serde_json::Map::new();
                for p in &self.pattern {
                    let (name, regex) = p
                        .split_once('=')
                        .ok_or_else(|| format!("--pattern '{p}': write NAME=REGEX"))?;
                    patterns.insert(name.trim().to_owned(), Value::String(regex.to_owned()));
                }
                g.patterns = parse("pattern", Value::Object(patterns))?;
            }
            if let Some(i) = self.injection {
                g.injection = parse::<InjectionAction>("injection", Value::String(i))?;
            }
            if let Some(b) = self.bedrock_guardrail {
                let (id, version) = b
                    .rsplit_once(':')
                    .ok_or_else(|| format!("--bedrock-guardrail '{b}': write ID:VERSION"))?;
                g.bedrock = Some(parse::<BedrockGuardrail>(
                    "bedrock-guardrail",
                    serde_json::json!({"id": id, "version": version}),
                )?);
            }
        }
        Ok(())
    }
}

/// The fields that changed, one line each: `field: before -> after`.
pub fn diff(before: Option<&TenantPolicy>, after: &TenantPolicy) -> Vec<String> {
    let fields = |p: Option<&TenantPolicy>| match p.map(serde_json::to_value) {
        Some(Ok(Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (fields(before), fields(Some(after)));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Value>| v.map_or_else(|| "(none)".to_owned(), Value::to_string);
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(old.get(k)), show(new.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_keeps_what_it_does_not_name() {
        let mut policy = TenantPolicy {
            allowed_tiers: vec!["fast".into()],
            allowed_models: vec!["amazon.nova-lite-v1:0".into()],
            batch_senders: vec!["AIDAX".into()],
            ..Default::default()
        };
        let before = policy.clone();
        PolicyEdit {
            requests_per_minute: Some(600),
            ..Default::default()
        }
        .apply(&mut policy)
        .unwrap();
        assert_eq!(policy.allowed_models, before.allowed_models);
        assert_eq!(policy.batch_senders, before.batch_senders);
        assert_eq!(policy.rate_limits.unwrap().requests_per_minute, Some(600));
        assert_eq!(
            diff(Some(&before), &policy),
            [r#"rate_limits: (none) -> {"requests_per_minute":600,"tokens_per_minute":null}"#]
        );

        PolicyEdit {
            clear: vec![Field::RequestsPerMinute, Field::BatchSenders],
            pii: Some("redact".into()),
            denied_topic: vec!["medical=diagnose|prescription".into()],
            bedrock_guardrail: Some("abc123:DRAFT".into()),
            ..Default::default()
        }
        .apply(&mut policy)
        .unwrap();
        assert!(policy.rate_limits.is_none() && policy.batch_senders.is_empty());
        let g = policy.guardrails.as_ref().unwrap();
        assert_eq!(g.pii, PiiAction::Redact);
        assert_eq!(g.denied_topics["medical"], ["diagnose", "prescription"]);
        assert_eq!(policy.allowed_models, before.allowed_models);

        let bad = PolicyEdit {
            bedrock_guardrail: Some("Not-Valid:1".into()),
            ..Default::default()
        }
        .apply(&mut policy.clone());
        assert!(bad.is_err());
    }
}
