//! What a prompt declares about retrieval (`knowledge_base`) and grounding (`grounding`), and
//! what the routing configuration declares about each Knowledge Base (`knowledge_bases`):
//! checked when the prompt is compiled, so a bad setting is refused on push, not at the first
//! request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bedrock's own bounds on `numberOfResults`.
pub const MAX_TOP_K: u32 = 100;
/// Longest query Bedrock's Retrieve accepts, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SearchType {
    Semantic,
    Hybrid,
}

impl SearchType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semantic => "SEMANTIC",
            Self::Hybrid => "HYBRID",
        }
    }
}

/// What happens to a request whose retrieval failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The request fails with the retrieval's error.
    #[default]
    Fail,
    /// The model answers without context; the answer is marked `degraded`.
    Degraded,
}

/// Reranking the retrieved passages with a Bedrock rerank model (Retrieve's
/// `rerankingConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankSpec {
    /// The rerank model's ID (`amazon.rerank-v1:0`, `cohere.rerank-v3-5:0`) or ARN.
    pub model: String,
    /// Passages kept after reranking (at most `top_k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u32>,
}

/// A prompt's retrieval: which Knowledge Base, how many passages, how they are searched and
/// filtered. The prompt's version pins all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBaseSpec {
    /// The Knowledge Base ID (10 letters and digits) or its ARN.
    pub id: String,
    /// Passages asked for (Retrieve's `numberOfResults`).
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// SEMANTIC or HYBRID; the Knowledge Base decides when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_type: Option<SearchType>,
    /// Passages scoring below this (0 to 1) are not given to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    /// A RetrievalFilter as Bedrock takes it (`{"equals": {"key", "value"}}`, `andAll`, ...).
    /// String values may use the prompt's variables (`"{{ product }}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<RerankSpec>,
    /// The query, a template over the prompt's variables. By default the `question`
    /// variable when the prompt declares one, else the rendered user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// How long a retrieval's results are reused for the same tenant, query and filter.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_seconds: u64,
}

fn default_top_k() -> u32 {
    5
}

fn default_cache_ttl() -> u64 {
    300
}

/// What the grounding check does with an answer scoring under a threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundingAction {
    /// The answer is returned, with its scores and `passed: false`.
    #[default]
    Flag,
    /// The request fails with `ungrounded_answer` instead of an ungrounded answer.
    Block,
}

/// The contextual grounding check of an answer against the retrieved passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundingSpec {
    /// Least grounding score (0 to 1) an answer passes with.
    pub threshold: f64,
    /// Least relevance score (0 to 1); relevance is not judged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance_threshold: Option<f64>,
    #[serde(default)]
    pub action: GroundingAction,
    /// The Bedrock guardrail (with a contextual grounding policy) that scores answers,
    /// `{id, version}`; the deployment's (`QUARRY_GROUNDING_GUARDRAIL`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<crate::guardrails::BedrockGuardrail>,
}

/// What the deployment declares about one Knowledge Base (routing.yaml `knowledge_bases`).
/// A prompt may only retrieve from a declared one: declaring it is where the operator says
/// whether tenants share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBaseEntry {
    /// The Knowledge Base's embedding model: its query embeddings are charged at its price.
    pub embedding_model: String,
    /// Set for a Knowledge Base tenants share: the metadata attribute holding each
    /// document's tenant. Every retrieval is then filtered to the caller's own documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_attribute: Option<String>,
}

/// A Knowledge Base ID as Bedrock accepts it: 10 letters and digits, or a knowledge-base ARN.
pub fn valid_id(id: &str) -> bool {
    let short = |s: &str| s.len() == 10 && s.chars().all(|c| c.is_ascii_alphanumeric());
    if short(id) {
        return true;
    }
    id.starts_with("arn:aws")
        && id
            .rsplit_once(":knowledge-base/")
            .is_some_and(|(_, tail)| short(tail))
}

/// The short ID of an ID or ARN (what policies and routing list).
pub fn short_id(id: &str) -> &str {
    id.rsplit_once(":knowledge-base/").map_or(id, |(_, t)| t)
}

const OPERATORS: [&str; 11] = [
    "equals",
    "notEquals",
    "greaterThan",
    "greaterThanOrEquals",
    "lessThan",
    "lessThanOrEquals",
    "in",
    "notIn",
    "startsWith",
    "stringContains",
    "listContains",
];

