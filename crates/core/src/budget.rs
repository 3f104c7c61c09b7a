//! Budgets: what each tenant may spend in a month, what happens at the limit, and the
//! state a tenant is in. Stored in SSM at `/quarry/{stage}/budgets` (source:
//! `infra/budgets.yaml`); evaluated by cost-alarm, enforced by chat and batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pricing::MicroUsd;

/// USD written as a decimal string in budget files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(pub MicroUsd);

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_usd_string())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MicroUsd::parse_usd(&s)
            .map(Usd)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// Switch to a cheaper tier.
    Degrade,
    /// Refuse with 402 before any model call.
    Block,
}

fn default_thresholds() -> Vec<u32> {
    vec![50, 80, 100]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBudget {
    pub monthly_usd: Usd,
    /// Percentages of the limit that notify, once each per month.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<u32>,
    #[serde(default = "default_action")]
    pub action: LimitAction,
    /// The tier a degraded tenant uses.
    #[serde(default)]
    pub degrade_to: Option<String>,
    /// Per-feature monthly limits (the `feature` tag); reaching one blocks that feature.
    #[serde(default)]
    pub features: BTreeMap<String, Usd>,
    /// A monthly limit for each API key of the tenant (a developer's): reaching it blocks
    /// that key alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<Usd>,
}

fn default_action() -> LimitAction {
    LimitAction::Block
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalBudget {
    pub monthly_usd: Usd,
    #[serde(default = "default_action")]
    pub action: LimitAction,
    #[serde(default)]
    pub degrade_to: Option<String>,
}

fn default_runaway_factor() -> u32 {
    5
}

fn default_runaway_min() -> Usd {
    Usd(MicroUsd(1_000_000))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default)]
    pub global: Option<GlobalBudget>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantBudget>,
    /// A tenant's last hour above this many times its trailing hourly average is runaway
    /// spend...
    #[serde(default = "default_runaway_factor")]
    pub runaway_factor: u32,
    /// ...when the last hour also cost at least this much.
    #[serde(default = "default_runaway_min")]
    pub runaway_min_usd: Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLevel {
    Ok,
    Warning,
    Degraded,
    Blocked,
}

/// A tenant's budget state, as cost-alarm writes it and chat and batch read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    pub level: BudgetLevel,
    pub reason: String,
    /// The tier to use when degraded.
    #[serde(default)]
    pub degrade_to: Option<String>,
    /// Features blocked by their own limit.
    #[serde(default)]
    pub blocked_features: Vec<String>,
    /// Keys (labels) blocked by the per-key limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_keys: Vec<String>,
    /// The tenant's configured features: spend under any other name (or none) counts
    /// against what the monthly limit leaves after them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configured_features: Vec<String>,
    /// That remainder is spent: requests without a configured feature are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other_features_blocked: bool,
    /// The month this state is about (`2026-11`): a state of another month is stale.
    pub month: String,
}

impl BudgetState {
    pub fn ok(month: &str) -> Self {
        Self {
            level: BudgetLevel::Ok,
            reason: String::new(),
            degrade_to: None,
            blocked_features: Vec::new(),
            blocked_keys: Vec::new(),
            configured_features: Vec::new(),
            other_features_blocked: false,
            month: month.to_owned(),
        }
    }
}

/// Spend in percent of a limit (0 when there is no limit).
pub fn percent(spend: MicroUsd, limit: MicroUsd) -> u64 {
    if limit.0 == 0 {
        0
    } else {
        u64::try_from(u128::from(spend.0) * 100 / u128::from(limit.0)).unwrap_or(u64::MAX)
    }
}

