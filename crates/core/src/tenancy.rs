//! Tenants and API keys. Keys are never stored: the directory (SSM SecureString
//! `/quarry/{stage}/tenants`) maps the SHA-256 of each key to its tenant, and says what each
//! tenant may use. The tenant of a request always comes from here (or from the API Gateway
//! authorizer), never from the request body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::routing::Route;

/// What a tenant may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Tiers this tenant may use; `*` for all.
    #[serde(default = "all")]
    pub allowed_tiers: Vec<String>,
    /// Model IDs, profile IDs, ARNs or base model IDs this tenant may name directly; `*`
    /// for all the routing configuration knows.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Guardrails for every request of this tenant (prompts may add stricter ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<crate::guardrails::GuardrailConfig>,
    /// Batch producers allowed to submit for this tenant: the SQS `SenderId` of each
    /// (an IAM user or role ID, with or without `:session`), or `*` for any. A batch message
    /// naming this tenant from another sender is refused: the tenant of a message is only
    /// trusted when its producer may speak for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_senders: Vec<String>,
    /// Requests and tokens per minute (DynamoDB counters); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
}

fn all() -> Vec<String> {
    vec!["*".to_owned()]
}

impl TenantPolicy {
    /// Whether a batch message from `sender` (SQS SenderId) may speak for this tenant.
    pub fn allows_sender(&self, sender: Option<&str>) -> bool {
        self.batch_senders.iter().any(|allowed| {
            allowed == "*"
                || sender
                    .is_some_and(|s| s == allowed || s.split(':').next() == Some(allowed.as_str()))
        })
    }

    pub fn allows_tier(&self, tier: &str) -> bool {
        self.allowed_tiers.iter().any(|t| t == "*" || t == tier)
    }

    pub fn allows_model(&self, invoke_id: &str, base_id: &str) -> bool {
        self.allowed_models
            .iter()
            .any(|m| m == "*" || m == invoke_id || m == base_id)
    }

    /// A tier route needs the tier; a direct-model route needs the model.
    pub fn allows(&self, route: &Route) -> bool {
        match &route.tier {
            Some(tier) => self.allows_tier(tier),
            None => route
                .chain
                .iter()
                .all(|t| self.allows_model(&t.invoke_id, &t.base_id)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub tenant: String,
    #[serde(default)]
    pub admin: bool,
    /// A name for the key (for rotation and audit), never the key.
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDirectory {
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// SHA-256 (lowercase hex) of the key -> entry.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyEntry>,
}

/// Who is calling: established by authentication, carried through the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub tenant: String,
    pub admin: bool,
    pub key_label: Option<String>,
    pub policy: TenantPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    #[error("the key's tenant '{0}' is not configured")]
    UnknownTenant(String),
}

/// SHA-256 of a key, lowercase hex: what the directory stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl TenantDirectory {
    pub fn authenticate(&self, key: Option<&str>) -> Result<Caller, AuthError> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        // Keys are high-entropy secrets, so looking up their hash leaks nothing useful through
        // timing; the key itself is never compared.
        let entry = self.keys.get(&hash_key(key)).ok_or(AuthError::Invalid)?;
        self.caller(&entry.tenant, entry.admin, entry.label.clone())
    }

    /// A caller established by another authority (an API Gateway IAM or JWT authorizer).
    pub fn caller(
        &self,
        tenant: &str,
        admin: bool,
        label: Option<String>,
    ) -> Result<Caller, AuthError> {
        let policy = self
            .tenants
            .get(tenant)
            .cloned()
            .ok_or_else(|| AuthError::UnknownTenant(tenant.to_owned()))?;
        Ok(Caller {
            tenant: tenant.to_owned(),
            admin,
            key_label: label,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ModelTarget;

    fn directory() -> TenantDirectory {
        let mut d = TenantDirectory::default();
        d.tenants.insert(
            "acme".into(),
            TenantPolicy {
                allowed_tiers: vec!["fast".into()],
                allowed_models: vec!["amazon.nova-lite-v1:0".into()],
                ..Default::default()
            },
        );
        d.keys.insert(
            hash_key("k-acme"),
            KeyEntry {
                tenant: "acme".into(),
                admin: false,
                label: Some("dev".into()),
            },
        );
        d.keys.insert(
            hash_key("k-ghost"),
            KeyEntry {
                tenant: "ghost".into(),
                admin: false,
                label: None,
            },
        );
        d
    }

    #[test]
    fn keys_authenticate_by_hash() {
        let d = directory();
        let c = d.authenticate(Some("k-acme")).unwrap();
        assert_eq!(c.tenant, "acme");
        assert!(!c.admin);
        assert_eq!(d.authenticate(Some("wrong")), Err(AuthError::Invalid));
        assert_eq!(d.authenticate(Some("  ")), Err(AuthError::Missing));
        assert_eq!(d.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            d.authenticate(Some("k-ghost")),
            Err(AuthError::UnknownTenant("ghost".into()))
        );
        assert_eq!(hash_key("abc").len(), 64);
    }

    #[test]
    fn policy_checks_tiers_and_models() {
        let p = directory().tenants["acme"].clone();
        let tier = |t: &str| Route {
            tier: Some(t.into()),
            chain: vec![],
        };
        assert!(p.allows(&tier("fast")));
        assert!(!p.allows(&tier("smart")));
        let model = |id: &str, base: &str| Route {
            tier: None,
            chain: vec![ModelTarget::new(id, base, Default::default())],
        };
        assert!(p.allows(&model("us.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0")));
        assert!(!p.allows(&model("amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0")));
    }
}
