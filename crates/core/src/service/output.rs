//! Structured output: one plan per request, used by streamed and whole answers alike.
//!
//! When a JSON Schema applies, the answer is asked for through a forced `respond` tool if
//! every model of the chain can be forced to use a tool, and through an instruction
//! otherwise. Either way the output is parsed the same way (the tool's input, or the text
//! with any code fence stripped) and validated by a validator compiled once per schema and
//! kept for the warm process. A whole answer gets one repair attempt; a stream cannot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::Shared;
use super::admit::Admitted;
use super::charge::Charges;
use crate::chat::Prepared;
use crate::error::Error;
use crate::invoke::{Attempt, Invocation, InvokeFailure, Invoker};
use crate::model::{
    ContentBlock, Message, ModelRequest, ModelResponse, Role, StopReason, SystemBlock, ToolChoice,
    ToolResultContent, ToolSpec,
};
use crate::routing::ModelTarget;

/// The tool that carries structured output when a schema is requested.
pub const RESPOND_TOOL: &str = "respond";

/// Compiled schemas, keyed by the SHA-256 of the schema. Prompt versions pin their schema,
/// so in practice there is one entry per prompt version in use; schemas sent with requests
/// are bounded by `MAX_VALIDATORS` (the map is emptied when full, never grown past it).
#[derive(Default)]
pub struct Validators {
    compiled: Mutex<HashMap<[u8; 32], Arc<jsonschema::Validator>>>,
}

const MAX_VALIDATORS: usize = 512;

impl Validators {
    pub fn get(&self, schema: &Value) -> Result<Arc<jsonschema::Validator>, Error> {
        let key: [u8; 32] = Sha256::digest(serde_json::to_vec(schema).unwrap_or_default()).into();
        let lock = || {
            self.compiled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(v) = lock().get(&key) {
            return Ok(v.clone());
        }
        let validator = Arc::new(jsonschema::validator_for(schema).map_err(|e| {
            Error::bad_request("response_format", format!("not a valid JSON Schema: {e}"))
        })?);
        let mut compiled = lock();
        if compiled.len() >= MAX_VALIDATORS {
            compiled.clear();
        }
        compiled.insert(key, validator.clone());
        Ok(validator)
    }
}

/// How a request's structured output is asked for and checked.
pub struct OutputPlan {
    pub schema: Value,
    pub validator: Arc<jsonschema::Validator>,
    /// Through the forced `respond` tool (else an instruction in the system prompt).
    pub via_tool: bool,
}

impl OutputPlan {
    /// The plan for a schema on a chain: the tool only when the caller brought no tools of
    /// its own and every model of the chain can be forced to call a tool (so a fallback
    /// cannot land on a model that rejects the forced tool). Claude thinking forbids forced
    /// tool choice, so a reasoning request uses the instruction there.
    pub fn new(
        schema: &Value,
        validator: Arc<jsonschema::Validator>,
        caller_tools: bool,
        reasoning: bool,
        chain: &[ModelTarget],
    ) -> Self {
        use crate::routing::ReasoningStyle;
        let via_tool = !caller_tools
            && chain.iter().all(|t| {
                let c = &t.capabilities;
                c.tool_use
                    && c.forced_tool_choice
                    && !(reasoning && c.reasoning == Some(ReasoningStyle::AnthropicThinking))
            });
        Self {
            schema: schema.clone(),
            validator,
            via_tool,
        }
    }

    /// The JSON the answer carries, validated against the schema.
    pub fn check(&self, response: &ModelResponse) -> Result<Value, String> {
        let value = self.extract(response)?;
        let errors: Vec<String> = self
            .validator
            .iter_errors(&value)
            .take(10)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(errors.join("; "))
        }
    }

    fn extract(&self, response: &ModelResponse) -> Result<Value, String> {
        if self.via_tool {
            return response
                .content
                .iter()
                .find_map(|b| match b {
                    ContentBlock::ToolUse { name, input, .. } if name == RESPOND_TOOL => {
                        Some(input.clone())
                    }
                    _ => None,
                })
                .ok_or_else(|| "the model did not call the respond tool".to_owned());
        }
        parse_text(&response.text())
    }

    /// The answer as callers see it: the respond tool's input becomes the text.
    pub fn answer(&self, mut response: ModelResponse, value: &Value) -> ModelResponse {
        if self.via_tool {
            response.content = vec![ContentBlock::Text(value.to_string())];
            if response.stop_reason == StopReason::ToolUse {
                response.stop_reason = StopReason::EndTurn;
            }
        }
        response
    }
}

/// JSON in text, with or without a Markdown code fence around it.
pub(crate) fn parse_text(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    serde_json::from_str(body).map_err(|e| format!("the output is not JSON: {e}"))
}

/// The request as the plan wants it sent.
pub(crate) fn shaped(request: &ModelRequest, plan: Option<&OutputPlan>) -> ModelRequest {
    let mut request = request.clone();
    let Some(plan) = plan else {
        return request;
    };
    if plan.via_tool {
        request.tools = vec![ToolSpec {
            name: RESPOND_TOOL.into(),
            description: Some("Return the answer as JSON that matches the schema.".into()),
            input_schema: plan.schema.clone(),
            strict: None,
        }];
        request.tool_choice = Some(ToolChoice::Tool(RESPOND_TOOL.into()));
    } else {
        request.system.push(SystemBlock::Text(format!(
            "Answer with one JSON value that validates against this JSON Schema, and nothing else:\n{}",
            plan.schema
        )));
    }
    request
}

