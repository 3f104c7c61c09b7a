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
    /// Audit records for this tenant's answers (`metadata` or `full`; a prompt may ask for
    /// more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::audit::AuditLevel>,
    /// Batch producers allowed to submit for this tenant: the SQS `SenderId` of each
    /// (an IAM user or role ID, with or without `:session`), or `*` for any. A batch message
    /// naming this tenant from another sender is refused: the tenant of a message is only
    /// trusted when its producer may speak for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch_senders: Vec<String>,
    /// Prompts this tenant may use, by name; all when absent (`*` also means all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_prompts: Option<Vec<String>>,
    /// Refuse (503) rather than admit when the tenant's budget state cannot be read and none
    /// was read before: for tenants whose budget must hold even through an outage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_budget: bool,
    /// Most output tokens a request may ask for (a larger `max_tokens` is lowered to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Requests and tokens per minute (DynamoDB counters); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Knowledge Bases this tenant's prompts may retrieve from, by ID; none when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knowledge_bases: Vec<String>,
    /// Where this tenant's requests may be served (data residency): regions and
    /// geographies; anywhere when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<crate::routing::Residency>,
    /// The tenant's own application inference profiles, by the model or system profile ID
    /// they copy: its requests are sent through them, so Bedrock's bill (the Cost and Usage
    /// Report, by the profiles' `tenant` tag) splits by tenant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inference_profiles: BTreeMap<String, String>,
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

    pub fn allows_prompt(&self, name: &str) -> bool {
        self.allowed_prompts
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|p| p == "*" || p == name))
    }

    /// Only the IDs listed: there is no wildcard, a Knowledge Base is granted by name.
    pub fn allows_knowledge_base(&self, id: &str) -> bool {
        self.knowledge_bases.iter().any(|k| k == id)
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
    /// Fits a route to this tenant: its residency rule first (on the models as routed:
    /// what they may serve from), then its own inference profiles in place of the models
    /// they copy, called in the profile's region.
    pub fn apply(
        &self,
        route: &mut Route,
        home: Option<&str>,
        tenant: &str,
    ) -> Result<(), crate::routing::RoutingError> {
        if let Some(residency) = &self.residency {
            route.restrict(residency, home, tenant)?;
        }
        for target in &mut route.chain {
            let Some(arn) = self.inference_profiles.get(&target.invoke_id) else {
                continue;
            };
            let region = arn.split(':').nth(3).filter(|r| !r.is_empty());
            // A profile lives in one region: a model placed elsewhere is called as placed.
            if target.region.is_none() || target.region.as_deref() == region {
                target.invoke_id.clone_from(arn);
                target.region = region.map(str::to_owned);
            }
        }
        Ok(())
    }

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
    /// May administer its own tenant (purge its cache, ...), and only its own.
    #[serde(default)]
    pub admin: bool,
    /// An operator key: may administer any tenant. For the operations team, not tenants.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
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
    /// IAM principals (role or user names, as the IAM auth mode names callers) that are
    /// operators: they may administer any tenant. Each is also a tenant (its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
}

/// Longest tenant name.
pub const MAX_TENANT_NAME: usize = 64;

/// A tenant name is 1 to 64 of `A-Z a-z 0-9 _ -`, starting with a letter or digit: it is
/// part of storage keys (`T#{tenant}#...`, `JOB#{tenant}#...`), so no name may hold their
/// separators, and names starting with `_` are Quarry's own.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_TENANT_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name '{}' is not valid: 1 to {MAX_TENANT_NAME} characters of A-Z a-z 0-9 _ -, starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// Who is calling: established by authentication, carried through the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub tenant: String,
    /// Administers its own tenant.
    pub admin: bool,
    /// Administers any tenant (an operator key or IAM principal).
    pub operator: bool,
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

impl Caller {
    /// Whether this caller may administer `tenant`: a tenant's admin its own, an operator
    /// any.
    pub fn may_administer(&self, tenant: &str) -> bool {
        self.operator || (self.admin && self.tenant == tenant)
    }
}

impl TenantDirectory {
    /// Every tenant name valid (a key or operator naming an unknown tenant is refused when
    /// used, not here: one stale key must not take every tenant down).
    pub fn validate(&self) -> Result<(), String> {
        self.tenants
            .keys()
            .try_for_each(|name| check_tenant_name(name))
    }

    /// Whether an IAM principal is an operator.
    pub fn is_operator(&self, principal: &str) -> bool {
        self.operators.iter().any(|o| o == principal)
    }

    pub fn authenticate(&self, key: Option<&str>) -> Result<Caller, AuthError> {
        let key = key
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        // Keys are high-entropy secrets, so looking up their hash leaks nothing useful through
        // timing; the key itself is never compared.
        let entry = self.keys.get(&hash_key(key)).ok_or(AuthError::Invalid)?;
        let mut caller = self.caller(&entry.tenant, entry.admin, entry.label.clone())?;
        caller.operator = entry.operator;
        caller.admin |= entry.operator;
        Ok(caller)
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
            operator: false,
            key_label: label,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ModelTarget;

    #[test]
    fn tenant_names_cannot_forge_key_separators() {
        for ok in ["acme", "a", "Acme-2_x", &"a".repeat(64)] {
            assert!(check_tenant_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_unknown",
            "-x",
            "a#b",
            "a:b",
            "a/b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
        let mut d = TenantDirectory::default();
        d.tenants
            .insert("a#M#2026-01".into(), TenantPolicy::default());
        assert!(d.validate().is_err());
    }

    #[test]
    fn admins_administer_their_own_tenant_operators_any() {
        let caller = |admin, operator| Caller {
            tenant: "acme".into(),
            admin,
            operator,
            key_label: None,
            policy: TenantPolicy::default(),
        };
        assert!(caller(true, false).may_administer("acme"));
        assert!(!caller(true, false).may_administer("globex"));
        assert!(!caller(false, false).may_administer("acme"));
        assert!(caller(true, true).may_administer("globex"));
    }

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
                operator: false,
                label: Some("dev".into()),
            },
        );
        d.keys.insert(
            hash_key("k-ghost"),
            KeyEntry {
                tenant: "ghost".into(),
                admin: false,
                operator: false,
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
