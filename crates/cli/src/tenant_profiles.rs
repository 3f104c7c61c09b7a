//! `quarry tenants set T --inference-profiles`: an application inference profile per model
//! (or system profile) the tenant's tiers route to, tagged `tenant` and `stage`, so the AWS
//! bill splits Bedrock spend by tenant. `quarry tenants remove` deletes them.

use quarry_aws::inference_profiles::BedrockProfiles;
use quarry_core::routing::RoutingConfig;
use quarry_core::tenancy::TenantPolicy;
use sha2::Digest;

use crate::aws::AwsArgs;

/// A profile name Bedrock takes (`([0-9a-zA-Z:.][ _-]?)+`, up to 64), unique per stage,
/// tenant and model.
fn profile_name(stage: &str, tenant: &str, model: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(format!("{stage}/{tenant}/{model}")));
    let readable: String = tenant
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("quarry-{readable}-{}", &digest[..24])
}

/// The models and system profiles the tenant's tiers route to (ARNs are called as they are).
fn routed_models(routing: &RoutingConfig, policy: &TenantPolicy) -> Vec<String> {
    let mut ids: Vec<String> = routing
        .tiers
        .iter()
        .filter(|(tier, _)| policy.allows_tier(tier))
        .flat_map(|(_, chain)| chain.iter().map(|e| e.model().to_owned()))
        .filter(|id| !id.starts_with("arn:"))
        .filter(|id| {
            routing
                .base_model(id)
                .and_then(|b| routing.capabilities(&b).cloned())
                .is_none_or(|c| c.embedding.is_none())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

pub async fn create(aws: &AwsArgs, tenant: &str, policy: &mut TenantPolicy) -> Result<(), String> {
    let sdk = aws.sdk().await;
    let settings = aws.settings();
    let configs = quarry_core::config::Configs::new(
        std::sync::Arc::new(quarry_aws::ssm::SsmParams::new(&sdk)),
        &settings.param_prefix,
        std::time::Duration::ZERO,
    );
    let routing = configs
        .routing()
        .await
        .map_err(|e| aws.failure("the routing", &e))?;
    let profiles = BedrockProfiles::new(&aws.bedrock_sdk().await);
    for model in routed_models(&routing, policy) {
        if policy.inference_profiles.contains_key(&model) {
            continue;
        }
        let source = profiles
            .source_arn(&model)
            .await
            .map_err(|e| format!("{model}: {e}"))?;
        let name = profile_name(&aws.stage, tenant, &model);
        let arn = profiles
            .create(
                &name,
                &source,
                &[("tenant", tenant), ("stage", &aws.stage)],
                &name,
            )
            .await
            .map_err(|e| format!("{model}: {e}"))?;
        println!("  inference profile for {model}: {arn}");
        policy.inference_profiles.insert(model, arn);
    }
    Ok(())
}

/// Deletes the tenant's profiles (those already gone are fine).
pub async fn delete(aws: &AwsArgs, policy: &TenantPolicy) -> Result<(), String> {
    if policy.inference_profiles.is_empty() {
        return Ok(());
    }
    let profiles = BedrockProfiles::new(&aws.bedrock_sdk().await);
    for arn in policy.inference_profiles.values() {
        profiles
            .delete(arn)
            .await
            .map_err(|e| format!("{arn}: {e}"))?;
        println!("  inference profile {arn} deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_bedrock_for_any_tenant() {
        let ok = |s: &str| {
            s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.'))
                && !s.contains("--")
        };
        for tenant in ["acme", "a_b-c", &"x".repeat(64), "9-_-9"] {
            let name = profile_name(
                "prod",
                tenant,
                "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            );
            assert!(ok(&name), "{name}");
        }
        assert_ne!(
            profile_name("prod", "a", "m"),
            profile_name("dev", "a", "m")
        );
    }
}
