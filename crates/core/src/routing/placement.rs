//! Where a model is called: a chain entry may name a region (`{model, region}`), and a tier
//! may list regions to try the same model in, in order (`tier_regions`). Regions also decide
//! data residency: a tenant may be limited to regions or geographies (EU only), and a model
//! is allowed only where every region that could serve it is allowed.

use serde::{Deserialize, Serialize};

/// One entry of a tier's chain: a model ID (profile ID, ARN), or that and a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChainEntry {
    Id(String),
    Placed(Placed),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placed {
    pub model: String,
    pub region: String,
}

impl ChainEntry {
    pub fn model(&self) -> &str {
        match self {
            Self::Id(id) => id,
            Self::Placed(p) => &p.model,
        }
    }

    pub fn region(&self) -> Option<&str> {
        match self {
            Self::Id(_) => None,
            Self::Placed(p) => Some(&p.region),
        }
    }

    /// As shown in model lists: `model` or `model@region`.
    pub fn label(&self) -> String {
        match self {
            Self::Id(id) => id.clone(),
            Self::Placed(p) => format!("{}@{}", p.model, p.region),
        }
    }
}

impl From<&str> for ChainEntry {
    fn from(id: &str) -> Self {
        Self::Id(id.to_owned())
    }
}

/// An AWS region name: `us-east-1`, `eu-central-2`, `ap-southeast-4`, `us-gov-west-1`.
pub fn region_ok(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts
            .last()
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// The geography of a region, as cross-region profiles name them: `us-east-1` -> `us`,
/// `eu-west-3` -> `eu`, `ap-northeast-1` -> `apac`, `us-gov-west-1` -> `us-gov`.
pub fn geography_of(region: &str) -> String {
    if region.starts_with("us-gov-") {
        return "us-gov".into();
    }
    match region.split('-').next().unwrap_or("") {
        "ap" => "apac".into(),
        other => other.to_owned(),
    }
}

/// Where a call may be served: one region (a model called in a region), a geography (a
/// cross-region profile, `eu.`), or anywhere (`global.`, or a region no one named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Region(String),
    Geography(String),
    Anywhere,
}

/// Where calls to `invoke_id` in `region` (None: the deployment's own, `home`) may be
/// served. A cross-region profile reaches its whole geography whatever region calls it.
pub fn reach(invoke_id: &str, region: Option<&str>, home: Option<&str>) -> Reach {
    let id = invoke_id.rsplit_once('/').map_or(invoke_id, |(_, id)| id);
    if let Some((prefix, rest)) = id.split_once('.')
        && super::is_region_prefix(prefix)
        && rest.contains('.')
    {
        return match prefix {
            "global" => Reach::Anywhere,
            geo => Reach::Geography(geo.to_owned()),
        };
    }
    // An ARN names the region it lives in.
    if let Some(arn_region) = invoke_id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| region_ok(r))
    {
        return Reach::Region(arn_region.to_owned());
    }
    match region.or(home) {
        Some(r) => Reach::Region(r.to_owned()),
        None => Reach::Anywhere,
    }
}

/// A model ID called as it is, not an ARN or a cross-region profile (which carry their own
/// placement): the kind of target `tier_regions` places in each region.
pub fn is_plain_model(invoke_id: &str) -> bool {
    !invoke_id.starts_with("arn:")
        && !invoke_id
            .split_once('.')
            .is_some_and(|(prefix, rest)| super::is_region_prefix(prefix) && rest.contains('.'))
}

/// A tenant's residency rule: the regions and geographies its requests may be served in.
/// Empty both: anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residency {
    /// Regions allowed (`eu-central-1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Geographies allowed (`eu`, `us`, `apac`): every region of one, and its cross-region
    /// profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geographies: Vec<String>,
}

impl Residency {
    pub fn is_restricted(&self) -> bool {
        !self.regions.is_empty() || !self.geographies.is_empty()
    }

    /// Whether everything `reach` could serve from is allowed.
    pub fn allows(&self, reach: &Reach) -> bool {
        if !self.is_restricted() {
            return true;
        }
        match reach {
            Reach::Anywhere => false,
            Reach::Geography(g) => self.geographies.iter().any(|a| a == g),
            Reach::Region(r) => {
                self.regions.iter().any(|a| a == r)
                    || self.geographies.iter().any(|g| *g == geography_of(r))
            }
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.regions.clone();
        parts.extend(self.geographies.iter().map(|g| format!("{g} (geography)")));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_geographies() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "ap-southeast-4",
            "us-gov-west-1",
        ] {
            assert!(region_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "us-east-x",
            "eu--1",
            "1u-east-1",
        ] {
            assert!(!region_ok(bad), "{bad}");
        }
        assert_eq!(geography_of("eu-west-3"), "eu");
        assert_eq!(geography_of("ap-northeast-1"), "apac");
        assert_eq!(geography_of("us-gov-east-1"), "us-gov");
        assert_eq!(geography_of("us-west-2"), "us");
    }

    #[test]
    fn reach_follows_profiles_arns_then_regions() {
        let m = "anthropic.claude-sonnet-4-20250514-v1:0";
        assert_eq!(
            reach(&format!("eu.{m}"), Some("us-east-1"), None),
            Reach::Geography("eu".into())
        );
        assert_eq!(reach(&format!("global.{m}"), None, None), Reach::Anywhere);
        assert_eq!(
            reach(m, Some("eu-central-1"), Some("us-east-1")),
            Reach::Region("eu-central-1".into())
        );
        assert_eq!(
            reach(m, None, Some("us-east-1")),
            Reach::Region("us-east-1".into())
        );
        assert_eq!(reach(m, None, None), Reach::Anywhere);
        assert_eq!(
            reach(
                "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/p1",
                None,
                Some("us-east-1")
            ),
            Reach::Region("eu-west-1".into())
        );
    }

    #[test]
    fn an_eu_only_tenant_is_never_served_outside_the_eu() {
        let eu = Residency {
            regions: vec![],
            geographies: vec!["eu".into()],
        };
        assert!(eu.allows(&Reach::Region("eu-central-1".into())));
        assert!(eu.allows(&Reach::Geography("eu".into())));
        assert!(!eu.allows(&Reach::Region("us-east-1".into())));
        assert!(!eu.allows(&Reach::Geography("us".into())));
        assert!(!eu.allows(&Reach::Anywhere));
        let frankfurt = Residency {
            regions: vec!["eu-central-1".into()],
            geographies: vec![],
        };
        assert!(frankfurt.allows(&Reach::Region("eu-central-1".into())));
        assert!(!frankfurt.allows(&Reach::Region("eu-west-1".into())));
        // A profile may serve anywhere in its geography: a region list does not cover it.
        assert!(!frankfurt.allows(&Reach::Geography("eu".into())));
        assert!(Residency::default().allows(&Reach::Anywhere));
    }
}
