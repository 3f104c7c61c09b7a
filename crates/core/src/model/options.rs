//! What a request may ask of a model beyond its messages: how hard to reason, and which
//! Bedrock service tier serves it.

use serde::{Deserialize, Serialize};

/// How hard a reasoning model should think: an effort, or (for models that take one) a
/// budget of reasoning tokens. Mapped per model by [`crate::invoke::request_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReasoningRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Reasoning tokens for models that take a budget (Claude's minimum is 1,024).
    pub fn budget(self) -> u32 {
        match self {
            Self::Minimal => 1_024,
            Self::Low => 2_048,
            Self::Medium => 8_192,
            Self::High => 24_576,
        }
    }

    /// The effort a budget amounts to, for models that take an effort.
    pub fn of_budget(tokens: u32) -> Self {
        match tokens {
            0..=1_024 => Self::Minimal,
            1_025..=4_096 => Self::Low,
            4_097..=16_384 => Self::Medium,
            _ => Self::High,
        }
    }
}

/// Bedrock's service tiers (Converse `serviceTier`): flex is cheaper and slower, priority
/// dearer and first in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    Default,
    Flex,
    Priority,
    Reserved,
}

impl ServiceTier {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "flex" => Self::Flex,
            "priority" => Self::Priority,
            "reserved" => Self::Reserved,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Flex => "flex",
            Self::Priority => "priority",
            Self::Reserved => "reserved",
        }
    }
}
