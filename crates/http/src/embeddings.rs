//! `POST /v1/embeddings` (OpenAI's Embeddings API: `input` a string or a list of strings,
//! `model` a tier or a Bedrock ID, `dimensions`, `encoding_format` float or base64, `user`)
//! and `POST /v1/embed` (native: `texts`, `model` or `tier`, `dimensions`, `normalize`,
//! `input_type`, `tags`), and their answers.

use std::collections::BTreeMap;

use base64::Engine;
use quarry_core::Error;
use quarry_core::embeddings::{EmbedInput, Embeddings};
use quarry_core::routing::RouteSpec;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OaInput {
    One(String),
    Many(Vec<String>),
    /// Token arrays (OpenAI's tokenizer's): Bedrock's models take text.
    Tokens(Value),
}

#[derive(Debug, Deserialize)]
pub struct OaEmbeddingRequest {
    pub input: OaInput,
    pub model: String,
    pub dimensions: Option<u32>,
    pub encoding_format: Option<String>,
    pub user: Option<String>,
}

/// How the vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    /// Little-endian f32, base64: what the openai client asks for by default.
    Base64,
}

impl OaEmbeddingRequest {
    pub fn into_input(self) -> Result<(EmbedInput, Encoding), Error> {
        let texts = match self.input {
            OaInput::One(t) => vec![t],
            OaInput::Many(v) => v,
            OaInput::Tokens(_) => {
                return Err(Error::bad_request(
                    "input",
                    "input is a string or a list of strings (token arrays are not taken: Bedrock's models read text)",
                ));
            }
        };
        let encoding = match self.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(Error::bad_request(
                    "encoding_format",
                    format!("encoding_format is float or base64, not '{other}'"),
                ));
            }
        };
        let mut tags = BTreeMap::new();
        if let Some(user) = self.user.filter(|u| {
            quarry_core::chat::check_tags(&BTreeMap::from([("user".to_owned(), u.clone())])).is_ok()
        }) {
            tags.insert("user".to_owned(), user);
        }
        Ok((
            EmbedInput {
                texts,
                route: Some(RouteSpec::Model(self.model)),
                dimensions: self.dimensions,
                normalize: None,
                input_type: None,
                tags,
            },
            encoding,
        ))
    }
}

fn encode(v: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => json!(v),
        Encoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// OpenAI's `list` of embeddings, with Quarry's cost and cache counts beside.
pub fn openai_response(e: &Embeddings, encoding: Encoding) -> Value {
    json!({
        "object": "list",
        "data": e.vectors.iter().enumerate().map(|(i, v)| json!({
            "object": "embedding", "index": i, "embedding": encode(v, encoding),
        })).collect::<Vec<_>>(),
        "model": e.model,
        "usage": {"prompt_tokens": e.input_tokens, "total_tokens": e.input_tokens},
        "cost_usd": e.cost.map(|c| c.to_usd_string()),
        "quarry": {"cached_texts": e.cached, "model_calls": e.model_calls},
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
    pub dimensions: Option<u32>,
    pub normalize: Option<bool>,
    pub input_type: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl EmbedRequest {
    pub fn into_input(self) -> Result<EmbedInput, Error> {
        if self.model.is_some() && self.tier.is_some() {
            return Err(Error::bad_request(
                "model",
                "give 'model' or 'tier', not both",
            ));
        }
        if let Some(t) = &self.input_type
            && !matches!(
                t.as_str(),
                "search_document" | "search_query" | "classification" | "clustering"
            )
        {
            return Err(Error::bad_request(
                "input_type",
                "input_type is search_document, search_query, classification or clustering",
            ));
        }
        Ok(EmbedInput {
            texts: self.texts,
            route: self
                .tier
                .map(RouteSpec::Tier)
                .or(self.model.map(RouteSpec::Model)),
            dimensions: self.dimensions,
            normalize: self.normalize,
            input_type: self.input_type,
            tags: self.tags,
        })
    }
}

/// The native answer.
pub fn native_response(request_id: &str, e: &Embeddings) -> Value {
    json!({
        "id": request_id,
        "model": e.model,
        "embeddings": e.vectors,
        "usage": {"input_tokens": e.input_tokens},
        "cost_usd": e.cost.map(|c| c.to_usd_string()),
        "cached_texts": e.cached,
        "model_calls": e.model_calls,
    })
}
