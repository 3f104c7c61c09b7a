//! Prompt versions from the parameter store: selectors (version, label, default), the
//! warm cache with last-known-good, and experiments that pick a label by a stable hash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::params::{CachedParams, ParamError, Parameter};
use crate::ports::ParameterStore;

use super::render::CompiledPrompt;
use super::spec::*;

/// How a request picks a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSelector {
    /// Label `prod` when it exists, else the latest version.
    Default,
    Latest,
    Version(u64),
    Label(String),
}

impl PromptSelector {
    /// The SSM name suffix (`:3`, `:canary`), or none for the latest version.
    fn suffix(&self) -> String {
        match self {
            Self::Default => ":prod".into(),
            Self::Latest => String::new(),
            Self::Version(v) => format!(":{v}"),
            Self::Label(l) => format!(":{l}"),
        }
    }
}

/// `NAME`, `NAME@VERSION` or `NAME:LABEL`.
pub fn parse_reference(s: &str) -> Result<(String, PromptSelector), PromptError> {
    let (name, selector) = if let Some((n, v)) = s.split_once('@') {
        let v: u64 = v
            .parse()
            .map_err(|_| PromptError::InvalidName(s.to_owned()))?;
        (n, PromptSelector::Version(v))
    } else if let Some((n, l)) = s.split_once(':') {
        validate_label(l)?;
        (n, PromptSelector::Label(l.to_owned()))
    } else {
        (s, PromptSelector::Latest)
    };
    validate_name(name)?;
    Ok((name.to_owned(), selector))
}

/// A resolved prompt version.
#[derive(Debug, Clone)]
pub struct PromptVersion {
    pub name: String,
    pub version: u64,
    /// The label it was reached through, if any.
    pub label: Option<String>,
    pub prompt: Arc<CompiledPrompt>,
}

fn parse_prompt(p: &Parameter) -> Result<CompiledPrompt, ParamError> {
    let spec: PromptSpec = serde_json::from_str(&p.value).map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })?;
    CompiledPrompt::compile(spec).map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })
}

/// Label weights per prompt for A/B between channels: `{"summarize": {"prod": 90, "canary": 10}}`.
pub type Experiments = BTreeMap<String, BTreeMap<String, u32>>;

/// Picks a label by a stable hash of (prompt, key): the same key always lands on the same
/// channel while the weights stay the same.
pub fn choose_label(prompt: &str, key: &str, weights: &BTreeMap<String, u32>) -> Option<String> {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let digest = Sha256::digest(format!("{prompt}\u{0}{key}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let mut point = u64::from_be_bytes(head) % total;
    for (label, w) in weights {
        let w = u64::from(*w);
        if point < w {
            return Some(label.clone());
        }
        point -= w;
    }
    None
}

/// Prompts from the parameter store, cached in the warm process with a max age, serving the
/// last-known-good version when the store fails.
pub struct PromptStore {
    prefix: String,
    cache: CachedParams<CompiledPrompt>,
    /// Prompts last seen without a `prod` label: while the store is down, their default is
    /// the (last-known-good) latest version; for the others it is never a guess. Only
    /// prompts that exist are kept.
    unlabelled: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Names (with version or label) the store said do not exist, and when: asked again
    /// within `negative_ttl`, they are refused without a call, so unknown names cannot flood
    /// the store. Bounded.
    missing: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    negative_ttl: Duration,
}

/// How long a missing prompt is remembered, at most (never longer than the cache's max age,
/// so a prompt pushed now is seen as soon as configuration is).
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// How many missing names are remembered; past it the map starts again.
const MISSING_KEPT: usize = 4096;

impl PromptStore {
    /// `prefix` is the stage's parameter prefix (`/quarry/dev`).
    pub fn new(store: Arc<dyn ParameterStore>, prefix: &str, max_age: Duration) -> Self {
        Self {
            prefix: format!("{}/prompts", prefix.trim_end_matches('/')),
            cache: CachedParams::new(store, max_age, false, parse_prompt),
            unlabelled: std::sync::Mutex::new(std::collections::HashSet::new()),
            missing: std::sync::Mutex::new(std::collections::HashMap::new()),
            negative_ttl: NEGATIVE_TTL.min(max_age),
        }
    }

    /// The store, unless it said `key` does not exist a moment ago.
    async fn lookup(&self, key: &str) -> Result<(Arc<CompiledPrompt>, u64), ParamError> {
        let now = Instant::now();
        let known_missing = |m: &mut std::collections::HashMap<String, Instant>| {
            m.get(key)
                .is_some_and(|at| now.duration_since(*at) < self.negative_ttl)
        };
        if known_missing(&mut self.missing_map()) {
            return Err(ParamError::NotFound(key.to_owned()));
        }
        let result = self.cache.get(key).await;
        if matches!(result, Err(ParamError::NotFound(_))) && !self.negative_ttl.is_zero() {
            let mut missing = self.missing_map();
            if missing.len() >= MISSING_KEPT {
                missing.clear();
            }
            missing.insert(key.to_owned(), now);
        }
        result
    }

    fn missing_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Instant>> {
        self.missing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unlabelled_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unlabelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn parameter_name(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, name)
    }

    pub async fn get(&self, name: &str, selector: &PromptSelector) -> Result<PromptVersion, Error> {
        validate_name(name)?;
        if let PromptSelector::Label(l) = selector {
            validate_label(l)?;
        }
        let base = self.parameter_name(name);
        let fetch = |sel: PromptSelector| {
            let key = format!("{base}{}", sel.suffix());
            async move { (sel, self.lookup(&key).await) }
        };
        let (sel, result) = fetch(selector.clone()).await;
        let (sel, result) = match (selector, result) {
            // No `prod` label yet: the latest version is the default.
            (PromptSelector::Default, Err(ParamError::NotFound(_))) => {
                let latest = fetch(PromptSelector::Latest).await;
                if latest.1.is_ok() {
                    self.unlabelled_set().insert(name.to_owned());
                }
                latest
            }
            // The store is down and this prompt had no `prod` label when last read: its
            // default is the latest version, served last-known-good if cached.
            (PromptSelector::Default, Err(ParamError::Unavailable(reason)))
                if self.unlabelled_set().contains(name) =>
            {
                match fetch(PromptSelector::Latest).await {
                    (sel, Ok(found)) => (sel, Ok(found)),
                    (sel, Err(_)) => (sel, Err(ParamError::Unavailable(reason))),
                }
            }
            (PromptSelector::Default, Ok(found)) => {
                self.unlabelled_set().remove(name);
                (sel, Ok(found))
            }
            (_, r) => (sel, r),
        };
        match result {
            Ok((prompt, version)) => Ok(PromptVersion {
                name: name.to_owned(),
                version,
                label: match sel {
                    PromptSelector::Label(l) => Some(l),
                    PromptSelector::Default => Some("prod".into()),
                    _ => None,
                },
                prompt,
            }),
            Err(ParamError::NotFound(_)) => Err(Error::bad_request(
                "prompt",
                match selector {
                    PromptSelector::Version(v) => format!("prompt '{name}' has no version {v}"),
                    PromptSelector::Label(l) => format!("prompt '{name}' has no label '{l}'"),
                    _ => format!("unknown prompt '{name}'"),
                },
            )),
            Err(e) => Err(Error::Config(e)),
        }
    }
}
