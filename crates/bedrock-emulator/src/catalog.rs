//! Model identifiers: plain model IDs, cross-region inference profiles (`us.`, `eu.`, ...),
//! and ARNs (foundation model, inference profile, application inference profile), resolved
//! to a base model of the catalog.

use crate::config::{EmulatorConfig, ModelSpec};
use crate::error::{BedrockError, ErrorKind};

/// A model identifier resolved against the catalog.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The base model ID (`anthropic.claude-3-5-haiku-20241022-v1:0`).
    pub base_id: String,
    pub spec: ModelSpec,
}

pub fn resolve(config: &EmulatorConfig, raw: &str) -> Result<ResolvedModel, BedrockError> {
    let invalid = || BedrockError::validation("The provided model identifier is invalid.");
    if raw.is_empty() || raw.len() > 2048 {
        return Err(invalid());
    }
    let base_id = if let Some(rest) = raw.strip_prefix("arn:") {
        resolve_arn(config, raw, rest)?
    } else {
        strip_profile_prefix(config, raw).to_owned()
    };
    let spec = config.models.get(&base_id).cloned().ok_or_else(invalid)?;
    if !spec.access {
        return Err(BedrockError::of(ErrorKind::AccessDeniedException));
    }
    Ok(ResolvedModel { base_id, spec })
}

/// `us.anthropic.claude...` -> `anthropic.claude...` when the rest is a known model.
fn strip_profile_prefix<'a>(config: &EmulatorConfig, id: &'a str) -> &'a str {
    if let Some((prefix, rest)) = id.split_once('.')
        && config
            .inference_profile_prefixes
            .iter()
            .any(|p| p == prefix)
        && config.models.contains_key(rest)
    {
        return rest;
    }
    id
}

/// `arn:aws:bedrock:REGION:ACCOUNT:RESOURCE-TYPE/ID`.
fn resolve_arn(config: &EmulatorConfig, full: &str, rest: &str) -> Result<String, BedrockError> {
    let invalid = || BedrockError::validation("The provided model identifier is invalid.");
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, service, _region, _account, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    if !partition.starts_with("aws") || *service != "bedrock" {
        return Err(invalid());
    }
    let (kind, id) = resource.split_once('/').ok_or_else(invalid)?;
    match kind {
        "foundation-model" => Ok(id.to_owned()),
        "inference-profile" => Ok(strip_profile_prefix(config, id).to_owned()),
        "application-inference-profile" => config
            .application_inference_profiles
            .get(full)
            .or_else(|| config.application_inference_profiles.get(id))
            .cloned()
            .ok_or_else(|| {
                BedrockError::new(
                    ErrorKind::ResourceNotFoundException,
                    format!("The application inference profile {id} was not found."),
                )
            }),
        "provisioned-model" => crate::provisioned::spec_of(&config.provisioned_models, full)
            .map(|p| p.model.clone())
            .ok_or_else(|| {
                BedrockError::new(
                    ErrorKind::ResourceNotFoundException,
                    format!("The provisioned-model {id} was not found."),
                )
            }),
        "custom-model" | "imported-model" => Err(BedrockError::new(
            ErrorKind::ResourceNotFoundException,
            format!("The {kind} {id} was not found."),
        )),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmulatorConfig {
        EmulatorConfig::builtin()
    }

    #[test]
    fn plain_profile_and_arns_resolve() {
        let c = config();
        let base = "anthropic.claude-3-5-haiku-20241022-v1:0";
        for id in [
            base.to_owned(),
            format!("us.{base}"),
            format!("global.{base}"),
            format!("arn:aws:bedrock:us-east-1::foundation-model/{base}"),
            format!("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{base}"),
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/quarry-demo"
                .to_owned(),
        ] {
            assert_eq!(resolve(&c, &id).unwrap().base_id, base, "{id}");
        }
    }

    #[test]
    fn unknown_models_get_bedrocks_errors() {
        let c = config();
        let e = resolve(&c, "acme.nothing-v1").unwrap_err();
        assert_eq!(e.kind, ErrorKind::ValidationException);
        let e = resolve(&c, "xx.anthropic.claude-3-5-haiku-20241022-v1:0").unwrap_err();
        assert_eq!(e.kind, ErrorKind::ValidationException);
        let e = resolve(
            &c,
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/nope",
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFoundException);
    }

    #[test]
    fn model_without_access_is_denied() {
        let mut c = config();
        if let Some(m) = c.models.get_mut("amazon.nova-lite-v1:0") {
            m.access = false;
        }
        let e = resolve(&c, "amazon.nova-lite-v1:0").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDeniedException);
    }
}
