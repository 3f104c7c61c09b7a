//! The OpenAI Chat Completions fields Quarry does not honour (yet), and what it does with
//! each: a field that would change the answer is refused with a 400 naming it, never
//! silently ignored; one that does not change the answer is accepted. The README keeps the
//! same table.

use quarry_core::Error;
use quarry_core::model::{Effort, ReasoningRequest, ServiceTier};
use serde::Deserialize;
use serde_json::Value;

/// Fields of the request Quarry checks rather than maps.
#[derive(Debug, Default, Deserialize)]
pub struct OtherFields {
    pub logit_bias: Option<Value>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub audio: Option<Value>,
    pub modalities: Option<Vec<String>>,
    pub web_search_options: Option<Value>,
    pub prediction: Option<Value>,
    pub top_logprobs: Option<u32>,
    pub reasoning_effort: Option<String>,
    pub parallel_tool_calls: Option<bool>,
    /// Legacy function calling, mapped to tools (`legacy`).
    pub functions: Option<Value>,
    pub function_call: Option<Value>,
    pub service_tier: Option<String>,
    pub verbosity: Option<String>,
    /// Quarry's extension: `optimized` asks for Bedrock's latency-optimized inference.
    pub latency: Option<String>,
    /// Best effort: Bedrock has no seed; accepted, answers are not reproducible.
    pub seed: Option<i64>,
    /// Accepted, no effect on the answer.
    pub user: Option<String>,
    pub store: Option<bool>,
    pub prompt_cache_key: Option<String>,
    pub safety_identifier: Option<String>,
}

fn refuse(field: &str, why: &str) -> Error {
    Error::bad_request(field, format!("'{field}' is not supported: {why}"))
}

impl OtherFields {
    /// A 400 naming the first field that would change the answer in a way Quarry cannot
    /// honour.
    pub fn check(&self) -> Result<(), Error> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        if self
            .logit_bias
            .as_ref()
            .is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty()))
        {
            return Err(refuse(
                "logit_bias",
                "Bedrock's models take no token biases",
            ));
        }
        for (field, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(refuse(
                    field,
                    "Converse has no penalties; send 0 or leave it out",
                ));
            }
        }
        if set(&self.audio)
            || self
                .modalities
                .as_ref()
                .is_some_and(|m| m.iter().any(|x| x != "text"))
        {
            return Err(refuse(
                if set(&self.audio) {
                    "audio"
                } else {
                    "modalities"
                },
                "Quarry answers with text only",
            ));
        }
        if set(&self.web_search_options) {
            return Err(refuse(
                "web_search_options",
                "Quarry does not search the web",
            ));
        }
        if set(&self.prediction) {
            return Err(refuse("prediction", "Bedrock has no predicted outputs"));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(refuse(
                "top_logprobs",
                "logprobs are not available on Bedrock",
            ));
        }
        if self.verbosity.as_ref().is_some_and(|v| v != "medium") {
            return Err(refuse(
                "verbosity",
                "Bedrock's models take no verbosity setting",
            ));
        }
        Ok(())
    }
}

impl OtherFields {
    /// `reasoning_effort`: `none` (or absent) is no reasoning.
    pub fn reasoning(&self) -> Result<Option<ReasoningRequest>, Error> {
        match self.reasoning_effort.as_deref() {
            None | Some("none") => Ok(None),
            Some(e) => match Effort::parse(e) {
                Some(effort) => Ok(Some(ReasoningRequest {
                    effort: Some(effort),
                    budget_tokens: None,
                })),
                None => Err(Error::bad_request(
                    "reasoning_effort",
                    format!(
                        "unknown reasoning_effort '{e}': use none, minimal, low, medium or high"
                    ),
                )),
            },
        }
    }

    /// `service_tier`: `auto` (or absent) leaves it to the routing; `default`, `flex` and
    /// `priority` are Bedrock's tiers.
    pub fn tier(&self) -> Result<Option<ServiceTier>, Error> {
        tier_of(self.service_tier.as_deref())
    }

    pub fn latency_optimized(&self) -> Result<bool, Error> {
        latency_of(self.latency.as_deref())
    }
}

/// A `service_tier` field, in either API.
pub fn tier_of(tier: Option<&str>) -> Result<Option<ServiceTier>, Error> {
    match tier {
        None | Some("auto") => Ok(None),
        Some(t @ ("default" | "flex" | "priority")) => Ok(ServiceTier::parse(t)),
        Some(other) => Err(Error::bad_request(
            "service_tier",
            format!("unknown service_tier '{other}': use auto, default, flex or priority"),
        )),
    }
}

/// A `latency` field, in either API: `standard` or `optimized`.
pub fn latency_of(latency: Option<&str>) -> Result<bool, Error> {
    match latency {
        None | Some("standard") => Ok(false),
        Some("optimized") => Ok(true),
        Some(other) => Err(Error::bad_request(
            "latency",
            format!("unknown latency '{other}': use standard or optimized"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::native::Limits;
    use crate::openai::CompletionRequest;

    fn with(field: &str, value: serde_json::Value) -> Result<(), String> {
        let mut body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value;
        let request: CompletionRequest = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let limits = Limits {
            max_messages: 100,
            max_total_chars: 100_000,
        };
        request
            .into_input(&limits)
            .map(|_| ())
            .map_err(|e| e.field().unwrap_or_default().to_owned())
    }

    #[test]
    fn fields_that_change_the_answer_are_refused_by_name() {
        for (field, value) in [
            ("logit_bias", json!({"50256": -100})),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(-1.0)),
            ("audio", json!({"voice": "alloy", "format": "wav"})),
            ("modalities", json!(["text", "audio"])),
            ("web_search_options", json!({})),
            ("prediction", json!({"type": "content", "content": "x"})),
            ("top_logprobs", json!(3)),
            ("reasoning_effort", json!("extreme")),
            ("functions", json!("not a list")),
            ("function_call", json!("auto")),
            ("service_tier", json!("scale")),
            ("latency", json!("fastest")),
            ("verbosity", json!("low")),
        ] {
            assert_eq!(
                with(field, value.clone()),
                Err(field.to_owned()),
                "{field}: {value}"
            );
        }
    }

    #[test]
    fn fields_that_do_not_change_it_are_accepted() {
        for (field, value) in [
            ("logit_bias", json!({})),
            ("presence_penalty", json!(0)),
            ("frequency_penalty", json!(0.0)),
            ("modalities", json!(["text"])),
            ("top_logprobs", json!(0)),
            ("parallel_tool_calls", json!(true)),
            ("service_tier", json!("auto")),
            // Honoured: mapped onto the request (models are checked when routed).
            ("reasoning_effort", json!("high")),
            ("reasoning_effort", json!("none")),
            ("parallel_tool_calls", json!(false)),
            ("service_tier", json!("flex")),
            ("service_tier", json!("priority")),
            ("latency", json!("optimized")),
            ("functions", json!([{"name": "f"}])),
            ("seed", json!(42)),
            ("user", json!("u-1")),
            ("user", json!("not a tag: é")),
            ("store", json!(false)),
            ("verbosity", json!("medium")),
            ("some_future_field", json!(1)),
        ] {
            assert_eq!(with(field, value.clone()), Ok(()), "{field}: {value}");
        }
    }
}
