//! `GET /v1/models`: the tiers and models the caller may use, in OpenAI's list shape (the
//! official clients' `models.list()`).

use axum::Json;
use axum::extract::State;
use quarry_http::openai::{ModelEntry, ModelList};
use quarry_http::{ApiError, Caller, RequestMeta};

use crate::routes::Shared;

pub async fn handler(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
) -> Result<Json<ModelList>, ApiError> {
    let routing = state
        .service
        .configs()
        .routing()
        .await
        .map_err(|e| ApiError::new(e, &meta.request_id))?;
    let tiers = routing
        .tiers
        .iter()
        .filter(|(tier, _)| caller.policy.allows_tier(tier))
        .map(|(tier, chain)| {
            let labels: Vec<String> = chain.iter().map(|e| e.label()).collect();
            ModelEntry::tier(tier, &labels)
        });
    let models = routing
        .models
        .keys()
        .filter(|base| caller.policy.allows_model(base, base))
        .map(|base| ModelEntry::model(base));
    Ok(Json(ModelList::new(tiers.chain(models).collect())))
}
