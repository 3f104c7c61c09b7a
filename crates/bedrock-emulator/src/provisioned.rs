//! Provisioned Throughput: a `provisioned-model` ARN answers as the base model it was bought
//! for, up to its capacity. Each model unit buys a number of tokens per minute; a call that
//! would go past what is left of the minute is throttled, as Bedrock throttles a provisioned
//! model that is at capacity.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `provisioned_models:` in the config, by ARN (or its trailing ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedSpec {
    /// The base model ID it serves.
    pub model: String,
    /// Input tokens it takes per minute; 0: no limit.
    #[serde(default)]
    pub tokens_per_minute: u64,
}

/// Tokens taken per provisioned model in the current minute.
#[derive(Default)]
pub struct Capacity {
    used: Mutex<HashMap<String, (u64, u64)>>,
}

impl Capacity {
    /// Takes `tokens` of `model`'s minute; `false` (throttled) when they do not fit.
    pub fn take(&self, model: &str, tokens: u64, per_minute: u64) -> bool {
        if per_minute == 0 {
            return true;
        }
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = used.entry(model.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1.saturating_add(tokens) > per_minute {
            return false;
        }
        entry.1 += tokens;
        true
    }
}

/// The spec of a provisioned model ARN, by the full ARN or its trailing ID.
pub fn spec_of<'a>(
    models: &'a std::collections::BTreeMap<String, ProvisionedSpec>,
    raw_id: &str,
) -> Option<&'a ProvisionedSpec> {
    if !raw_id.contains(":provisioned-model/") {
        return None;
    }
    models
        .get(raw_id)
        .or_else(|| raw_id.rsplit_once('/').and_then(|(_, id)| models.get(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_holds_its_capacity_and_no_more() {
        let c = Capacity::default();
        assert!(c.take("p", 60, 100));
        assert!(!c.take("p", 60, 100));
        assert!(c.take("p", 40, 100));
        assert!(c.take("other", 100, 100));
        assert!(c.take("p", 1_000_000, 0), "no limit");
    }
}
