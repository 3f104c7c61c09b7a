//! `quarry cost report --provisioned`: Provisioned Throughput, reported apart from per-token
//! spend. A provisioned model is paid by the hour, so what tells a team whether it pays is
//! its utilisation: the tokens it served against the tokens its capacity could serve over
//! the same time.

use chrono::{TimeZone, Utc};
use quarry_aws::ledger::{LedgerReader, month_pk};
use quarry_core::pricing::MicroUsd;
use quarry_core::routing::RoutingConfig;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ProvisionedRow {
    pub model_arn: String,
    pub base_model: String,
    pub hourly_usd: String,
    /// Hours of the month covered (to now for the current month).
    pub hours: u64,
    /// The commitment over those hours.
    pub commitment_usd: String,
    /// Calls it served and their tokens (input, output, cache), from the ledger.
    pub requests: u64,
    pub tokens_served: u64,
    /// What its capacity could have served over the same hours.
    pub token_capacity: u64,
    /// Served over capacity, in percent (two decimals).
    pub utilisation_percent: f64,
    /// The commitment per million tokens served; none when it served nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_usd_per_million_tokens: Option<String>,
}

/// Minutes of `month` (YYYY-MM) up to now, or all of it when it is over.
fn minutes_of(month: &str, now: chrono::DateTime<Utc>) -> Option<u64> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()?;
    let until = now.clamp(start, end);
    u64::try_from((until - start).num_minutes()).ok()
}

pub async fn rows(
    reader: &LedgerReader,
    routing: &RoutingConfig,
    tenants: &[String],
    month: &str,
) -> Result<Vec<ProvisionedRow>, String> {
    let now = Utc::now();
    let minutes = minutes_of(month, now).ok_or_else(|| format!("bad month '{month}'"))?;
    let mut rows = Vec::new();
    for (arn, p) in &routing.provisioned {
        let (mut requests, mut served) = (0u64, 0u64);
        for t in tenants {
            let c = reader
                .get(&month_pk(t, month), &format!("PROVISIONED#{arn}"))
                .await
                .map_err(|e| e.to_string())?;
            requests += c.requests;
            served += c.input_tokens + c.output_tokens + c.cache_read_tokens + c.cache_write_tokens;
        }
        let hours = minutes.div_ceil(60);
        let commitment = MicroUsd(p.hourly_usd.0.0.saturating_mul(hours));
        let capacity = p.tokens_per_minute.saturating_mul(minutes);
        let utilisation = if capacity == 0 {
            0.0
        } else {
            (served as f64 * 10_000.0 / capacity as f64).round() / 100.0
        };
        rows.push(ProvisionedRow {
            model_arn: arn.clone(),
            base_model: p.base_model.clone(),
            hourly_usd: p.hourly_usd.0.to_usd_string(),
            hours,
            commitment_usd: commitment.to_usd_string(),
            requests,
            tokens_served: served,
            token_capacity: capacity,
            utilisation_percent: utilisation,
            effective_usd_per_million_tokens: (served > 0).then(|| {
                let per = u128::from(commitment.0) * 1_000_000 / u128::from(served);
                MicroUsd(u64::try_from(per).unwrap_or(u64::MAX)).to_usd_string()
            }),
        });
    }
    Ok(rows)
}

pub fn print(month: &str, rows: &[ProvisionedRow]) {
    println!(
        "Provisioned Throughput, {month} (month to date, UTC; paid by the hour, not per token)"
    );
    if rows.is_empty() {
        println!("(none in routing.yaml's `provisioned`)");
        return;
    }
    println!(
        "{:<64} {:>8} {:>12} {:>10} {:>14} {:>14} {:>8}",
        "model", "hours", "commit USD", "requests", "tokens", "capacity", "used"
    );
    for r in rows {
        println!(
            "{:<64} {:>8} {:>12} {:>10} {:>14} {:>14} {:>7}%",
            r.model_arn,
            r.hours,
            r.commitment_usd,
            r.requests,
            r.tokens_served,
            r.token_capacity,
            r.utilisation_percent
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_counts_to_now_or_to_its_end() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(minutes_of("2026-11", now), Some((29 * 24 + 12) * 60));
        assert_eq!(minutes_of("2026-10", now), Some(31 * 24 * 60));
        assert_eq!(minutes_of("2026-12", now), Some(0));
        assert_eq!(minutes_of("2026-13", now), None);
    }
}
