//! The parameter-store port on SSM Parameter Store, and the writes the CLI and local stack
//! make (putting configuration and prompts, moving labels).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use quarry_core::params::{ParamError, Parameter};
use quarry_core::ports::ParameterStore;

use crate::sdk::describe;

/// Standard parameters hold 4 KB; larger values (long prompts) need the Advanced tier.
const STANDARD_LIMIT: usize = 4096;

#[derive(Clone, Debug)]
pub struct SsmParams {
    client: Client,
    /// The KMS key for SecureString writes; SSM's default `aws/ssm` key when unset.
    kms_key_id: Option<String>,
}

impl SsmParams {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: Client::new(sdk),
            kms_key_id: None,
        }
    }

    /// Encrypts SecureString writes with this key (the stack's customer-managed key, output
    /// `KmsKeyAlias` of template.yaml), so only the roles its key policy and IAM allow can
    /// read them.
    pub fn with_kms_key(mut self, key_id: Option<String>) -> Self {
        self.kms_key_id = key_id.filter(|k| !k.is_empty());
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes a value; returns the new version. `secure` stores a SecureString.
    pub async fn put(&self, name: &str, value: &str, secure: bool) -> Result<u64, ParamError> {
        let tier = if value.len() > STANDARD_LIMIT {
            ParameterTier::Advanced
        } else {
            ParameterTier::Standard
        };
        let kind = if secure {
            ParameterType::SecureString
        } else {
            ParameterType::String
        };
        let out = self
            .client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .set_key_id(if secure {
                self.kms_key_id.clone()
            } else {
                None
            })
            .tier(tier)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| ParamError::Unavailable(describe(&e)))?;
        Ok(u64::try_from(out.version()).unwrap_or(0))
    }

    /// Points `label` at `version` (SSM moves a label off any other version of the name).
    pub async fn label(&self, name: &str, version: u64, label: &str) -> Result<(), ParamError> {
        let out = self
            .client
            .label_parameter_version()
            .name(name)
            .parameter_version(i64::try_from(version).unwrap_or(i64::MAX))
            .labels(label)
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(s)
                    if s.err().is_parameter_not_found()
                        || s.err().is_parameter_version_not_found() =>
                {
                    ParamError::NotFound(format!("{name}:{version}"))
                }
                _ => ParamError::Unavailable(describe(&e)),
            })?;
        if !out.invalid_labels().is_empty() {
            return Err(ParamError::Invalid {
                name: name.to_owned(),
                message: format!(
                    "invalid label '{label}': labels are letters, digits, '.', '-' and '_', and may not start with a digit or 'aws'/'ssm'"
                ),
            });
        }
        Ok(())
    }

    /// Every version of a parameter, oldest first: (version, value, labels).
    pub async fn history(&self, name: &str) -> Result<Vec<(u64, String, Vec<String>)>, ParamError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .get_parameter_history()
            .name(name)
            .with_decryption(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| match &e {
                SdkError::ServiceError(s) if s.err().is_parameter_not_found() => {
                    ParamError::NotFound(name.to_owned())
                }
                _ => ParamError::Unavailable(describe(&e)),
            })?;
            for p in page.parameters() {
                out.push((
                    u64::try_from(p.version()).unwrap_or(0),
                    p.value().unwrap_or_default().to_owned(),
                    p.labels().to_vec(),
                ));
            }
        }
        out.sort_by_key(|(v, _, _)| *v);
        Ok(out)
    }

    /// Names of the parameters under a path.
    pub async fn list(&self, path: &str) -> Result<Vec<String>, ParamError> {
        let mut names = Vec::new();
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ParamError::Unavailable(describe(&e)))?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_owned)),
            );
        }
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl ParameterStore for SsmParams {
    async fn get(&self, name: &str, decrypt: bool) -> Result<Parameter, ParamError> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(decrypt)
            .send()
            .await
        {
            Ok(out) => {
                let p = out
                    .parameter()
                    .ok_or_else(|| ParamError::NotFound(name.to_owned()))?;
                Ok(Parameter {
                    name: name.to_owned(),
                    value: p.value().unwrap_or_default().to_owned(),
                    version: u64::try_from(p.version()).unwrap_or(0),
                })
            }
            Err(SdkError::ServiceError(s))
                if s.err().is_parameter_not_found() || s.err().is_parameter_version_not_found() =>
            {
                Err(ParamError::NotFound(name.to_owned()))
            }
            Err(e) => {
                // moto and SSM answer an unknown label with a ParameterNotFound-like message in
                // some versions and a validation error in others: both mean "no such value".
                let text = describe(&e);
                if text.contains("ParameterNotFound") || text.contains("ParameterVersionNotFound") {
                    Err(ParamError::NotFound(name.to_owned()))
                } else {
                    Err(ParamError::Unavailable(text))
                }
            }
        }
    }
}
