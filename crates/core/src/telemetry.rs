//! Metrics through the `metrics` facade (the Lambdas install a CloudWatch EMF recorder;
//! without one, these are no-ops). Every metric is emitted twice: once with the stage
//! dimension only, for alarms, and once by tenant, model and feature, for the dashboard.

/// The dimensions of a request's metrics.
#[derive(Debug, Clone, Copy)]
pub struct Dims<'a> {
    pub tenant: &'a str,
    pub model: &'a str,
    pub feature: &'a str,
}

pub fn count(name: &'static str, value: u64, d: Dims<'_>) {
    if value == 0 {
        return;
    }
    metrics::counter!(name).increment(value);
    metrics::counter!(name, "Tenant" => d.tenant.to_owned(), "Model" => d.model.to_owned(), "Feature" => d.feature.to_owned())
        .increment(value);
}

/// A duration in milliseconds.
pub fn millis(name: &'static str, ms: u64, d: Dims<'_>) {
    metrics::histogram!(name).record(ms as f64);
    metrics::histogram!(name, "Tenant" => d.tenant.to_owned(), "Model" => d.model.to_owned(), "Feature" => d.feature.to_owned())
        .record(ms as f64);
}
