//! `quarry cost reconcile`: the ledger's spend per tenant against what AWS billed per
//! tenant, from Cost Explorer (GetCostAndUsage, Amazon Bedrock, grouped by the `tenant`
//! cost-allocation tag the tenants' inference profiles carry). The gap is what Quarry did
//! not see (calls made outside it) or priced differently (a stale pricing.yaml); untagged
//! Bedrock spend is shown as its own row.

use std::collections::BTreeMap;

use aws_sdk_costexplorer::types::{
    DateInterval, Dimension, DimensionValues, Expression, Granularity, GroupDefinition,
    GroupDefinitionType,
};
use quarry_aws::ledger::{LedgerReader, month_pk};
use quarry_core::pricing::{MicroUsd, parse_decimal_micros};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Reconciled {
    pub tenant: String,
    pub ledger_usd: String,
    pub billed_usd: String,
    /// Billed minus ledger (negative: the ledger counted more).
    pub difference_usd: String,
}

/// `2026-11` -> (`2026-11-01`, `2026-12-01`): Cost Explorer's end date is exclusive.
fn period(month: &str) -> Option<(String, String)> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (u32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some((format!("{y:04}-{m:02}-01"), format!("{ny:04}-{nm:02}-01")))
}

/// An amount as Cost Explorer writes it ("0.0101516483") in micro-USD, rounded to the
/// nearest micro-dollar.
fn micros(amount: &str) -> Option<u64> {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    let frac7: String = frac.chars().chain(std::iter::repeat('0')).take(7).collect();
    let seven = format!("{whole}.{}", &frac7[..6]);
    let base = parse_decimal_micros(&seven).ok()?;
    let round_up = frac7.as_bytes().get(6).is_some_and(|d| *d >= b'5');
    Some(base + u64::from(round_up))
}

fn signed(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = u64::try_from(micros.unsigned_abs()).unwrap_or(u64::MAX);
    format!("{sign}{}", MicroUsd(abs).to_usd_string())
}

/// The billed Bedrock spend of `month` per `tenant` tag value (`""`: untagged).
pub async fn billed(
    sdk: &aws_config::SdkConfig,
    month: &str,
) -> Result<BTreeMap<String, u64>, String> {
    let (start, end) = period(month).ok_or_else(|| format!("bad month '{month}'"))?;
    let ce = aws_sdk_costexplorer::Client::new(sdk);
    let bedrock = Expression::builder()
        .dimensions(
            DimensionValues::builder()
                .key(Dimension::Service)
                .values("Amazon Bedrock")
                .build(),
        )
        .build();
    let mut by_tenant = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = ce
            .get_cost_and_usage()
            .time_period(
                DateInterval::builder()
                    .start(&start)
                    .end(&end)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .granularity(Granularity::Monthly)
            .metrics("UnblendedCost")
            .filter(bedrock.clone())
            .group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Tag)
                    .key("tenant")
                    .build(),
            )
            .set_next_page_token(token.take())
            .send()
            .await
            .map_err(|e| quarry_aws::sdk::describe(&e))?;
        for period in out.results_by_time() {
            for group in period.groups() {
                let tenant = group
                    .keys()
                    .first()
                    .map(|k| k.strip_prefix("tenant$").unwrap_or(k).to_owned())
                    .unwrap_or_default();
                let amount = group
                    .metrics()
                    .and_then(|m| m.get("UnblendedCost"))
                    .and_then(|v| v.amount())
                    .and_then(micros)
                    .unwrap_or(0);
                *by_tenant.entry(tenant).or_insert(0) += amount;
            }
        }
        match out.next_page_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(by_tenant)
}

pub async fn rows(
    reader: &LedgerReader,
    billed: &BTreeMap<String, u64>,
    tenants: &[String],
    month: &str,
) -> Result<Vec<Reconciled>, String> {
    let mut names: std::collections::BTreeSet<String> = tenants.iter().cloned().collect();
    names.extend(billed.keys().filter(|k| !k.is_empty()).cloned());
    let mut rows = Vec::new();
    for t in &names {
        let ledger = reader
            .get(&month_pk(t, month), "TOTAL")
            .await
            .map_err(|e| e.to_string())?
            .cost_micro;
        let bill = billed.get(t).copied().unwrap_or(0);
        rows.push(Reconciled {
            tenant: t.clone(),
            ledger_usd: MicroUsd(ledger).to_usd_string(),
            billed_usd: MicroUsd(bill).to_usd_string(),
            difference_usd: signed(i128::from(bill) - i128::from(ledger)),
        });
    }
    if let Some(untagged) = billed.get("").filter(|v| **v > 0) {
        rows.push(Reconciled {
            tenant: "(untagged)".into(),
            ledger_usd: MicroUsd::ZERO.to_usd_string(),
            billed_usd: MicroUsd(*untagged).to_usd_string(),
            difference_usd: signed(i128::from(*untagged)),
        });
    }
    Ok(rows)
}

pub fn print(month: &str, rows: &[Reconciled]) {
    println!(
        "Ledger against the AWS bill (Cost Explorer, Amazon Bedrock, by tag `tenant`), {month}"
    );
    println!(
        "{:<24} {:>14} {:>14} {:>14}",
        "tenant", "ledger USD", "billed USD", "difference"
    );
    for r in rows {
        println!(
            "{:<24} {:>14} {:>14} {:>14}",
            r.tenant, r.ledger_usd, r.billed_usd, r.difference_usd
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_periods() {
        assert_eq!(micros("0.0101516483"), Some(10_152));
        assert_eq!(micros("12"), Some(12_000_000));
        assert_eq!(micros("0.0000004"), Some(0));
        assert_eq!(micros("abc"), None);
        assert_eq!(
            period("2026-12"),
            Some(("2026-12-01".into(), "2027-01-01".into()))
        );
        assert_eq!(signed(-1_500_000), "-1.500000");
    }
}
