//! Application inference profiles per tenant (the Bedrock control plane): created from the
//! models a tenant's routes use and tagged `tenant` and `stage`, so that the AWS bill splits
//! Bedrock spend by tenant; deleted with the tenant.

use aws_config::SdkConfig;
use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types as bt;
use quarry_core::ports::{Dependency, StoreError, StoreErrorKind};

use crate::sdk::describe;

#[derive(Clone, Debug)]
pub struct BedrockProfiles {
    client: aws_sdk_bedrock::Client,
    region: String,
}

fn error(code: Option<&str>, detail: String) -> StoreError {
    let kind = match code.unwrap_or("") {
        "ValidationException" | "AccessDeniedException" | "ServiceQuotaExceededException" => {
            StoreErrorKind::Invalid
        }
        "ConflictException" => StoreErrorKind::Conflict,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, Dependency::Bedrock, "inference profiles", detail)
}

impl BedrockProfiles {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_bedrock::Client::new(sdk),
            region: sdk
                .region()
                .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        }
    }

    /// The ARN a profile of `id` copies: a foundation model's, or a system-defined
    /// cross-region profile's (as Bedrock names it).
    pub async fn source_arn(&self, id: &str) -> Result<String, StoreError> {
        if id.starts_with("arn:") {
            return Ok(id.to_owned());
        }
        let is_profile = id.split_once('.').is_some_and(|(p, rest)| {
            quarry_core::routing::is_region_prefix(p) && rest.contains('.')
        });
        if !is_profile {
            return Ok(format!(
                "arn:aws:bedrock:{}::foundation-model/{id}",
                self.region
            ));
        }
        let out = self
            .client
            .get_inference_profile()
            .inference_profile_identifier(id)
            .send()
            .await
            .map_err(|e| error(e.code(), describe(&e)))?;
        Ok(out.inference_profile_arn().to_owned())
    }

    /// Creates a profile (the same token returns the one it created); returns its ARN.
    pub async fn create(
        &self,
        name: &str,
        source_arn: &str,
        tags: &[(&str, &str)],
        token: &str,
    ) -> Result<String, StoreError> {
        let tags = tags
            .iter()
            .map(|(k, v)| bt::Tag::builder().key(*k).value(*v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(None, e.to_string()))?;
        let out = self
            .client
            .create_inference_profile()
            .inference_profile_name(name)
            .description("Quarry tenant profile for cost allocation")
            .client_request_token(token)
            .model_source(bt::InferenceProfileModelSource::CopyFrom(
                source_arn.to_owned(),
            ))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| error(e.code(), describe(&e)))?;
        Ok(out.inference_profile_arn().to_owned())
    }

    /// Deletes a profile; one already gone is fine.
    pub async fn delete(&self, arn: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_inference_profile()
            .inference_profile_identifier(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(error(e.code(), describe(&e))),
        }
    }
}