/// The state of a tenant given its month-to-date spend (total and per feature) and the
/// global spend.
pub fn evaluate(
    budgets: &Budgets,
    tenant: &str,
    month: &str,
    spend: MicroUsd,
    feature_spend: &BTreeMap<String, MicroUsd>,
    key_spend: &BTreeMap<String, MicroUsd>,
    global_spend: MicroUsd,
) -> BudgetState {
    let mut state = BudgetState::ok(month);
    if let Some(g) = &budgets.global
        && global_spend >= g.monthly_usd.0
    {
        state.reason = format!(
            "global budget of ${} reached (${} spent)",
            g.monthly_usd.0.to_usd_string(),
            global_spend.to_usd_string()
        );
        match (g.action, &g.degrade_to) {
            (LimitAction::Degrade, Some(tier)) => {
                state.level = BudgetLevel::Degraded;
                state.degrade_to = Some(tier.clone());
            }
            _ => {
                state.level = BudgetLevel::Blocked;
                return state;
            }
        }
    }
    let Some(b) = budgets.tenants.get(tenant) else {
        return state;
    };
    for (feature, limit) in &b.features {
        if feature_spend.get(feature).copied().unwrap_or_default() >= limit.0 {
            state.blocked_features.push(feature.clone());
        }
    }
    if let Some(limit) = b.per_key {
        state.blocked_keys = key_spend
            .iter()
            .filter(|(_, spent)| **spent >= limit.0)
            .map(|(k, _)| k.clone())
            .collect();
    }
    // A per-feature limit cannot be dodged by leaving the tag out or renaming it: spend
    // under no configured feature has what the monthly limit leaves after the features'.
    if !b.features.is_empty() {
        state.configured_features = b.features.keys().cloned().collect();
        let allotted: MicroUsd = b.features.values().map(|l| l.0).sum();
        let remainder = MicroUsd(b.monthly_usd.0.0.saturating_sub(allotted.0));
        let configured: MicroUsd = b
            .features
            .keys()
            .map(|f| feature_spend.get(f).copied().unwrap_or_default())
            .sum();
        let other = MicroUsd(spend.0.saturating_sub(configured.0));
        state.other_features_blocked = other >= remainder;
    }
    let pct = percent(spend, b.monthly_usd.0);
    let spent = format!(
        "${} of ${} ({pct}%)",
        spend.to_usd_string(),
        b.monthly_usd.0.to_usd_string()
    );
    if pct >= 100 {
        match (b.action, &b.degrade_to) {
            (LimitAction::Degrade, Some(tier)) => {
                if state.level < BudgetLevel::Degraded {
                    state.level = BudgetLevel::Degraded;
                    state.degrade_to = Some(tier.clone());
                    state.reason =
                        format!("monthly budget reached: {spent}; degraded to tier '{tier}'");
                }
            }
            // `degrade` without a tier to degrade to can only block.
            _ => {
                state.level = BudgetLevel::Blocked;
                state.reason = format!("monthly budget reached: {spent}");
            }
        }
    } else if b.thresholds.iter().any(|t| pct >= u64::from(*t)) && state.level == BudgetLevel::Ok {
        state.level = BudgetLevel::Warning;
        state.reason = format!("budget threshold passed: {spent}");
    }
    state
}

