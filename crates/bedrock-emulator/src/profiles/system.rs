//! System-defined (cross-region) inference profiles: `us.`, `eu.`, `global.`, ... before a
//! model ID of the catalog. Bedrock defines them; the emulator answers Get and List for
//! every such ID the catalog and the configured prefixes allow.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::store::timestamp;
use crate::config::EmulatorConfig;

/// The regions a geography's profiles route between (at most five, as the API model's
/// `models` list allows); the caller's region for a geography not listed (`global`).
fn regions_of(geo: &str, caller_region: &str) -> Vec<String> {
    let regions: &[&str] = match geo {
        "us" => &["us-east-1", "us-east-2", "us-west-2"],
        "eu" => &["eu-central-1", "eu-west-1", "eu-west-3"],
        "apac" => &["ap-northeast-1", "ap-southeast-1", "ap-southeast-2"],
        "jp" => &["ap-northeast-1", "ap-northeast-3"],
        "au" => &["ap-southeast-2", "ap-southeast-4"],
        "ca" => &["ca-central-1", "ca-west-1"],
        "us-gov" => &["us-gov-west-1", "us-gov-east-1"],
        _ => &[],
    };
    if regions.is_empty() {
        vec![caller_region.to_owned()]
    } else {
        regions.iter().map(|r| (*r).to_owned()).collect()
    }
}

/// The geography whose profiles a region's callers see listed.
fn geography_of(region: &str) -> &'static str {
    match region.split('-').next() {
        Some("eu") => "eu",
        Some("ap") => "apac",
        Some("ca") => "ca",
        _ if region.starts_with("us-gov") => "us-gov",
        _ => "us",
    }
}

/// A system-defined profile ID split into its geography and base model, when both exist.
pub fn split<'a>(config: &EmulatorConfig, id: &'a str) -> Option<(&'a str, &'a str)> {
    // `us-gov.` holds no dot of its own, so the first dot ends the prefix.
    let (geo, base) = id.split_once('.')?;
    let known = config.inference_profile_prefixes.iter().any(|p| p == geo)
        && config.models.contains_key(base);
    known.then_some((geo, base))
}

/// GetInferenceProfile's answer for a system-defined profile.
pub fn to_json(geo: &str, base: &str, caller_region: &str, account: &str) -> Value {
    let regions = regions_of(geo, caller_region);
    let models: Vec<Value> = model_arns(geo, base, caller_region)
        .into_iter()
        .map(|arn| json!({ "modelArn": arn }))
        .collect();
    let readable: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // A fixed date: the profiles exist before any emulator run.
    let created = timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_716_800));
    json!({
        "inferenceProfileName": format!("{} {readable}", geo.to_uppercase()),
        "description": format!("Routes requests to {base} in {}.", regions.join(", ")),
        "inferenceProfileArn": format!("arn:aws:bedrock:{caller_region}:{account}:inference-profile/{geo}.{base}"),
        "inferenceProfileId": format!("{geo}.{base}"),
        "models": models,
        "createdAt": created,
        "updatedAt": created,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    })
}

/// The foundation-model ARNs a system-defined profile routes between.
pub fn model_arns(geo: &str, base: &str, caller_region: &str) -> Vec<String> {
    regions_of(geo, caller_region)
        .iter()
        .map(|r| format!("arn:aws:bedrock:{r}::foundation-model/{base}"))
        .collect()
}

/// The system-defined profiles a caller in `region` sees listed: its geography's and the
/// global ones, for every model of the catalog, by ID.
pub fn listed(config: &EmulatorConfig, region: &str, account: &str) -> Vec<Value> {
    let geos: Vec<&str> = [geography_of(region), "global"]
        .into_iter()
        .filter(|g| config.inference_profile_prefixes.iter().any(|p| p == g))
        .collect();
    let mut ids: Vec<(&str, &str)> = geos
        .iter()
        .flat_map(|geo| config.models.keys().map(move |m| (*geo, m.as_str())))
        .collect();
    ids.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    ids.into_iter()
        .map(|(geo, base)| to_json(geo, base, region, account))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_of_known_models_exist() {
        let c = EmulatorConfig::builtin();
        assert_eq!(
            split(&c, "us.amazon.nova-lite-v1:0"),
            Some(("us", "amazon.nova-lite-v1:0"))
        );
        assert!(split(&c, "xx.amazon.nova-lite-v1:0").is_none());
        assert!(split(&c, "us.acme.nothing").is_none());
        let v = to_json("eu", "amazon.nova-lite-v1:0", "eu-west-1", "123456789012");
        assert_eq!(v["type"], "SYSTEM_DEFINED");
        assert_eq!(v["models"].as_array().unwrap().len(), 3);
        let listed = listed(&c, "eu-west-1", "123456789012");
        assert!(listed.iter().all(|p| {
            let id = p["inferenceProfileId"].as_str().unwrap();
            id.starts_with("eu.") || id.starts_with("global.")
        }));
    }
}
