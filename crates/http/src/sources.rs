//! What retrieval did, as every API reports it: `sources` (the passages the model was
//! given: uri, score, location, excerpt), a short `retrieval` summary, and the `grounding`
//! verdict. The native API puts them at the top of its answer; the OpenAI and Anthropic
//! APIs at the top and in their `quarry` extension.

use quarry_core::retrieval::{ContextMode, GroundingResult, RetrievalOutcome, Source};
use serde::Serialize;
use serde_json::{Value, json};

/// The retrieval, without its sources (they are reported beside it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalSummary<'a> {
    pub knowledge_base_id: &'a str,
    /// Served from the retrieval cache.
    pub cached: bool,
    /// Retrieval failed and the model answered without context: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<&'a str>,
    /// How the passages reached the model (`documents` or `inline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextMode>,
    /// Passages under the prompt's `min_score`, not given to the model.
    pub below_min_score: u32,
}

impl<'a> RetrievalSummary<'a> {
    pub fn of(outcome: &'a RetrievalOutcome) -> Self {
        Self {
            knowledge_base_id: &outcome.knowledge_base_id,
            cached: outcome.cached,
            degraded: outcome.degraded.as_deref(),
            context: outcome.context,
            below_min_score: outcome.below_min_score,
        }
    }
}

/// The sources of an outcome (none without one).
pub fn sources(outcome: Option<&RetrievalOutcome>) -> &[Source] {
    outcome.map_or(&[], |o| o.sources.as_slice())
}

/// The fields added to an extension object (`quarry`): `sources`, `retrieval`,
/// `grounding`, each only when there is something to say.
pub fn extend(
    object: &mut serde_json::Map<String, Value>,
    outcome: Option<&RetrievalOutcome>,
    grounding: Option<&GroundingResult>,
) {
    if let Some(o) = outcome {
        object.insert("sources".into(), json!(o.sources));
        object.insert("retrieval".into(), json!(RetrievalSummary::of(o)));
    }
    if let Some(g) = grounding {
        object.insert("grounding".into(), json!(g));
    }
}
