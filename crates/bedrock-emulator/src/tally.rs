//! Input token counting, and the prompt-cache checkpoints (`cachePoint` blocks) that split
//! the input into a cacheable prefix and the rest.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::ModelSpec;
use crate::error::BedrockError;
use crate::generate::count_tokens;

/// How long a cache checkpoint lives: Bedrock's `CacheTTL` (`5m`, the default, or `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheTtl {
    #[default]
    FiveMinutes,
    OneHour,
}

impl CacheTtl {
    /// The wire value (`usage.cacheDetails[].ttl`, `cachePoint.ttl`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }

    /// The entry's lifetime; the five-minute one is configurable so tests can expire it.
    pub fn lifetime(self, five_minute_secs: u64) -> Duration {
        match self {
            Self::FiveMinutes => Duration::from_secs(five_minute_secs),
            Self::OneHour => Duration::from_secs(3600),
        }
    }
}

/// The input up to the last cache checkpoint: its tokens, a hash of it, and its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePrefix {
    pub tokens: u32,
    pub key: [u8; 32],
    pub ttl: CacheTtl,
}

/// Accumulates input tokens and the hash of everything before each cache checkpoint.
pub struct TokenTally {
    pub tokens: u32,
    hasher: Sha256,
    pub cache_prefix: Option<CachePrefix>,
    pub has_cache_point: bool,
}

impl TokenTally {
    pub fn new(model: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        Self {
            tokens: 0,
            hasher,
            cache_prefix: None,
            has_cache_point: false,
        }
    }

    pub fn add_text(&mut self, text: &str) {
        self.tokens += count_tokens(text);
        self.hasher.update(text.as_bytes());
        self.hasher.update([0]);
    }

    pub fn add_fixed(&mut self, tokens: u32, material: &[u8]) {
        self.tokens += tokens;
        self.hasher.update(material);
    }

    /// A `cachePoint` block at `at` (`system.2.cachePoint`, ...): `{type: default, ttl?}`.
    pub fn cache_point(
        &mut self,
        block: &Value,
        at: &str,
        spec: &ModelSpec,
    ) -> Result<(), BedrockError> {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "default" {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{kind}' at '{at}.type' failed to satisfy constraint: Member must satisfy enum value set: [default]"
            )));
        }
        let ttl = match block.get("ttl").and_then(Value::as_str) {
            None | Some("5m") => CacheTtl::FiveMinutes,
            Some("1h") if spec.extended_cache_ttl => CacheTtl::OneHour,
            Some("1h") => {
                return Err(BedrockError::validation(format!(
                    "This model doesn't support the 1h cache TTL at {at}.ttl. Remove ttl or set it to 5m and try again."
                )));
            }
            Some(other) => {
                return Err(BedrockError::validation(format!(
                    "1 validation error detected: Value '{other}' at '{at}.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]"
                )));
            }
        };
        self.has_cache_point = true;
        self.cache_prefix = Some(CachePrefix {
            tokens: self.tokens,
            key: self.hasher.clone().finalize().into(),
            ttl,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_hour_needs_a_model_that_keeps_it() {
        let mut spec = ModelSpec::default();
        let mut tally = TokenTally::new("m");
        tally.add_text("some text");
        let one_hour = json!({"type": "default", "ttl": "1h"});
        assert!(
            tally
                .cache_point(&one_hour, "system.1.cachePoint", &spec)
                .is_err()
        );
        spec.extended_cache_ttl = true;
        tally
            .cache_point(&one_hour, "system.1.cachePoint", &spec)
            .unwrap();
        assert_eq!(tally.cache_prefix.unwrap().ttl, CacheTtl::OneHour);
        let bad = json!({"type": "default", "ttl": "2h"});
        assert!(tally.cache_point(&bad, "x", &spec).is_err());
    }
}