/// Checks a RetrievalFilter's shape, naming the first fault by its path.
pub fn check_filter(filter: &Value, at: &str) -> Result<(), String> {
    let Some(object) = filter.as_object() else {
        return Err(format!("{at} must be an object"));
    };
    let mut entries = object.iter();
    let (Some((op, operand)), None) = (entries.next(), entries.next()) else {
        return Err(format!("{at} must have exactly one operator"));
    };
    let here = format!("{at}.{op}");
    match op.as_str() {
        "andAll" | "orAll" => {
            let items = operand
                .as_array()
                .filter(|a| (2..=5).contains(&a.len()))
                .ok_or_else(|| format!("{here} must be a list of 2 to 5 filters"))?;
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, f)| check_filter(f, &format!("{here}[{i}]")))
        }
        op if OPERATORS.contains(&op) => {
            let key = operand.get("key").and_then(Value::as_str);
            if !key.is_some_and(|k| !k.is_empty() && k.len() <= 100) {
                return Err(format!(
                    "{here}.key must be a string of 1 to 100 characters"
                ));
            }
            if operand.get("value").is_none() || operand.as_object().is_some_and(|o| o.len() != 2) {
                return Err(format!("{here} must be {{\"key\", \"value\"}}"));
            }
            Ok(())
        }
        other => Err(format!(
            "{at}: unknown operator '{other}' (use one of {}, andAll, orAll)",
            OPERATORS.join(", ")
        )),
    }
}

impl KnowledgeBaseSpec {
    /// The settings Bedrock would refuse, refused first.
    pub fn check(&self) -> Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "knowledge_base.id '{}' is not a Knowledge Base ID (10 letters and digits) or ARN",
                self.id.chars().take(200).collect::<String>()
            ));
        }
        if !(1..=MAX_TOP_K).contains(&self.top_k) {
            return Err(format!("knowledge_base.top_k must be 1 to {MAX_TOP_K}"));
        }
        if let Some(m) = self.min_score
            && !(0.0..=1.0).contains(&m)
        {
            return Err("knowledge_base.min_score must be between 0 and 1".into());
        }
        if let Some(f) = &self.filter {
            check_filter(f, "knowledge_base.filter")?;
        }
        if let Some(r) = &self.rerank {
            if r.model.trim().is_empty() {
                return Err("knowledge_base.rerank.model is empty".into());
            }
            if r.top_n.is_some_and(|n| n == 0 || n > self.top_k) {
                return Err("knowledge_base.rerank.top_n must be 1 to top_k".into());
            }
        }
        if self.cache_ttl_seconds > 86_400 {
            return Err("knowledge_base.cache_ttl_seconds is at most 86400 (a day)".into());
        }
        Ok(())
    }
}

impl GroundingSpec {
    pub fn check(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=0.99).contains(&v);
        if !unit(self.threshold) {
            return Err("grounding.threshold must be between 0 and 0.99 (Bedrock's range)".into());
        }
        if self.relevance_threshold.is_some_and(|v| !unit(v)) {
            return Err("grounding.relevance_threshold must be between 0 and 0.99".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn knowledge_base_ids_follow_bedrocks_pattern() {
        assert!(valid_id("QUARRYDOCS"));
        assert!(valid_id(
            "arn:aws:bedrock:us-east-1:123456789012:knowledge-base/AB12CD34EF"
        ));
        for bad in ["quarry-docs", "SHORT", "QUARRYDOCS1", "", "QUARRYDOCé"] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert_eq!(
            short_id("arn:aws:bedrock:us-east-1:123456789012:knowledge-base/AB12CD34EF"),
            "AB12CD34EF"
        );
    }

    #[test]
    fn filters_are_checked_by_path() {
        check_filter(&json!({"equals": {"key": "team", "value": "a"}}), "f").unwrap();
        check_filter(
            &json!({"andAll": [{"equals": {"key": "a", "value": 1}}, {"in": {"key": "b", "value": [1]}}]}),
            "f",
        )
        .unwrap();
        let e = check_filter(
            &json!({"andAll": [{"equals": {"key": "a", "value": 1}}]}),
            "f",
        )
        .unwrap_err();
        assert!(e.contains("f.andAll"), "{e}");
        let e = check_filter(&json!({"like": {"key": "a", "value": 1}}), "f").unwrap_err();
        assert!(e.contains("unknown operator 'like'"), "{e}");
        let e = check_filter(
            &json!({"equals": {"key": "a", "value": 1}, "notEquals": {"key": "a", "value": 1}}),
            "f",
        )
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        assert!(check_filter(&json!({"equals": {"key": "", "value": 1}}), "f").is_err());
        assert!(check_filter(&json!({"equals": {"key": "a"}}), "f").is_err());
    }

    #[test]
    fn a_knowledge_base_spec_defaults_and_bounds() {
        let spec: KnowledgeBaseSpec = serde_json::from_value(json!({"id": "QUARRYDOCS"})).unwrap();
        assert_eq!((spec.top_k, spec.cache_ttl_seconds), (5, 300));
        assert_eq!(spec.on_failure, OnFailure::Fail);
        spec.check().unwrap();
        let mut bad = spec.clone();
        bad.top_k = 101;
        assert!(bad.check().unwrap_err().contains("top_k"));
        let mut bad = spec.clone();
        bad.rerank = Some(RerankSpec {
            model: "amazon.rerank-v1:0".into(),
            top_n: Some(6),
        });
        assert!(bad.check().unwrap_err().contains("top_n"));
        let mut bad = spec;
        bad.min_score = Some(1.5);
        assert!(bad.check().is_err());
        assert!(
            serde_json::from_value::<KnowledgeBaseSpec>(json!({"id": "QUARRYDOCS", "topk": 3}))
                .is_err()
        );
    }
}
