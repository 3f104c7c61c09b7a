//! The control plane's operations (batch inference jobs, inference profiles, tags): each
//! recorded and counted under what it is about, in the caller's region.

use std::collections::HashMap;

use axum::response::Response;
use bytes::Bytes;
use http::Uri;

use crate::batch;
use crate::error::BedrockError;
use crate::profiles;
use crate::routes::ControlRoute;
use crate::server::SharedState;
use crate::state::Caller;

fn query(uri: &Uri) -> Result<HashMap<String, String>, BedrockError> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|_| BedrockError::validation("The query string could not be read."))
}

/// The operation's name and what it is counted under: the model (CreateModelInvocationJob),
/// the job or profile ID (Get, Stop, Delete; also when named by ARN), the profile's name
/// (CreateInferenceProfile), the resource ARN (ListTagsForResource) or `*` (List).
fn counted(route: &ControlRoute, body: &Bytes) -> (&'static str, String) {
    match route {
        ControlRoute::CreateJob => ("CreateModelInvocationJob", batch::model_named(body)),
        ControlRoute::GetJob { identifier } => (
            "GetModelInvocationJob",
            batch::counted_job(identifier).to_owned(),
        ),
        ControlRoute::ListJobs => ("ListModelInvocationJobs", "*".to_owned()),
        ControlRoute::StopJob { identifier } => (
            "StopModelInvocationJob",
            batch::counted_job(identifier).to_owned(),
        ),
        ControlRoute::CreateProfile => ("CreateInferenceProfile", profiles::name_in(body)),
        ControlRoute::GetProfile { identifier } => (
            "GetInferenceProfile",
            profiles::counted_profile(identifier).to_owned(),
        ),
        ControlRoute::ListProfiles => ("ListInferenceProfiles", "*".to_owned()),
        ControlRoute::DeleteProfile { identifier } => (
            "DeleteInferenceProfile",
            profiles::counted_profile(identifier).to_owned(),
        ),
        ControlRoute::ListTags => ("ListTagsForResource", profiles::resource_in(body)),
    }
}

pub fn serve(
    state: &SharedState,
    route: ControlRoute,
    uri: &Uri,
    region: &str,
    body: &Bytes,
) -> Result<Response, BedrockError> {
    let (operation, counted_as) = counted(&route, body);
    // List operations take their input in the query string; that is what is recorded.
    let recorded = match route {
        ControlRoute::ListJobs | ControlRoute::ListProfiles => {
            Bytes::from(uri.query().unwrap_or_default().to_owned())
        }
        _ => body.clone(),
    };
    state.record(operation, &counted_as, region, &recorded);
    let result = match route {
        ControlRoute::CreateJob => batch::create(state, body),
        ControlRoute::GetJob { identifier } => batch::get(state, &identifier),
        ControlRoute::ListJobs => query(uri).and_then(|q| batch::list(state, &q)),
        ControlRoute::StopJob { identifier } => batch::stop(state, &identifier),
        ControlRoute::CreateProfile => profiles::create(state, region, body),
        ControlRoute::GetProfile { identifier } => profiles::get(state, region, &identifier),
        ControlRoute::ListProfiles => query(uri).and_then(|q| profiles::list(state, region, &q)),
        ControlRoute::DeleteProfile { identifier } => profiles::delete(state, &identifier),
        ControlRoute::ListTags => profiles::list_tags(state, body),
    };
    let caller = Caller {
        region,
        profile: None,
    };
    state.count(operation, &counted_as, caller, result.is_err());
    result
}