/// The repair turn: what the model said, and what was wrong with it.
fn repair(
    mut request: ModelRequest,
    first: &ModelResponse,
    problem: &str,
    via_tool: bool,
) -> ModelRequest {
    let mut said = first.content.clone();
    if said.is_empty() {
        said.push(ContentBlock::Text("(no output)".into()));
    }
    request.messages.push(Message {
        role: Role::Assistant,
        content: said,
    });
    let correction = format!(
        "That output does not match the required JSON Schema: {problem}. Answer again with corrected JSON."
    );
    let tool_id = first.content.iter().find_map(|b| match b {
        ContentBlock::ToolUse { id, name, .. } if name == RESPOND_TOOL => Some(id.clone()),
        _ => None,
    });
    request.messages.push(match (via_tool, tool_id) {
        (true, Some(id)) => Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id,
                content: vec![ToolResultContent::Text(correction)],
                is_error: true,
            }],
        },
        _ => Message::user(correction),
    });
    request
}

impl Shared {
    /// The request's output plan: `None` without a schema.
    pub(crate) fn plan(&self, prepared: &Prepared) -> Result<Option<OutputPlan>, Error> {
        let Some(schema) = &prepared.output_schema else {
            return Ok(None);
        };
        let validator = self.validators.get(schema)?;
        Ok(Some(OutputPlan::new(
            schema,
            validator,
            !prepared.request.tools.is_empty(),
            prepared.request.reasoning.is_some(),
            &prepared.route.chain,
        )))
    }
}

/// Pushes what an invocation may be billed for (the answer, and attempts cut off before
/// it), whether it succeeded or not.
fn charged(
    invocation: Result<Invocation, InvokeFailure>,
    chain: &[ModelTarget],
    request: &ModelRequest,
    charges: &mut Charges,
) -> Result<Invocation, Error> {
    let attempts = match &invocation {
        Ok(i) => &i.attempts,
        Err(f) => &f.attempts,
    };
    charges.push_maybe_billed(chain, attempts, request);
    let invocation = invocation.map_err(Error::Invoke)?;
    charges.push_served(
        &invocation.target,
        invocation.response.usage,
        &invocation.response.served,
    );
    Ok(invocation)
}

/// A whole answer's invocation: the model's response, who answered, the attempts, the JSON.
pub(crate) type Invoked = (ModelResponse, ModelTarget, Vec<Attempt>, Option<Value>);

/// Invokes the chain with the request shaped by the plan; with a plan, validates the JSON
/// and repairs once. Every call that may be billed is pushed to `charges`.
pub(crate) async fn invoke_planned(
    invoker: &Invoker,
    admitted: &Admitted,
    plan: Option<&OutputPlan>,
    deadline: Instant,
    charges: &mut Charges,
) -> Result<Invoked, Error> {
    let chain = &admitted.prepared.route.chain;
    let request = shaped(&admitted.prepared.request, plan);
    let first = invoker.invoke(chain, &request, deadline).await;
    let first = charged(first, chain, &request, charges)?;
    let Some(plan) = plan else {
        return Ok((first.response, first.target, first.attempts, None));
    };
    let problem = match plan.check(&first.response) {
        Ok(value) => {
            let response = plan.answer(first.response, &value);
            return Ok((response, first.target, first.attempts, Some(value)));
        }
        Err(problem) => problem,
    };
    tracing::info!(model = %first.target.invoke_id, %problem, "structured output invalid; one repair attempt");
    let retry = repair(request, &first.response, &problem, plan.via_tool);
    let mut attempts = first.attempts;
    let second = invoker.invoke(chain, &retry, deadline).await;
    let second = charged(second, chain, &retry, charges)?;
    attempts.extend(second.attempts);
    match plan.check(&second.response) {
        Ok(value) => Ok((
            plan.answer(second.response, &value),
            second.target,
            attempts,
            Some(value),
        )),
        Err(e) => Err(Error::InvalidOutput(format!(
            "the model's output does not match the requested schema after one repair attempt: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ModelCapabilities;

    fn target(tool_use: bool) -> ModelTarget {
        ModelTarget::new(
            "m",
            "m",
            ModelCapabilities {
                tool_use,
                ..Default::default()
            },
        )
    }

    fn plan(chain: &[ModelTarget]) -> OutputPlan {
        let schema = serde_json::json!({"type": "object", "required": ["a"]});
        let v = Validators::default().get(&schema).unwrap();
        OutputPlan::new(&schema, v, false, false, chain)
    }

    #[test]
    fn the_tool_is_used_only_when_every_model_of_the_chain_supports_it() {
        assert!(plan(&[target(true), target(true)]).via_tool);
        assert!(!plan(&[target(true), target(false)]).via_tool);
    }

    #[test]
    fn fenced_json_in_text_is_parsed_and_validated() {
        let p = plan(&[target(false)]);
        let response = ModelResponse {
            content: vec![ContentBlock::Text("```json\n{\"a\": 1}\n```".into())],
            stop_reason: StopReason::EndTurn,
            usage: Default::default(),
            latency_ms: 0,
            citations: Vec::new(),
            served: Default::default(),
        };
        assert_eq!(p.check(&response).unwrap(), serde_json::json!({"a": 1}));
        let bad = ModelResponse {
            content: vec![ContentBlock::Text("{}".into())],
            ..response
        };
        assert!(p.check(&bad).unwrap_err().contains("a"));
    }

    #[test]
    fn a_schema_is_compiled_once() {
        let validators = Validators::default();
        let schema = serde_json::json!({"type": "string"});
        let a = validators.get(&schema).unwrap();
        let b = validators.get(&schema).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(validators.get(&serde_json::json!({"type": 3})).is_err());
    }
}
