//! Prices and cost, in integer micro-USD: money is never a float.
//!
//! Prices are USD per million tokens, written as decimal strings (`"0.80"`) so no binary
//! rounding creeps in; they are held as micro-USD per million tokens. A response's cost is
//! the exact sum of tokens x price over its four token kinds (in 1e-12 USD), rounded once,
//! up, to the micro-dollar. The ledger adds these per-response figures, so its totals
//! equal the sum of what responses reported.
//!
//! Stored in SSM at `/quarry/{stage}/pricing` (source: `infra/pricing.yaml`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{ServiceTier, TokenUsage};

/// An amount of money in micro-USD (1e-6 USD).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(pub u64);

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    /// `"0.001234"`: the decimal USD string used in API responses.
    pub fn to_usd_string(self) -> String {
        format!("{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }

    /// Parses a non-negative decimal USD amount with at most six decimals.
    pub fn parse_usd(s: &str) -> Result<Self, String> {
        parse_decimal_micros(s).map(MicroUsd)
    }
}

impl fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.to_usd_string())
    }
}

impl std::ops::Add for MicroUsd {
    type Output = MicroUsd;
    fn add(self, o: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(o.0))
    }
}

impl std::iter::Sum for MicroUsd {
    fn sum<I: Iterator<Item = MicroUsd>>(iter: I) -> MicroUsd {
        iter.fold(MicroUsd::ZERO, |a, b| a + b)
    }
}

/// A decimal string (`"0.80"`, up to six decimals, no sign or exponent) in millionths.
pub fn parse_decimal_micros(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(format!("'{s}' is not a decimal amount"));
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("'{s}' is not a non-negative decimal amount"));
    }
    if frac.len() > 6 {
        return Err(format!("'{s}' has more than six decimals"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| format!("'{s}' is too large"))?
    };
    let frac_micros: u64 = format!("{frac:0<6}")
        .parse()
        .map_err(|_| format!("'{s}' is not a decimal amount"))?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// A price in micro-USD per million tokens, written in files as a USD decimal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerMillion(pub u64);

impl Serialize for PerMillion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&MicroUsd(self.0).to_usd_string())
    }
}

impl<'de> Deserialize<'de> for PerMillion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Strings only: a YAML/JSON float such as 0.1 is exactly the rounding we refuse.
        let s = String::deserialize(d)?;
        parse_decimal_micros(&s)
            .map(PerMillion)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: PerMillion,
    pub output: PerMillion,
    #[serde(default)]
    pub cache_read: PerMillion,
    #[serde(default)]
    pub cache_write: PerMillion,
    /// Prompt-cache writes kept an hour (Bedrock's `cacheDetails` says which); the
    /// five-minute `cache_write` price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<PerMillion>,
    /// This model's own service-tier multipliers, over the table's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tiers: BTreeMap<ServiceTier, PerMillion>,
    /// This model's batch-inference multiplier, over the table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<PerMillion>,
    /// This model's region multipliers, over the table's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, PerMillion>,
    /// This model's inference-profile scope multipliers (`global`), over the table's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, PerMillion>,
}

/// Where a call was served, for prices that differ by region and by profile scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The region called (`None`: the deployment's, priced as listed).
    pub region: Option<&'a str>,
    /// `global` for a `global.` inference profile; `None` in-region or a geography's.
    pub scope: Option<&'a str>,
}

impl<'a> Placement<'a> {
    /// The placement of a call to `invoke_id` in `region`.
    pub fn of(invoke_id: &str, region: Option<&'a str>) -> Self {
        let id = invoke_id.rsplit_once('/').map_or(invoke_id, |(_, id)| id);
        Self {
            region,
            scope: id.starts_with("global.").then_some("global"),
        }
    }
}

