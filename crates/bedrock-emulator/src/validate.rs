//! Bedrock's request-level checks of a Converse body: the conversation's shape, the
//! inference parameters and `requestMetadata`.

use serde_json::Value;

use crate::converse::{InferenceConfig, Message, Role};
use crate::error::BedrockError;

/// Converse `requestMetadata`: at most 16 entries; keys 1 to 256 and values 0 to 256
/// characters of `[a-zA-Z0-9\s:_@$#=/+,-.]`.
pub fn validate_request_metadata(metadata: Option<&Value>) -> Result<(), BedrockError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let map = metadata.as_object().ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must be a map")
    })?;
    if map.len() > 16 {
        return Err(BedrockError::validation(
            "1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must have length less than or equal to 16",
        ));
    }
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || ":_@$#=/+,-.".contains(c))
    };
    for (key, value) in map {
        let value = value.as_str().unwrap_or("\u{0}");
        if key.is_empty()
            || key.len() > 256
            || !allowed(key)
            || value.len() > 256
            || !allowed(value)
        {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Map keys and values must satisfy regular expression pattern: [a-zA-Z0-9\\s:_@$#=/+,-.]{{0,256}} (key '{key}')"
            )));
        }
    }
    Ok(())
}

pub fn validate_messages(messages: &[Message]) -> Result<(), BedrockError> {
    match messages.first() {
        None => {
            return Err(BedrockError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(first) if first.role != Role::User => {
            return Err(BedrockError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(_) => {}
    }
    for (i, pair) in messages.windows(2).enumerate() {
        if let [a, b] = pair
            && a.role == b.role
        {
            return Err(BedrockError::validation(format!(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again. (messages.{} and messages.{} are both {:?})",
                i,
                i + 1,
                a.role
            )));
        }
    }
    for (i, message) in messages.iter().enumerate() {
        if message.content.is_empty() {
            return Err(BedrockError::validation(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            )));
        }
    }
    Ok(())
}

pub fn validate_inference(config: &InferenceConfig, model_max: u32) -> Result<u32, BedrockError> {
    let max_tokens = match config.max_tokens {
        None => model_max,
        Some(n) if n < 1 => {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{n}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )));
        }
        Some(n) if n > i64::from(model_max) => {
            return Err(BedrockError::validation(format!(
                "The maximum tokens you requested exceeds the model limit of {model_max}. Try again with a maximum tokens value that is lower than {model_max}."
            )));
        }
        Some(n) => n as u32,
    };
    if let Some(t) = config.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{t}' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value between 0 and 1"
        )));
    }
    if let Some(p) = config.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{p}' at 'inferenceConfig.topP' failed to satisfy constraint: Member must have value between 0 and 1"
        )));
    }
    if config.stop_sequences.len() > 2500 || config.stop_sequences.iter().any(String::is_empty) {
        return Err(BedrockError::validation(
            "1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    Ok(max_tokens)
}
