//! Metrics through the `metrics` facade (the Lambdas install a CloudWatch EMF recorder;
//! without one, these are no-ops). Every metric is emitted twice: once with the stage
//! dimension only, for alarms, and once by tenant, model and feature, for the dashboard.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The dimensions of a request's metrics.
#[derive(Debug, Clone, Copy)]
pub struct Dims<'a> {
    pub tenant: &'a str,
    pub model: &'a str,
    pub feature: &'a str,
}

/// Distinct features named per tenant in one process; later ones are reported as `other`.
/// Tenants and models are configured values, but a feature is the caller's tag: without a
/// bound, a caller could grow the recorder's memory and the account's custom metrics at will.
pub const MAX_FEATURES_PER_TENANT: usize = 32;
/// Tenants whose features are tracked; past it the tracking starts again.
const MAX_TENANTS_TRACKED: usize = 4096;

/// The `Feature` dimension for a tenant's feature: itself while the tenant has named fewer
/// than [`MAX_FEATURES_PER_TENANT`] distinct ones in this process, else `other`.
pub fn feature_label(tenant: &str, feature: &str) -> String {
    static SEEN: OnceLock<Mutex<HashMap<String, HashSet<String>>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if seen.len() >= MAX_TENANTS_TRACKED && !seen.contains_key(tenant) {
        seen.clear();
    }
    let features = seen.entry(tenant.to_owned()).or_default();
    if features.contains(feature) {
        return feature.to_owned();
    }
    if features.len() < MAX_FEATURES_PER_TENANT {
        features.insert(feature.to_owned());
        return feature.to_owned();
    }
    "other".to_owned()
}

pub fn count(name: &'static str, value: u64, d: Dims<'_>) {
    if value == 0 {
        return;
    }
    metrics::counter!(name).increment(value);
    metrics::counter!(name, "Tenant" => d.tenant.to_owned(), "Model" => d.model.to_owned(), "Feature" => feature_label(d.tenant, d.feature))
        .increment(value);
}

/// A duration in milliseconds.
pub fn millis(name: &'static str, ms: u64, d: Dims<'_>) {
    metrics::histogram!(name).record(ms as f64);
    metrics::histogram!(name, "Tenant" => d.tenant.to_owned(), "Model" => d.model.to_owned(), "Feature" => feature_label(d.tenant, d.feature))
        .record(ms as f64);
}

/// A score between 0 and 1 (grounding, relevance).
pub fn score(name: &'static str, value: f64, d: Dims<'_>) {
    metrics::histogram!(name).record(value);
    metrics::histogram!(name, "Tenant" => d.tenant.to_owned(), "Model" => d.model.to_owned(), "Feature" => feature_label(d.tenant, d.feature))
        .record(value);
}

/// A level, by stage only (how many records wait in a spill queue).
pub fn gauge(name: &'static str, value: f64) {
    metrics::gauge!(name).set(value);
}

/// A feedback score (normalised to -1..1), by prompt, prompt version and model: what the
/// dashboard compares versions by. Prompts, versions and models are configured values, so
/// the dimensions are bounded.
pub fn feedback(score: f64, prompt: &str, version: &str, model: &str) {
    let dims = [
        ("Prompt", prompt.to_owned()),
        ("PromptVersion", version.to_owned()),
        ("Model", model.to_owned()),
    ];
    metrics::histogram!("FeedbackScore").record(score);
    metrics::histogram!("FeedbackScore", &dims).record(score);
    metrics::counter!("FeedbackCount", &dims).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_cannot_name_unbounded_feature_labels() {
        let labels: HashSet<String> = (0..1000)
            .map(|i| feature_label("telemetry-test-tenant", &format!("f{i}")))
            .collect();
        assert_eq!(labels.len(), MAX_FEATURES_PER_TENANT + 1);
        assert!(labels.contains("other"));
        // Features seen first keep their name.
        assert_eq!(feature_label("telemetry-test-tenant", "f0"), "f0");
    }
}
