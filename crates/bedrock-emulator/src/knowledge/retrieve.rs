//! Retrieve (`POST /knowledgebases/{id}/retrieve`): the request checked as Bedrock checks
//! it, chunks ranked by vector similarity (and keyword overlap for HYBRID), filtered by
//! metadata.

use serde_json::{Value, json};

use super::corpus::{Chunk, DIMENSIONS, SPACE, words};
use super::filter::{self, Filter};
use crate::embedding::vectors::{cosine, unit_vector};
use crate::error::BedrockError;

/// Share of a HYBRID score that comes from keyword overlap.
const KEYWORD_WEIGHT: f64 = 0.3;
/// Longest Retrieve query, in characters (RetrieveAndGenerate's input allows 1,000).
pub const MAX_QUERY_CHARS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchType {
    Semantic,
    Hybrid,
}

#[derive(Debug, Clone)]
pub struct Search {
    pub number_of_results: usize,
    pub search_type: SearchType,
    pub filter: Option<Filter>,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            number_of_results: 5,
            search_type: SearchType::Semantic,
            filter: None,
        }
    }
}

fn invalid(at: &str, value: &Value, constraint: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{}' at '{at}' failed to satisfy constraint: {constraint}",
        match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    ))
}

fn missing(at: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
    ))
}

/// The query text at `at` (`retrievalQuery.text`, `input.text`), at most `max` characters.
pub fn query_text(body: &Value, parent: &str, max: usize) -> Result<String, BedrockError> {
    let at = format!("{parent}.text");
    let text = body
        .get(parent)
        .and_then(|q| q.get("text"))
        .ok_or_else(|| missing(&at))?;
    let s = text
        .as_str()
        .ok_or_else(|| invalid(&at, text, "Member must be a string"))?;
    if s.chars().count() > max {
        return Err(invalid(
            &at,
            text,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(s.to_owned())
}

/// `retrievalConfiguration` (absent: five SEMANTIC results, no filter).
pub fn search(config: Option<&Value>) -> Result<Search, BedrockError> {
    let mut search = Search::default();
    let Some(vector) = config.and_then(|c| c.get("vectorSearchConfiguration")) else {
        return Ok(search);
    };
    const AT: &str = "retrievalConfiguration.vectorSearchConfiguration";
    if let Some(n) = vector.get("numberOfResults") {
        let at = format!("{AT}.numberOfResults");
        let count = n
            .as_i64()
            .ok_or_else(|| invalid(&at, n, "Member must be an integer"))?;
        if count < 1 {
            return Err(invalid(
                &at,
                n,
                "Member must have value greater than or equal to 1",
            ));
        }
        if count > 100 {
            return Err(invalid(
                &at,
                n,
                "Member must have value less than or equal to 100",
            ));
        }
        search.number_of_results = count as usize;
    }
    if let Some(t) = vector.get("overrideSearchType") {
        search.search_type = match t.as_str() {
            Some("SEMANTIC") => SearchType::Semantic,
            Some("HYBRID") => SearchType::Hybrid,
            _ => {
                return Err(invalid(
                    &format!("{AT}.overrideSearchType"),
                    t,
                    "Member must satisfy enum value set: [HYBRID, SEMANTIC]",
                ));
            }
        };
    }
    if let Some(f) = vector.get("filter") {
        search.filter = Some(filter::parse(f)?);
    }
    Ok(search)
}

/// A chunk and its score, best first.
pub fn rank<'a>(chunks: &'a [Chunk], query: &str, search: &Search) -> Vec<(&'a Chunk, f64)> {
    let q = unit_vector(SPACE, query, DIMENSIONS);
    let q_words = words(query);
    let mut scored: Vec<(&Chunk, f64)> = chunks
        .iter()
        .filter(|c| {
            search
                .filter
                .as_ref()
                .is_none_or(|f| filter::matches(f, &c.metadata))
        })
        .map(|c| {
            let semantic = (cosine(&q, &c.vector) + 1.0) / 2.0;
            let score = match search.search_type {
                SearchType::Semantic => semantic,
                SearchType::Hybrid => {
                    let shared = q_words.intersection(&c.words).count();
                    let keyword = shared as f64 / q_words.len().max(1) as f64;
                    (1.0 - KEYWORD_WEIGHT) * semantic + KEYWORD_WEIGHT * keyword
                }
            };
            (c, score)
        })
        .collect();
    // Ties keep corpus order, so equal scores rank the same on every call.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(search.number_of_results);
    scored
}

pub fn location(chunk: &Chunk) -> Value {
    json!({ "type": "S3", "s3Location": { "uri": chunk.uri } })
}

/// One `retrievalResults` member.
pub fn result(chunk: &Chunk, score: f64) -> Value {
    json!({
        "content": { "text": chunk.text, "type": "TEXT" },
        "location": location(chunk),
        "score": score,
        "metadata": chunk.metadata,
    })
}

/// Answers Retrieve for a parsed body against the knowledge base's chunks.
pub fn respond(chunks: &[Chunk], body: &Value) -> Result<Value, BedrockError> {
    let query = query_text(body, "retrievalQuery", MAX_QUERY_CHARS)?;
    let search = search(body.get("retrievalConfiguration"))?;
    if let Some(token) = body.get("nextToken")
        && !token
            .as_str()
            .is_some_and(|t| !t.is_empty() && t.len() <= 2048)
    {
        return Err(invalid(
            "nextToken",
            token,
            "Member must have length between 1 and 2048",
        ));
    }
    let results: Vec<Value> = rank(chunks, &query, &search)
        .into_iter()
        .map(|(c, s)| result(c, s))
        .collect();
    Ok(json!({ "retrievalResults": results }))
}
