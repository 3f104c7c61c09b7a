//! Resource names. In AWS the template passes them as environment variables; locally they
//! derive from the stage, so `quarry dev`, the tests and the Lambdas agree.

/// A non-negative integer setting from the environment (`get`), or its default.
pub fn env_u64(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<u64, String> {
    match get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{key} must be a non-negative integer, not '{v}'")),
    }
}

/// The cache table's index of entries by tenant and prompt (purge and stats): read by the
/// cache adapter, created by provisioning.
pub const CACHE_TENANT_INDEX: &str = "by_tenant";

/// Names of every resource a stage has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub stage: String,
    /// `/quarry/{stage}`: routing, pricing, budgets, tenants and prompts live below.
    pub param_prefix: String,
    pub cache_table: String,
    pub usage_table: String,
    pub jobs_table: String,
    /// Queue names or URLs (a URL is used as is).
    pub batch_queue: String,
    pub batch_dlq: String,
    pub results_queue: String,
    pub spill_queue: String,
    /// Topic for people (budget and runaway notifications, alarm e-mails): name or ARN.
    pub alerts_topic: String,
    /// Topic CloudWatch alarms publish to, which triggers cost-alarm: name or ARN.
    pub alarms_topic: String,
    /// The bucket of bulk jobs' input and output (Bedrock batch inference).
    pub batch_bucket: String,
    /// The service role Bedrock assumes for batch inference jobs.
    pub batch_role_arn: Option<String>,
    /// The Bedrock guardrail that scores grounding (`ID:VERSION`), for prompts with a
    /// grounding check that name none: `QUARRY_GROUNDING_GUARDRAIL`.
    pub grounding_guardrail: Option<String>,
    /// The audit trail's Firehose delivery stream (name), and its spill queue.
    pub audit_stream: String,
    pub audit_spill_queue: String,
    /// The bucket Firehose delivers audit records to (read by `quarry audit`).
    pub audit_bucket: String,
}

impl Settings {
    pub fn for_stage(stage: &str) -> Self {
        Self {
            stage: stage.to_owned(),
            param_prefix: format!("/quarry/{stage}"),
            cache_table: format!("quarry-{stage}-cache"),
            usage_table: format!("quarry-{stage}-usage"),
            jobs_table: format!("quarry-{stage}-jobs"),
            batch_queue: format!("quarry-{stage}-batch"),
            batch_dlq: format!("quarry-{stage}-batch-dlq"),
            results_queue: format!("quarry-{stage}-results"),
            spill_queue: format!("quarry-{stage}-ledger-spill"),
            alerts_topic: format!("quarry-{stage}-alerts"),
            alarms_topic: format!("quarry-{stage}-alarms"),
            grounding_guardrail: None,
            batch_bucket: format!("quarry-{stage}-batch-files"),
            batch_role_arn: None,
            audit_stream: format!("quarry-{stage}-audit"),
            audit_spill_queue: format!("quarry-{stage}-audit-spill"),
            audit_bucket: format!("quarry-{stage}-audit"),
        }
    }

    /// `QUARRY_STAGE` (default `dev`), each name overridable by its own variable.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let stage = get("QUARRY_STAGE")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "dev".to_owned());
        let d = Self::for_stage(&stage);
        let or = |key: &str, default: String| get(key).filter(|v| !v.is_empty()).unwrap_or(default);
        Self {
            param_prefix: or("QUARRY_PARAM_PREFIX", d.param_prefix),
            cache_table: or("QUARRY_CACHE_TABLE", d.cache_table),
            usage_table: or("QUARRY_USAGE_TABLE", d.usage_table),
            jobs_table: or("QUARRY_JOBS_TABLE", d.jobs_table),
            batch_queue: or("QUARRY_BATCH_QUEUE", d.batch_queue),
            batch_dlq: or("QUARRY_BATCH_DLQ", d.batch_dlq),
            results_queue: or("QUARRY_RESULTS_QUEUE", d.results_queue),
            spill_queue: or("QUARRY_SPILL_QUEUE", d.spill_queue),
            alerts_topic: or("QUARRY_ALERTS_TOPIC", d.alerts_topic),
            alarms_topic: or("QUARRY_ALARMS_TOPIC", d.alarms_topic),
            grounding_guardrail: get("QUARRY_GROUNDING_GUARDRAIL").filter(|v| !v.is_empty()),
            batch_bucket: or("QUARRY_BATCH_BUCKET", d.batch_bucket),
            batch_role_arn: get("QUARRY_BATCH_ROLE_ARN").filter(|v| !v.is_empty()),
            audit_stream: or("QUARRY_AUDIT_STREAM", d.audit_stream),
            audit_spill_queue: or("QUARRY_AUDIT_SPILL_QUEUE", d.audit_spill_queue),
            audit_bucket: or("QUARRY_AUDIT_BUCKET", d.audit_bucket),
            stage,
        }
    }

    /// The full name of a parameter below the prefix: `param("routing")`.
    pub fn param(&self, name: &str) -> String {
        format!("{}/{}", self.param_prefix.trim_end_matches('/'), name)
    }

    pub fn prompt_param(&self, prompt: &str) -> String {
        self.param(&format!("prompts/{prompt}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_stage_and_env_overrides_win() {
        let s = Settings::from_lookup(|k| match k {
            "QUARRY_STAGE" => Some("prod".into()),
            "QUARRY_CACHE_TABLE" => Some("custom".into()),
            _ => None,
        });
        assert_eq!(s.cache_table, "custom");
        assert_eq!(s.usage_table, "quarry-prod-usage");
        assert_eq!(s.param("routing"), "/quarry/prod/routing");
        assert_eq!(
            s.prompt_param("summarize"),
            "/quarry/prod/prompts/summarize"
        );
        assert_eq!(Settings::from_lookup(|_| None).stage, "dev");
    }
}