/// The thresholds (percent) a spend has reached.
pub fn reached(budget: &TenantBudget, spend: MicroUsd) -> Vec<u32> {
    let pct = percent(spend, budget.monthly_usd.0);
    budget
        .thresholds
        .iter()
        .copied()
        .filter(|t| pct >= u64::from(*t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Budgets {
        serde_json::from_value(serde_json::json!({
            "global": {"monthly_usd": "1000"},
            "tenants": {
                "acme": {"monthly_usd": "100", "thresholds": [50, 80, 100], "action": "degrade", "degrade_to": "batch",
                          "features": {"summarize": "10"}},
                "globex": {"monthly_usd": "50", "action": "block"}
            }
        }))
        .unwrap()
    }

    fn usd(s: &str) -> MicroUsd {
        MicroUsd::parse_usd(s).unwrap()
    }

    #[test]
    fn levels_follow_the_spend() {
        let b = budgets();
        let none = BTreeMap::new();
        assert_eq!(
            evaluate(&b, "acme", "2026-11", usd("10"), &none, &none, usd("10")).level,
            BudgetLevel::Ok
        );
        assert_eq!(
            evaluate(&b, "acme", "2026-11", usd("50"), &none, &none, usd("50")).level,
            BudgetLevel::Warning
        );
        let s = evaluate(&b, "acme", "2026-11", usd("100"), &none, &none, usd("100"));
        assert_eq!(
            (s.level, s.degrade_to.as_deref()),
            (BudgetLevel::Degraded, Some("batch"))
        );
        assert_eq!(
            evaluate(
                &b,
                "globex",
                "2026-11",
                usd("50.000001"),
                &none,
                &none,
                usd("60")
            )
            .level,
            BudgetLevel::Blocked
        );
        // The global budget blocks everyone.
        assert_eq!(
            evaluate(&b, "acme", "2026-11", usd("1"), &none, &none, usd("1000")).level,
            BudgetLevel::Blocked
        );
        // Unknown tenants have no budget of their own.
        assert_eq!(
            evaluate(
                &b,
                "initech",
                "2026-11",
                usd("1000000"),
                &none,
                &none,
                usd("1")
            )
            .level,
            BudgetLevel::Ok
        );
    }

    #[test]
    fn features_block_alone() {
        let b = budgets();
        let f: BTreeMap<String, MicroUsd> = [("summarize".to_owned(), usd("10"))].into();
        let s = evaluate(
            &b,
            "acme",
            "2026-11",
            usd("20"),
            &f,
            &BTreeMap::new(),
            usd("20"),
        );
        assert_eq!(s.level, BudgetLevel::Ok);
        assert_eq!(s.blocked_features, ["summarize"]);
    }

    #[test]
    fn spend_outside_the_configured_features_has_the_remainder() {
        // acme: $100 a month, `summarize` $10: $90 for everything else.
        let b = budgets();
        let f: BTreeMap<String, MicroUsd> = [("summarize".to_owned(), usd("5"))].into();
        let s = evaluate(
            &b,
            "acme",
            "2026-11",
            usd("50"),
            &f,
            &BTreeMap::new(),
            usd("50"),
        );
        assert_eq!(s.configured_features, ["summarize"]);
        assert!(!s.other_features_blocked, "$45 of $90");
        let s = evaluate(
            &b,
            "acme",
            "2026-11",
            usd("95"),
            &f,
            &BTreeMap::new(),
            usd("95"),
        );
        assert!(s.other_features_blocked, "$90 of $90 outside `summarize`");
        assert!(
            s.blocked_features.is_empty(),
            "summarize itself has $5 left"
        );
        // A tenant without feature limits has no remainder to watch.
        let s = evaluate(
            &b,
            "globex",
            "2026-11",
            usd("10"),
            &BTreeMap::new(),
            &BTreeMap::new(),
            usd("10"),
        );
        assert!(!s.other_features_blocked && s.configured_features.is_empty());
    }

    #[test]
    fn thresholds_reached() {
        let b = budgets();
        assert_eq!(reached(&b.tenants["acme"], usd("85")), [50, 80]);
        assert!(reached(&b.tenants["acme"], usd("1")).is_empty());
    }

    #[test]
    fn amounts_are_decimal_strings() {
        assert!(
            serde_json::from_str::<Budgets>(r#"{"tenants": {"a": {"monthly_usd": 10}}}"#).is_err()
        );
    }

    #[test]
    fn a_key_over_its_own_limit_is_blocked_alone() {
        let b: Budgets = serde_json::from_value(serde_json::json!({
            "tenants": {"acme": {"monthly_usd": "100", "per_key": "5"}}
        }))
        .unwrap();
        let keys = BTreeMap::from([
            ("alice".to_owned(), usd("5")),
            ("bob".to_owned(), usd("4.999999")),
        ]);
        let s = evaluate(
            &b,
            "acme",
            "2026-11",
            usd("10"),
            &BTreeMap::new(),
            &keys,
            usd("10"),
        );
        assert_eq!(s.blocked_keys, ["alice"]);
        assert_eq!(s.level, BudgetLevel::Ok, "the tenant is fine");
    }
}
