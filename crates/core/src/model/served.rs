//! What an answer reports beyond its content: how Bedrock served it, and what it cites.

use serde::{Deserialize, Serialize};

use super::ServiceTier;

/// What Bedrock reports about how a call was served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The service tier that served the call (Converse `serviceTier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The model a prompt router sent the call to (`trace.promptRouter.invokedModelId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoked_model: Option<String>,
    /// What the Bedrock guardrail of the call did, from its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailOutcome>,
}

impl Served {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Later reports fill what earlier ones left out.
    pub fn merge(&mut self, other: Served) {
        self.service_tier = other.service_tier.or(self.service_tier);
        self.invoked_model = other.invoked_model.or(self.invoked_model.take());
        self.guardrail = match (self.guardrail, other.guardrail) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What a Bedrock guardrail did to an answer: `Masked` answers are Bedrock's anonymised
/// text and are delivered; `Blocked` ones are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailOutcome {
    Masked,
    Blocked,
}

/// A span of a document the answer cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    /// The cited document's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The quoted text of the document.
    #[serde(default)]
    pub quote: String,
    /// Which document (its position among the request's documents) and where in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<CitationLocation>,
    /// The retrieved source cited (its `id` among the answer's `sources`), when the cited
    /// document was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitationLocation {
    /// `char`, `page` or `chunk`: what `start` and `end` count.
    pub unit: CitationUnit,
    pub document_index: u32,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationUnit {
    Char,
    Page,
    Chunk,
}
