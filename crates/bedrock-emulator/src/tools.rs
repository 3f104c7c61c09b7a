//! `toolConfig`: the tools a request defines, and the choice it makes the model take
//! (`auto`, or the forced `any` and `tool` that not every model supports).

use serde::Deserialize;
use serde_json::Value;

use crate::config::ModelSpec;
use crate::error::BedrockError;
use crate::tally::TokenTally;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    ToolSpec(ToolSpecWire),
    CachePoint(Value),
    SystemTool(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpecWire {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_schema: ToolInputSchema,
    #[serde(default)]
    #[allow(dead_code)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolInputSchema {
    Json(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoiceWire {
    Auto(Value),
    Any(Value),
    Tool(NamedTool),
}

#[derive(Debug, Deserialize)]
pub struct NamedTool {
    pub name: String,
}

/// What the caller may make the model do with tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Any,
    Tool(String),
}

#[derive(Debug, Clone)]
pub struct ToolDef {
    pub name: String,
    pub schema: Value,
}

/// The request's tools, counted into `tally`, and its tool choice.
pub fn tools(
    config: ToolConfig,
    spec: &ModelSpec,
    tally: &mut TokenTally,
) -> Result<(Vec<ToolDef>, ToolChoice), BedrockError> {
    let mut tools = Vec::new();
    if !spec.tool_use && !config.tools.is_empty() {
        return Err(BedrockError::validation(
            "This model doesn't support tool use.",
        ));
    }
    for (k, tool) in config.tools.into_iter().enumerate() {
        match tool {
            Tool::ToolSpec(t) => {
                let ToolInputSchema::Json(schema) = t.input_schema;
                tally.add_text(&t.name);
                if let Some(d) = &t.description {
                    tally.add_text(d);
                }
                tally.add_text(&schema.to_string());
                tools.push(ToolDef {
                    name: t.name,
                    schema,
                });
            }
            Tool::CachePoint(v) => {
                tally.cache_point(&v, &format!("toolConfig.tools.{k}.member.cachePoint"), spec)?
            }
            Tool::SystemTool(v) => tally.add_text(&v.to_string()),
        }
    }
    if tools.is_empty() {
        return Err(BedrockError::validation(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ));
    }
    let unsupported = |member: &str| {
        BedrockError::validation(format!(
            "This model doesn't support the toolConfig.toolChoice.{member} field. Remove toolConfig.toolChoice.{member} and try again."
        ))
    };
    let tool_choice = match config.tool_choice {
        None | Some(ToolChoiceWire::Auto(_)) => ToolChoice::Auto,
        Some(ToolChoiceWire::Any(_)) if !spec.forced_tool_choice => {
            return Err(unsupported("any"));
        }
        Some(ToolChoiceWire::Any(_)) => ToolChoice::Any,
        Some(ToolChoiceWire::Tool(_)) if !spec.forced_tool_choice => {
            return Err(unsupported("tool"));
        }
        Some(ToolChoiceWire::Tool(named)) => {
            if !tools.iter().any(|t| t.name == named.name) {
                return Err(BedrockError::validation(format!(
                    "The tool {} in toolChoice is not defined in toolConfig.tools.",
                    named.name
                )));
            }
            ToolChoice::Tool(named.name)
        }
    };
    Ok((tools, tool_choice))
}
