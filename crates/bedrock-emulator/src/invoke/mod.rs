//! InvokeModel bodies, translated into the Converse shape so one validation and one
//! generation path serve every API (InvokeModel, InvokeModelWithResponseStream, CountTokens'
//! `invokeModel` input and batch inference records).
//!
//! Each model family takes its own native body, checked as strictly as Bedrock checks it
//! (unknown keys are a malformed-input `ValidationException`):
//!
//! * `anthropic.*`: the Anthropic Messages body (`anthropic_version`, `max_tokens`,
//!   `messages`, `system`, `tools`, `tool_choice`, `stop_sequences`, `temperature`, `top_p`,
//!   `top_k`, `cache_control` on blocks).
//! * `amazon.nova-*`: Nova's `messages-v1` body, which is Converse's shape with
//!   base64 media, snake- or camel-case `inferenceConfig` keys and `topK` of its own.
//! * `meta.llama3*`: Llama's prompt body `{"prompt", "max_gen_len"?, "temperature"?,
//!   "top_p"?}`, the prompt sent as one user turn (chat template and all).
//! * Any other chat model (Mistral, Cohere Command, Titan Text): the emulator's stand-in
//!   `{"prompt", "max_tokens"?, "temperature"?, "top_p"?, "stop"?}` (`inputText` and
//!   `max_gen_len` are taken for `prompt` and `max_tokens`), answered in Llama's shape.
//!   Those providers' real bodies are not emulated, so a client written for them will not
//!   find its own fields here.
//!
//! Files: [`anthropic`], [`nova`], [`llama`] (Llama 3 and the stand-in body).

mod anthropic;
mod llama;
mod nova;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::catalog::ResolvedModel;
use crate::embedding::schema::{Violations, type_name};
use crate::error::BedrockError;

pub use self::anthropic::anthropic_to_converse;
pub use self::llama::{generic_to_converse, llama3_to_converse};
pub use self::nova::nova_to_converse;

/// The InvokeModel body a model takes, and the answer it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Anthropic,
    Nova,
    Llama3,
    /// The emulator's stand-in for providers whose native bodies it does not speak.
    Generic,
}

impl Family {
    pub fn of(model: &ResolvedModel) -> Self {
        let id = model.base_id.as_str();
        match model.spec.provider.as_str() {
            "anthropic" => Self::Anthropic,
            // Titan Text is `amazon` too, and has a body of its own.
            "amazon" if id.starts_with("amazon.nova") => Self::Nova,
            "meta" if id.starts_with("meta.llama3") => Self::Llama3,
            _ => Self::Generic,
        }
    }

    /// The family's body -> Converse.
    pub fn to_converse(self, body: &Value) -> Result<Value, BedrockError> {
        match self {
            Self::Anthropic => anthropic_to_converse(body),
            Self::Nova => nova_to_converse(body),
            Self::Llama3 => llama3_to_converse(body),
            Self::Generic => generic_to_converse(body),
        }
    }
}

pub(super) fn malformed(detail: impl std::fmt::Display) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {detail}, please reformat your input and try again."
    ))
}

pub(super) fn extraneous(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), BedrockError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(malformed(format!(
            "#: extraneous key [{key}] is not permitted"
        ))),
        None => Ok(()),
    }
}

/// Required and extraneous keys of the object at `path`, in Bedrock's words.
pub(super) fn keys_at(
    v: &mut Violations,
    path: &str,
    obj: &Map<String, Value>,
    required: &[&str],
    allowed: &[&str],
) {
    for key in required {
        if !obj.contains_key(*key) {
            v.add(format!("{path}: required key [{key}] not found"));
        }
    }
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            v.add(format!("{path}: extraneous key [{key}] is not permitted"));
        }
    }
}

pub(super) fn object_at<'a>(
    v: &mut Violations,
    path: &str,
    value: &'a Value,
) -> Option<&'a Map<String, Value>> {
    let obj = value.as_object();
    if obj.is_none() {
        v.add(format!(
            "{path}: expected type: JSONObject, found: {}",
            type_name(value)
        ));
    }
    obj
}

pub(super) fn number_at(v: &mut Violations, path: &str, value: &Value) -> Option<Value> {
    if value.is_number() {
        Some(value.clone())
    } else {
        v.add(format!(
            "{path}: expected type: Number, found: {}",
            type_name(value)
        ));
        None
    }
}
