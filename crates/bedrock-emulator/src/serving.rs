//! How a request asks to be served: `serviceTier` (default, flex, priority, reserved) and
//! `performanceConfig` (standard or latency-optimized), checked against what the model
//! offers and echoed back in the response.

use serde::Deserialize;

use crate::catalog::ResolvedModel;
use crate::error::BedrockError;

const TIERS: [&str; 4] = ["reserved", "priority", "default", "flex"];
const LATENCIES: [&str; 2] = ["standard", "optimized"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTierWire {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceConfigWire {
    #[serde(default)]
    pub latency: Option<String>,
}

/// The tier and latency a request is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// Always set: `default` when the request names none, as Bedrock reports it.
    pub service_tier: String,
    /// Set when the request had a `performanceConfig`.
    pub latency: Option<String>,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            service_tier: "default".into(),
            latency: None,
        }
    }
}

fn enum_error(value: &str, at: &str, allowed: &[&str]) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    ))
}

pub fn serving(
    tier: Option<&ServiceTierWire>,
    performance: Option<&PerformanceConfigWire>,
    model: &ResolvedModel,
) -> Result<Serving, BedrockError> {
    let service_tier = match tier {
        None => "default".to_owned(),
        Some(t) if !TIERS.contains(&t.kind.as_str()) => {
            return Err(enum_error(&t.kind, "serviceTier.type", &TIERS));
        }
        Some(t) if !model.spec.service_tiers.contains(&t.kind) => {
            return Err(BedrockError::validation(format!(
                "The provided service tier {} is not supported for model {}.",
                t.kind, model.base_id
            )));
        }
        Some(t) => t.kind.clone(),
    };
    let latency = match performance {
        None => None,
        Some(p) => {
            let latency = p.latency.clone().unwrap_or_else(|| "standard".to_owned());
            if !LATENCIES.contains(&latency.as_str()) {
                return Err(enum_error(
                    &latency,
                    "performanceConfig.latency",
                    &LATENCIES,
                ));
            }
            if latency == "optimized" && !model.spec.latency_optimized {
                return Err(BedrockError::validation(format!(
                    "The model {} doesn't support latency-optimized inference. Remove performanceConfig or set latency to standard and try again.",
                    model.base_id
                )));
            }
            Some(latency)
        }
    };
    Ok(Serving {
        service_tier,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::resolve;
    use crate::config::EmulatorConfig;

    #[test]
    fn tiers_and_latency_follow_the_model() {
        let config = EmulatorConfig::builtin();
        let nova = resolve(&config, "amazon.nova-pro-v1:0").unwrap();
        let claude = resolve(&config, "anthropic.claude-3-haiku-20240307-v1:0").unwrap();
        let flex = ServiceTierWire {
            kind: "flex".into(),
        };
        let optimized = PerformanceConfigWire {
            latency: Some("optimized".into()),
        };
        let s = serving(Some(&flex), Some(&optimized), &nova).unwrap();
        assert_eq!(s.service_tier, "flex");
        assert_eq!(s.latency.as_deref(), Some("optimized"));
        assert!(serving(Some(&flex), None, &claude).is_err());
        assert!(serving(None, Some(&optimized), &claude).is_err());
        assert_eq!(serving(None, None, &claude).unwrap(), Serving::default());
    }
}
