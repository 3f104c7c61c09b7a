//! The tenant directory in SSM (`/quarry/{stage}/tenants`, a SecureString): tenants, what
//! they may use, and the SHA-256 of each API key. Keys are shown once, when created.

use quarry_aws::settings::Settings;
use quarry_aws::ssm::SsmParams;
use quarry_core::params::ParamError;
use quarry_core::tenancy::{KeyEntry, TenantDirectory, TenantPolicy, hash_key};

/// A new random API key (`qk_` and 48 hex digits: 192 bits).
pub fn new_api_key() -> String {
    format!("qk_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// A key created for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub tenant: String,
    pub key: String,
    pub admin: bool,
}

/// Writes a directory with `tenants` (each with every tier and model allowed), one key each
/// and an admin key for the first; returns the keys.
pub async fn seed(
    ssm: &SsmParams,
    settings: &Settings,
    tenants: &[&str],
    knowledge_bases: &[String],
) -> Result<Vec<IssuedKey>, ParamError> {
    let mut directory = TenantDirectory::default();
    let mut keys = Vec::new();
    for tenant in tenants {
        directory.tenants.insert(
            (*tenant).to_owned(),
            TenantPolicy {
                allowed_tiers: vec!["*".into()],
                allowed_models: vec!["*".into()],
                batch_senders: vec!["*".into()],
                knowledge_bases: knowledge_bases.to_vec(),
                ..TenantPolicy::default()
            },
        );
        let key = new_api_key();
        directory.keys.insert(
            hash_key(&key),
            KeyEntry {
                tenant: (*tenant).to_owned(),
                admin: false,
                operator: false,
                label: Some(format!("{tenant}-key")),
            },
        );
        keys.push(IssuedKey {
            tenant: (*tenant).to_owned(),
            key,
            admin: false,
        });
    }
    if let Some(first) = tenants.first() {
        let key = new_api_key();
        directory.keys.insert(
            hash_key(&key),
            KeyEntry {
                tenant: (*first).to_owned(),
                admin: true,
                operator: false,
                label: Some(format!("{first}-admin")),
            },
        );
        keys.push(IssuedKey {
            tenant: (*first).to_owned(),
            key,
            admin: true,
        });
    }
    write(ssm, settings, &directory).await?;
    Ok(keys)
}

pub async fn write(
    ssm: &SsmParams,
    settings: &Settings,
    directory: &TenantDirectory,
) -> Result<u64, ParamError> {
    // The Lambdas refuse a directory with an invalid tenant name: never push one.
    directory
        .validate()
        .map_err(|message| ParamError::Invalid {
            name: settings.param("tenants"),
            message,
        })?;
    let value = serde_json::to_string(directory).map_err(|e| ParamError::Invalid {
        name: settings.param("tenants"),
        message: e.to_string(),
    })?;
    ssm.put(&settings.param("tenants"), &value, true).await
}
