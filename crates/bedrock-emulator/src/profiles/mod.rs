//! Inference profiles (the Bedrock control plane): CreateInferenceProfile,
//! GetInferenceProfile, ListInferenceProfiles, DeleteInferenceProfile and
//! ListTagsForResource, served on the runtime's port like the batch jobs.
//!
//! An application inference profile copies its model from a foundation model or a
//! system-defined (cross-region) profile. Calling the runtime with the profile's ARN answers
//! as that model; the call is recorded and counted under the ARN the caller named, so usage
//! can be told apart per profile as on AWS.

pub mod store;
pub mod system;
pub mod validate;

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

pub use store::{Profile, ProfileStore};
use validate::ProfileType;

use crate::batch::validate::{Violations, required};
use crate::catalog::resolve;
use crate::error::{BedrockError, ErrorKind};
use crate::server::SharedState;
use crate::state::EmulatorState;

/// Whether a model identifier is an application inference profile ARN.
pub fn is_application_profile_arn(raw: &str) -> bool {
    raw.starts_with("arn:") && raw.contains(":application-inference-profile/")
}

/// The base model a profile created through the control plane answers as, when `raw` is
/// such a profile's ARN.
pub fn base_of(state: &EmulatorState, raw: &str) -> Option<String> {
    if !is_application_profile_arn(raw) {
        return None;
    }
    state.profiles().by_arn(raw).map(|p| p.base_id)
}

/// The name a CreateInferenceProfile body gives, to count and record the call under.
pub fn name_in(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("inferenceProfileName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The profile a Get or Delete is counted under: its ID, whether named by ID or ARN.
pub fn counted_profile(identifier: &str) -> &str {
    identifier.rsplit('/').next().unwrap_or(identifier)
}

fn not_found(identifier: &str) -> BedrockError {
    BedrockError::new(
        ErrorKind::ResourceNotFoundException,
        format!("The inference profile {identifier} was not found."),
    )
}

/// The foundation-model ARNs a new profile lists: the one it copies, or those of the
/// system-defined profile it copies.
fn source_models(
    config: &crate::config::EmulatorConfig,
    copy_from: &str,
    caller_region: &str,
) -> Result<(String, Vec<String>), BedrockError> {
    let invalid = || BedrockError::validation("The provided model identifier is invalid.");
    let model = resolve(config, copy_from)?;
    let mut parts = copy_from.splitn(6, ':');
    let region = parts
        .nth(3)
        .filter(|r| !r.is_empty())
        .unwrap_or(caller_region);
    let resource = parts.nth(1).ok_or_else(invalid)?;
    match resource.split_once('/') {
        Some(("foundation-model", _)) => Ok((model.base_id, vec![copy_from.to_owned()])),
        Some(("inference-profile", id)) => {
            // A system-defined profile always names its geography.
            let (geo, base) = system::split(config, id).ok_or_else(invalid)?;
            Ok((model.base_id, system::model_arns(geo, base, region)))
        }
        _ => Err(invalid()),
    }
}

pub fn create(state: &SharedState, region: &str, body: &[u8]) -> Result<Response, BedrockError> {
    let request = validate::create_request(body)?;
    let (base_id, model_arns, arn_prefix) = {
        let config = state.config();
        let (base_id, model_arns) = source_models(&config, &request.copy_from, region)?;
        let prefix = format!(
            "arn:aws:bedrock:{region}:{}:application-inference-profile/",
            config.account_id
        );
        (base_id, model_arns, prefix)
    };
    let store = state.profiles();
    let mut profile = store::new_profile(store, &arn_prefix, request.name, base_id, model_arns);
    profile.description = request.description;
    profile.tags = request.tags;
    profile.client_request_token = request.client_request_token;
    let stored = store.insert(profile)?;
    let body = json!({ "inferenceProfileArn": stored.arn, "status": "ACTIVE" });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// The stored profile an identifier names: its ID, or exactly its ARN.
fn find(state: &SharedState, identifier: &str, id: &str) -> Option<Profile> {
    state
        .profiles()
        .get(id)
        .filter(|p| !identifier.starts_with("arn:") || p.arn == identifier)
}

pub fn get(state: &SharedState, region: &str, identifier: &str) -> Result<Response, BedrockError> {
    let id = validate::identifier(identifier)?;
    if let Some(profile) = find(state, identifier, &id) {
        return Ok(axum::Json(profile.to_json()).into_response());
    }
    let config = state.config();
    match system::split(&config, &id) {
        Some((geo, base)) => {
            Ok(axum::Json(system::to_json(geo, base, region, &config.account_id)).into_response())
        }
        None => Err(not_found(identifier)),
    }
}

pub fn list(
    state: &SharedState,
    region: &str,
    query: &HashMap<String, String>,
) -> Result<Response, BedrockError> {
    let q = validate::list_query(query)?;
    let all: Vec<Value> = match q.kind {
        ProfileType::Application => state
            .profiles()
            .all()
            .iter()
            .map(Profile::to_json)
            .collect(),
        ProfileType::SystemDefined => {
            let config = state.config();
            system::listed(&config, region, &config.account_id)
        }
    };
    let end = q.offset.saturating_add(q.max_results).min(all.len());
    let page = all.get(q.offset.min(end)..end).unwrap_or_default().to_vec();
    let mut body = json!({ "inferenceProfileSummaries": page });
    if end < all.len() {
        body["nextToken"] = json!(end.to_string());
    }
    Ok(axum::Json(body).into_response())
}

pub fn delete(state: &SharedState, identifier: &str) -> Result<Response, BedrockError> {
    let id = validate::identifier(identifier)?;
    if find(state, identifier, &id).is_some() && state.profiles().remove(&id).is_some() {
        return Ok(axum::Json(json!({})).into_response());
    }
    if system::split(&state.config(), &id).is_some() {
        return Err(BedrockError::validation(format!(
            "The inference profile {identifier} is system-defined and can't be deleted."
        )));
    }
    Err(not_found(identifier))
}

/// ListTagsForResource: the tags of an application inference profile.
pub fn list_tags(state: &SharedState, body: &Bytes) -> Result<Response, BedrockError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| BedrockError::validation("The request body is not valid JSON."))?;
    let mut errors = Violations::default();
    let arn = required(&v, "resourceARN", "resourceARN", &mut errors);
    if let Some(arn) = &arn {
        errors.string("resourceARN", arn, 20, 1011, None);
    }
    errors.into_result()?;
    let arn = arn.unwrap_or_default();
    let profile = is_application_profile_arn(&arn)
        .then(|| state.profiles().by_arn(&arn))
        .flatten()
        .ok_or_else(|| {
            BedrockError::new(
                ErrorKind::ResourceNotFoundException,
                format!("The resource {arn} was not found."),
            )
        })?;
    Ok(axum::Json(json!({ "tags": profile.tags_json() })).into_response())
}

/// The resource a ListTagsForResource body names, to count and record the call under.
pub fn resource_in(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("resourceARN")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
