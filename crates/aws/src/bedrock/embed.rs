//! Embeddings through InvokeModel, in each model's own body: Titan Text Embeddings v2 (one
//! text a call), Cohere Embed v3 and v4 (batches). Input tokens come from Bedrock's
//! `X-Amzn-Bedrock-Input-Token-Count` header (the SDK's output does not carry it, so an
//! interceptor reads it off the response).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_bedrockruntime::primitives::Blob;
use quarry_core::embeddings::{EmbedRequest, EmbedResponse};
use quarry_core::model::{ModelError, ModelErrorKind};
use serde_json::{Value, json};

use super::{BedrockModels, map_sdk_error, timeout_override};

/// Reads the input-token header of the call it is attached to.
#[derive(Debug, Clone, Default)]
struct InputTokens(Arc<AtomicU64>);

impl Intercept for InputTokens {
    fn name(&self) -> &'static str {
        "InputTokens"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(n) = context
            .response()
            .headers()
            .get("x-amzn-bedrock-input-token-count")
            .and_then(|v| v.parse::<u64>().ok())
        {
            self.0.store(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn malformed(model: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::new(
        ModelErrorKind::InternalServer,
        format!("{model} answered an embedding Quarry cannot read: {e}"),
    )
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

/// Scales a vector to unit length (Cohere's are not promised to be).
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl BedrockModels {
    async fn invoke_json(
        &self,
        model_id: &str,
        body: &Value,
        timeout: Duration,
        region: Option<&str>,
    ) -> Result<(Value, u64), ModelError> {
        let tokens = InputTokens::default();
        let out = self
            .client_in(region)
            .invoke_model()
            .model_id(model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body.to_string()))
            .customize()
            .config_override(timeout_override(timeout))
            .mutate_request(super::trace_header())
            .interceptor(tokens.clone())
            .send()
            .await
            .map_err(map_sdk_error)?;
        let value: Value =
            serde_json::from_slice(out.body().as_ref()).map_err(|e| malformed(model_id, e))?;
        Ok((value, tokens.0.load(Ordering::Relaxed)))
    }

    pub(super) async fn embed_texts(
        &self,
        model_id: &str,
        request: &EmbedRequest,
        timeout: Duration,
    ) -> Result<EmbedResponse, ModelError> {
        if model_id.contains("titan-embed") {
            let mut out = EmbedResponse {
                vectors: Vec::with_capacity(request.texts.len()),
                input_tokens: 0,
            };
            for text in &request.texts {
                let mut body = json!({"inputText": text, "normalize": request.normalize});
                if let Some(d) = request.dimensions {
                    body["dimensions"] = json!(d);
                }
                let (value, header) = self
                    .invoke_json(model_id, &body, timeout, request.region.as_deref())
                    .await?;
                let vector = floats(&value["embedding"])
                    .ok_or_else(|| malformed(model_id, "no 'embedding'"))?;
                out.input_tokens += value["inputTextTokenCount"].as_u64().unwrap_or(header);
                out.vectors.push(vector);
            }
            return Ok(out);
        }
        if model_id.contains("cohere.embed") {
            let mut body = json!({
                "texts": request.texts,
                "input_type": request.input_type.as_deref().unwrap_or("search_document"),
                "embedding_types": ["float"],
            });
            if model_id.contains("embed-v4") {
                if let Some(d) = request.dimensions {
                    body["output_dimension"] = json!(d);
                }
            }
            let (value, tokens) = self
                .invoke_json(model_id, &body, timeout, request.region.as_deref())
                .await?;
            let list = value["embeddings"]
                .get("float")
                .unwrap_or(&value["embeddings"]);
            let vectors: Vec<Vec<f32>> = list
                .as_array()
                .and_then(|l| l.iter().map(floats).collect())
                .ok_or_else(|| malformed(model_id, "no 'embeddings'"))?;
            let vectors = if request.normalize {
                vectors.into_iter().map(normalized).collect()
            } else {
                vectors
            };
            return Ok(EmbedResponse {
                vectors,
                input_tokens: tokens,
            });
        }
        Err(ModelError::new(
            ModelErrorKind::Validation,
            format!(
                "{model_id} is not an embedding model Quarry knows (Titan Text Embeddings v2, Cohere Embed)"
            ),
        ))
    }
}
