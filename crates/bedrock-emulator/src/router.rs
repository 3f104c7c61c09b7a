//! Prompt routers: a model ID naming a router (`arn:aws:bedrock:REGION:ACCOUNT:
//! default-prompt-router/anthropic.claude:1`, or `.../prompt-router/ID`) resolves, per
//! request, to one of the router's models. The choice is deterministic: short prompts go to
//! the first model (the cheaper one, as Bedrock's routers favour), long ones to the last.

use crate::catalog::{ResolvedModel, resolve};
use crate::config::EmulatorConfig;
use crate::error::{BedrockError, ErrorKind};

/// Prompts of fewer input tokens than this go to the router's first model.
pub const SHORT_PROMPT_TOKENS: u32 = 500;

/// A router named by a request's model ID.
#[derive(Debug, Clone)]
pub struct Router {
    pub region: String,
    pub account: String,
    /// Never empty.
    pub models: Vec<ResolvedModel>,
}

impl Router {
    /// Index in `models` of the model that answers a prompt of `input_tokens` tokens.
    pub fn pick(&self, input_tokens: u32) -> usize {
        if input_tokens < SHORT_PROMPT_TOKENS {
            0
        } else {
            self.models.len().saturating_sub(1)
        }
    }

    /// The ARN Bedrock reports in `trace.promptRouter.invokedModelId`: the cross-region
    /// inference profile of the chosen model in the router's geography.
    pub fn invoked_model_arn(&self, base_id: &str) -> String {
        let geo = match self.region.split('-').next() {
            Some("eu") => "eu",
            Some("ap") => "apac",
            _ => "us",
        };
        format!(
            "arn:aws:bedrock:{}:{}:inference-profile/{geo}.{base_id}",
            self.region, self.account
        )
    }
}

/// The router a model ID names, `None` when it names no router at all.
pub fn router_of(config: &EmulatorConfig, raw: &str) -> Option<Result<Router, BedrockError>> {
    let rest = raw.strip_prefix("arn:")?;
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, "bedrock", region, account, resource] = parts.as_slice() else {
        return None;
    };
    let (kind, id) = resource.split_once('/')?;
    if !matches!(kind, "default-prompt-router" | "prompt-router") || !partition.starts_with("aws") {
        return None;
    }
    let not_found = || {
        BedrockError::new(
            ErrorKind::ResourceNotFoundException,
            format!("The prompt router {raw} was not found."),
        )
    };
    let Some(ids) = config
        .prompt_routers
        .get(raw)
        .or_else(|| config.prompt_routers.get(id))
    else {
        return Some(Err(not_found()));
    };
    let models: Result<Vec<ResolvedModel>, BedrockError> =
        ids.iter().map(|m| resolve(config, m)).collect();
    Some(match models {
        Ok(models) if !models.is_empty() => Ok(Router {
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            models,
        }),
        Ok(_) => Err(not_found()),
        Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str =
        "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";

    #[test]
    fn default_router_resolves_and_picks_by_length() {
        let config = EmulatorConfig::builtin();
        let router = router_of(&config, DEFAULT).unwrap().unwrap();
        assert_eq!(router.models.len(), 2);
        assert_eq!(router.pick(10), 0);
        assert_eq!(router.pick(SHORT_PROMPT_TOKENS), 1);
        assert_eq!(
            router.invoked_model_arn("anthropic.claude-3-5-haiku-20241022-v1:0"),
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
        );
    }

    #[test]
    fn unknown_router_is_not_found_and_models_are_not_routers() {
        let config = EmulatorConfig::builtin();
        let e = router_of(
            &config,
            "arn:aws:bedrock:us-east-1:123456789012:prompt-router/nope",
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFoundException);
        assert!(router_of(&config, "anthropic.claude-3-5-haiku-20241022-v1:0").is_none());
    }
}
