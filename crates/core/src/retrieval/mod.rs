//! Retrieval-augmented answers: a prompt that declares a `knowledge_base` has passages
//! retrieved from it (Bedrock Knowledge Bases' `Retrieve`) and given to the model with their
//! sources; one that declares `grounding` has its answer checked against them.
//!
//! ## Overview
//!
//! * [`spec`]: what prompts and the routing configuration declare, checked on push.
//! * [`plan`]: a request's retrieval, decided while it is prepared: the rendered query, the
//!   filter (with the tenant's clause for a shared Knowledge Base, added by construction),
//!   and the cache key.
//! * [`context`]: passages to the model: document blocks with citations where every model of
//!   the chain cites, a delimited context section otherwise; citations linked back to sources.
//! * [`grounding`]: scores of Bedrock's contextual grounding check, and the verdict.
//!
//! The service runs the retrieval (cache, call, charge) between admission and the response
//! cache: see `service::retrieve`.

pub mod context;
pub mod grounding;
pub mod plan;
pub mod spec;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use grounding::{GroundingResult, GroundingScores};
pub use plan::RetrievalPlan;
pub use spec::{
    GroundingAction, GroundingSpec, KnowledgeBaseEntry, KnowledgeBaseSpec, OnFailure, RerankSpec,
    SearchType,
};

/// One Retrieve call, as the port makes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalQuery {
    pub knowledge_base_id: String,
    pub text: String,
    pub top_k: u32,
    pub search_type: Option<SearchType>,
    /// The RetrievalFilter as sent (the tenant's clause included).
    pub filter: Option<Value>,
    pub rerank: Option<RerankSpec>,
}

/// One passage, as the Knowledge Base returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub text: String,
    /// Bedrock's relevance score (absent for some vector stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The source document's URI (S3, web, ...), when its location has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Bedrock's `location`, as returned (`{"type": "S3", "s3Location": {"uri"}}`, ...).
    #[serde(default)]
    pub location: Value,
    /// The document's metadata attributes.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// A passage the model was given, as the answer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// 1-based, as the context and the citations number them.
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Where in the Knowledge Base's data the excerpt comes from (Bedrock's `location`).
    #[serde(default)]
    pub location: Value,
    /// The passage's text (masked like the answer where guardrails mask PII).
    pub excerpt: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// How the passages reached the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    /// Document blocks with citations enabled.
    Documents,
    /// A delimited section of the user's turn.
    Inline,
}

/// What retrieval did for an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalOutcome {
    pub knowledge_base_id: String,
    /// The passages given to the model (above `min_score`), best first.
    pub sources: Vec<Source>,
    /// Served from the retrieval cache (no Retrieve call, no charge).
    pub cached: bool,
    /// Retrieval failed and the model answered without context (`on_failure: degraded`):
    /// why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextMode>,
    /// Passages returned that scored under `min_score` (not given to the model).
    #[serde(default)]
    pub below_min_score: u32,
}

impl RetrievalOutcome {
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| s.uri.as_deref())
    }
}

/// The ports retrieval runs on; the default is none (a prompt that retrieves then fails, or
/// answers degraded, as it declares).
#[derive(Clone)]
pub struct RetrievalPorts {
    pub retriever: std::sync::Arc<dyn crate::ports::Retriever>,
    pub cache: std::sync::Arc<dyn crate::ports::RetrievalCache>,
    pub grounding: std::sync::Arc<dyn crate::ports::GroundingChecker>,
    /// The deployment's grounding guardrail (`QUARRY_GROUNDING_GUARDRAIL`); a prompt may
    /// name its own.
    pub grounding_guardrail: Option<crate::guardrails::BedrockGuardrail>,
}

impl Default for RetrievalPorts {
    fn default() -> Self {
        Self {
            retriever: std::sync::Arc::new(NoRetrieval),
            cache: std::sync::Arc::new(NoRetrieval),
            grounding: std::sync::Arc::new(NoRetrieval),
            grounding_guardrail: None,
        }
    }
}

/// No Knowledge Bases here: retrieval and grounding checks are refused, nothing is cached.
pub struct NoRetrieval;

fn not_here(what: &'static str) -> crate::ports::StoreError {
    crate::ports::StoreError::unavailable(
        crate::ports::Dependency::KnowledgeBases,
        what,
        "this function has no access to Bedrock Knowledge Bases",
    )
}

#[async_trait::async_trait]
impl crate::ports::Retriever for NoRetrieval {
    async fn retrieve(
        &self,
        _: &RetrievalQuery,
        _: std::time::Duration,
    ) -> Result<Vec<Passage>, crate::ports::StoreError> {
        Err(not_here("retrieval"))
    }
}

#[async_trait::async_trait]
impl crate::ports::RetrievalCache for NoRetrieval {
    async fn get(&self, _: &str) -> Result<Option<Vec<Passage>>, crate::ports::StoreError> {
        Ok(None)
    }
    async fn put(
        &self,
        _: &str,
        _: &[Passage],
        _: std::time::Duration,
    ) -> Result<(), crate::ports::StoreError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::ports::GroundingChecker for NoRetrieval {
    async fn score(
        &self,
        _: &crate::guardrails::BedrockGuardrail,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<GroundingScores, crate::ports::StoreError> {
        Err(not_here("grounding check"))
    }
}