impl ModelPrice {
    /// The exact cost in pico-USD (1e-12), before rounding. Reasoning tokens are output
    /// tokens (Bedrock counts them there).
    pub fn pico_usd(&self, usage: &TokenUsage) -> u128 {
        let one_hour = usage.cache_write_1h.min(usage.cache_write);
        u128::from(usage.input) * u128::from(self.input.0)
            + u128::from(usage.output) * u128::from(self.output.0)
            + u128::from(usage.cache_read) * u128::from(self.cache_read.0)
            + u128::from(usage.cache_write - one_hour) * u128::from(self.cache_write.0)
            + u128::from(one_hour) * u128::from(self.cache_write_1h.unwrap_or(self.cache_write).0)
    }

    /// The cost rounded up to the micro-dollar: a call with usage never costs $0, and
    /// many small calls never add up to less than they cost.
    pub fn cost(&self, usage: &TokenUsage) -> MicroUsd {
        let micros = self.pico_usd(usage).div_ceil(1_000_000);
        MicroUsd(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingTable {
    /// Base model ID -> price.
    pub models: BTreeMap<String, ModelPrice>,
    /// Service tier -> multiplier of the on-demand price (decimal strings: `flex: "0.5"`).
    /// A tier missing here and on the model is priced as `default`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tiers: BTreeMap<ServiceTier, PerMillion>,
    /// Bedrock batch inference (bulk jobs): a multiplier of the on-demand price (`"0.5"`).
    /// Without one (here or on the model), a model's bulk work is unpriced, never free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<PerMillion>,
    /// Region -> multiplier of the listed price (`eu-central-2: "1.1"`); a region missing
    /// here and on the model is priced as listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, PerMillion>,
    /// Inference-profile scope -> multiplier (`global: "0.9"`): in-region and geography
    /// profiles are priced as listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, PerMillion>,
}

/// A cost in pico-USD times a multiplier (in millionths), rounded up to the micro-dollar:
/// pico-USD x micro -> divide by 1e6 twice.
fn scaled(pico: u128, multiplier: PerMillion) -> MicroUsd {
    let micros = (pico * u128::from(multiplier.0)).div_ceil(1_000_000_000_000);
    MicroUsd(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// A cost, or the fact that the model has no price (which must be loud, never a silent zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priced {
    Cost(MicroUsd),
    Unpriced,
}

impl PricingTable {
    pub fn price(&self, base_model: &str) -> Option<&ModelPrice> {
        self.models.get(base_model)
    }

    pub fn cost(&self, base_model: &str, usage: &TokenUsage) -> Priced {
        self.cost_in_tier(base_model, usage, None)
    }

    /// The cost of tokens processed by Bedrock batch inference.
    pub fn cost_in_batch(&self, base_model: &str, usage: &TokenUsage) -> Priced {
        let Some(p) = self.price(base_model) else {
            return Priced::Unpriced;
        };
        match p.batch.or(self.batch) {
            Some(m) => Priced::Cost(scaled(p.pico_usd(usage), m)),
            None => Priced::Unpriced,
        }
    }

    /// The cost of a call served in `tier` (the tier Bedrock reported).
    pub fn cost_in_tier(
        &self,
        base_model: &str,
        usage: &TokenUsage,
        tier: Option<ServiceTier>,
    ) -> Priced {
        self.cost_at(base_model, usage, tier, Placement::default())
    }

    /// The cost of a call served in `tier`, where `placement` says: the tier's, the
    /// region's and the scope's multipliers together, rounded up once.
    pub fn cost_at(
        &self,
        base_model: &str,
        usage: &TokenUsage,
        tier: Option<ServiceTier>,
        placement: Placement<'_>,
    ) -> Priced {
        let Some(p) = self.price(base_model) else {
            return Priced::Unpriced;
        };
        let tier = tier
            .filter(|t| *t != ServiceTier::Default)
            .and_then(|t| p.service_tiers.get(&t).or(self.service_tiers.get(&t)));
        let region = placement
            .region
            .and_then(|r| p.regions.get(r).or(self.regions.get(r)));
        let scope = placement
            .scope
            .and_then(|s| p.scopes.get(s).or(self.scopes.get(s)));
        let multipliers: Vec<PerMillion> = [tier, region, scope]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if multipliers.is_empty() {
            return Priced::Cost(p.cost(usage));
        }
        // Exact: pico-USD times every multiplier (millionths), rounded up once.
        let num = multipliers
            .iter()
            .fold(p.pico_usd(usage), |a, m| a.saturating_mul(u128::from(m.0)));
        let den = 10u128.pow(6 + 6 * multipliers.len() as u32);
        Priced::Cost(MicroUsd(
            u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_parse_exactly() {
        assert_eq!(parse_decimal_micros("0.80").unwrap(), 800_000);
        assert_eq!(parse_decimal_micros("3").unwrap(), 3_000_000);
        assert_eq!(parse_decimal_micros("15.000001").unwrap(), 15_000_001);
        assert_eq!(parse_decimal_micros(".5").unwrap(), 500_000);
        assert!(parse_decimal_micros("0.0000001").is_err());
        assert!(parse_decimal_micros("-1").is_err());
        assert!(parse_decimal_micros("1e3").is_err());
        assert!(parse_decimal_micros("").is_err());
    }

    #[test]
    fn regions_and_global_profiles_are_priced_by_their_multipliers_together() {
        let table: PricingTable = serde_json::from_str(
            r#"{"service_tiers": {"flex": "0.5"},
                "regions": {"eu-central-2": "1.1"},
                "scopes": {"global": "0.9"},
                "models": {"m": {"input": "1", "output": "4", "regions": {"ap-south-1": "1.2"}}}}"#,
        )
        .unwrap();
        let usage = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            ..TokenUsage::default()
        };
        let at = |tier, region, id: &str| match table.cost_at(
            "m",
            &usage,
            tier,
            Placement::of(id, region),
        ) {
            Priced::Cost(c) => c.0,
            Priced::Unpriced => panic!("unpriced"),
        };
        assert_eq!(at(None, None, "m"), 5_000_000);
        assert_eq!(at(None, Some("eu-central-2"), "m"), 5_500_000);
        assert_eq!(at(None, Some("ap-south-1"), "m"), 6_000_000);
        assert_eq!(at(None, Some("us-east-1"), "m"), 5_000_000);
        assert_eq!(at(None, None, "global.m"), 4_500_000);
        assert_eq!(at(None, None, "eu.m"), 5_000_000);
        // Together, exactly: 5 x 0.5 x 1.1 x 0.9 = 2.475.
        assert_eq!(
            at(Some(ServiceTier::Flex), Some("eu-central-2"), "global.m"),
            2_475_000
        );
        // Rounded up once, never down.
        let one = TokenUsage {
            input: 1,
            ..TokenUsage::default()
        };
        let Priced::Cost(c) = table.cost_at(
            "m",
            &one,
            None,
            Placement::of("global.m", Some("eu-central-2")),
        ) else {
            panic!("unpriced");
        };
        assert_eq!(c.0, 1);
    }

    #[test]
    fn tiers_and_one_hour_cache_writes_follow_the_table() {
        let table: PricingTable = serde_json::from_str(
            r#"{"service_tiers": {"flex": "0.5", "priority": "1.75"},
                "models": {"m": {"input": "1", "output": "4", "cache_write": "1.25",
                                 "cache_write_1h": "2", "service_tiers": {"priority": "2"}}}}"#,
        )
        .unwrap();
        let usage = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            ..TokenUsage::default()
        };
        let cost = |tier| match table.cost_in_tier("m", &usage, tier) {
            Priced::Cost(c) => c.0,
            Priced::Unpriced => panic!("priced"),
        };
        assert_eq!(cost(None), 5_000_000);
        assert_eq!(cost(Some(ServiceTier::Default)), 5_000_000);
        assert_eq!(cost(Some(ServiceTier::Flex)), 2_500_000);
        assert_eq!(
            cost(Some(ServiceTier::Priority)),
            10_000_000,
            "the model's own"
        );
        assert_eq!(cost(Some(ServiceTier::Reserved)), 5_000_000);
        let writes = TokenUsage {
            cache_write: 3_000_000,
            cache_write_1h: 1_000_000,
            ..TokenUsage::default()
        };
        assert_eq!(
            table.cost("m", &writes),
            Priced::Cost(MicroUsd(2_500_000 + 2_000_000))
        );
    }

    #[test]
    fn floats_are_refused_in_price_files() {
        let r: Result<ModelPrice, _> = serde_json::from_str(r#"{"input": 0.8, "output": "4"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn cost_is_tokens_times_prices_rounded_up_once() {
        let price: ModelPrice = serde_json::from_str(
            r#"{"input": "0.80", "output": "4.00", "cache_read": "0.08", "cache_write": "1.00"}"#,
        )
        .unwrap();
        let usage = TokenUsage {
            input: 1000,
            output: 500,
            cache_read: 2000,
            cache_write: 3000,
            cache_write_1h: 0,
        };
        // 1000*0.8 + 500*4 + 2000*0.08 + 3000*1 = 800 + 2000 + 160 + 3000 = 5960 µUSD
        assert_eq!(price.cost(&usage), MicroUsd(5960));
        // 7 input tokens at $0.80/M = 5.6 µUSD -> 6
        let small = TokenUsage {
            input: 7,
            ..TokenUsage::default()
        };
        assert_eq!(price.cost(&small), MicroUsd(6));
        // 6 tokens = 4.8 -> 5; 1 token = 0.8 -> 1 (never $0 for a call with usage); 0 -> 0
        assert_eq!(
            price.cost(&TokenUsage {
                input: 6,
                ..TokenUsage::default()
            }),
            MicroUsd(5)
        );
        let cheap: ModelPrice =
            serde_json::from_str(r#"{"input": "0.035", "output": "0.14"}"#).unwrap();
        let tiny = TokenUsage {
            input: 10,
            output: 1,
            ..TokenUsage::default()
        };
        // 0.35 + 0.14 = 0.49 µUSD: rounded half up this was $0.
        assert_eq!(cheap.cost(&tiny), MicroUsd(1));
        assert_eq!(price.cost(&TokenUsage::default()), MicroUsd(0));
    }

    #[test]
    fn usd_strings() {
        assert_eq!(MicroUsd(5960).to_usd_string(), "0.005960");
        assert_eq!(MicroUsd(12_345_678).to_usd_string(), "12.345678");
        assert_eq!(MicroUsd::parse_usd("100").unwrap(), MicroUsd(100_000_000));
    }

    #[test]
    fn unpriced_is_not_zero() {
        let table = PricingTable::default();
        assert_eq!(table.cost("x", &TokenUsage::default()), Priced::Unpriced);
    }

    #[test]
    fn batch_inference_is_priced_by_its_multiplier_or_unpriced() {
        let mut table: PricingTable = serde_json::from_value(serde_json::json!({
            "models": {
                "m": {"input": "1.00", "output": "3.00"},
                "own": {"input": "1.00", "output": "3.00", "batch": "0.25"}
            }
        }))
        .unwrap();
        let usage = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            ..TokenUsage::default()
        };
        // No batch price anywhere: loud, never zero.
        assert_eq!(table.cost_in_batch("m", &usage), Priced::Unpriced);
        table.batch = Some(PerMillion(500_000));
        assert_eq!(
            table.cost_in_batch("m", &usage),
            Priced::Cost(MicroUsd(2_000_000))
        );
        assert_eq!(
            table.cost_in_batch("own", &usage),
            Priced::Cost(MicroUsd(1_000_000))
        );
        assert_eq!(table.cost_in_batch("none", &usage), Priced::Unpriced);
        // Rounded up: one token is never free.
        let one = TokenUsage {
            input: 1,
            ..TokenUsage::default()
        };
        assert_eq!(table.cost_in_batch("m", &one), Priced::Cost(MicroUsd(1)));
    }
}
