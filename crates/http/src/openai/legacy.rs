//! OpenAI's legacy function calling (`functions`, `function_call`, `role: "function"`),
//! mapped onto tools: a client still on it gets tool use, and its answer in the legacy shape
//! (`message.function_call`, `finish_reason: "function_call"`).
//!
//! The legacy shape carries one call per turn: when a model calls several tools at once, the
//! first is the answer's `function_call`.

use quarry_core::Error;
use serde::Deserialize;
use serde_json::Value;

use super::request::{OaFunction, OaNamed, OaTool, OaToolChoice};

/// `functions` and `function_call`, as tools and a tool choice.
pub struct Functions {
    pub tools: Vec<OaTool>,
    pub choice: Option<OaToolChoice>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FunctionCallParam {
    Mode(String),
    Named(OaNamed),
}

impl Functions {
    /// The legacy fields of a request, if it used them.
    pub fn parse(
        functions: Option<Value>,
        function_call: Option<Value>,
    ) -> Result<Option<Self>, Error> {
        let functions = functions.filter(|v| !v.is_null());
        let function_call = function_call.filter(|v| !v.is_null());
        if functions.is_none() && function_call.is_none() {
            return Ok(None);
        }
        let functions: Vec<OaFunction> = match functions {
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::bad_request(
                    "functions",
                    format!("functions must be a list of {{name, description, parameters}}: {e}"),
                )
            })?,
            None => {
                return Err(Error::bad_request(
                    "function_call",
                    "function_call needs 'functions'",
                ));
            }
        };
        let choice = match function_call {
            None => None,
            Some(v) => Some(match serde_json::from_value(v) {
                Ok(FunctionCallParam::Mode(m)) => OaToolChoice::Mode(m),
                Ok(FunctionCallParam::Named(n)) => OaToolChoice::Function { function: n },
                Err(_) => {
                    return Err(Error::bad_request(
                        "function_call",
                        "function_call is \"none\", \"auto\" or {\"name\": ...}",
                    ));
                }
            }),
        };
        Ok(Some(Self {
            tools: functions
                .into_iter()
                .map(|function| OaTool { function })
                .collect(),
            choice,
        }))
    }
}

/// The tool-use ID of the legacy call in message `index` (legacy calls have none).
pub fn call_id(index: usize) -> String {
    format!("call_fn_{index}")
}
