//! `quarry cost report`: month-to-date usage and cost from the ledger, per tenant and
//! broken down by model, feature or day; a table with a bar chart, or JSON / CSV.

use clap::{Subcommand, ValueEnum};
use quarry_aws::ledger::{Buckets, LedgerReader, Totals, month_pk};
use quarry_aws::ssm::SsmParams;
use quarry_core::config::Configs;
use quarry_core::pricing::MicroUsd;
use serde::Serialize;

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct CostArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: CostCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    Model,
    Feature,
    Day,
}

impl By {
    fn prefix(self) -> &'static str {
        match self {
            Self::Model => "MODEL#",
            Self::Feature => "FEATURE#",
            Self::Day => "DAY#",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// Usage and cost of a month (default: this one), per tenant.
    Report {
        /// One tenant (default: every tenant of the directory and the budgets).
        #[arg(long)]
        tenant: Option<String>,
        /// YYYY-MM (UTC).
        #[arg(long)]
        month: Option<String>,
        /// Break each tenant's total down.
        #[arg(long, value_enum)]
        by: Option<By>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, Serialize)]
struct Row {
    tenant: String,
    /// The model, feature or day (`total` without --by).
    key: String,
    requests: u64,
    cached_requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    cost_usd: String,
    #[serde(skip)]
    cost_micro: u64,
}

fn row(tenant: &str, key: String, t: Totals) -> Row {
    Row {
        tenant: tenant.to_owned(),
        key,
        requests: t.requests,
        cached_requests: t.cached_requests,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cache_read_tokens: t.cache_read_tokens,
        cache_write_tokens: t.cache_write_tokens,
        cost_usd: MicroUsd(t.cost_micro).to_usd_string(),
        cost_micro: t.cost_micro,
    }
}

fn valid_month(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && m[..4].parse::<u32>().is_ok()
        && m[5..].parse::<u32>().is_ok_and(|x| (1..=12).contains(&x))
}

pub async fn run(args: CostArgs) -> Result<(), String> {
    let CostCommand::Report {
        tenant,
        month,
        by,
        json,
        csv,
    } = args.command;
    let month = month.unwrap_or_else(|| Buckets::of(chrono::Utc::now().timestamp_millis()).month);
    if !valid_month(&month) {
        return Err(format!("--month must be YYYY-MM, not '{month}'"));
    }
    let sdk = args.aws.sdk().await;
    let settings = args.aws.settings();
    let reader = LedgerReader::new(&sdk, &settings.usage_table);
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t],
        None => {
            let configs = Configs::new(
                std::sync::Arc::new(SsmParams::new(&sdk)),
                &settings.param_prefix,
                std::time::Duration::ZERO,
            );
            let mut all = std::collections::BTreeSet::new();
            if let Ok(d) = configs.tenants().await {
                all.extend(d.tenants.keys().cloned());
            }
            if let Ok(Some(b)) = configs.budgets().await {
                all.extend(b.tenants.keys().cloned());
            }
            all.into_iter().collect()
        }
    };
    let mut rows = Vec::new();
    for t in &tenants {
        let pk = month_pk(t, &month);
        match by {
            None => rows.push(row(
                t,
                "total".into(),
                reader.get(&pk, "TOTAL").await.map_err(|e| e.to_string())?,
            )),
            Some(b) => {
                for (key, totals) in reader
                    .list(&pk, b.prefix())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    rows.push(row(t, key, totals));
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
        );
    } else if csv {
        println!(
            "tenant,key,requests,cached_requests,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cost_usd"
        );
        for r in &rows {
            println!(
                "{},{},{},{},{},{},{},{},{}",
                r.tenant,
                r.key,
                r.requests,
                r.cached_requests,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.cost_usd
            );
        }
    } else {
        print_table(&month, by, &rows);
    }
    Ok(())
}

fn print_table(month: &str, by: Option<By>, rows: &[Row]) {
    let what = match by {
        None => "total",
        Some(By::Model) => "model",
        Some(By::Feature) => "feature",
        Some(By::Day) => "day",
    };
    println!("Quarry cost report, {month} (month to date, UTC)");
    let width = rows
        .iter()
        .map(|r| r.key.len())
        .max()
        .unwrap_or(5)
        .max(what.len());
    println!(
        "{:<12} {:<width$} {:>9} {:>12} {:>12} {:>12}  cost",
        "tenant", what, "requests", "input tok", "output tok", "cost USD"
    );
    let max = rows.iter().map(|r| r.cost_micro).max().unwrap_or(0);
    for r in rows {
        let bar = if max == 0 {
            0
        } else {
            (r.cost_micro * 30).div_ceil(max) as usize
        };
        println!(
            "{:<12} {:<width$} {:>9} {:>12} {:>12} {:>12}  {}",
            r.tenant,
            r.key,
            r.requests,
            r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
            r.output_tokens,
            r.cost_usd,
            "█".repeat(bar)
        );
    }
    let total: u64 = rows.iter().map(|r| r.cost_micro).sum();
    println!(
        "{:<12} {:<width$} {:>9} {:>12} {:>12} {:>12}",
        "all",
        "",
        rows.iter().map(|r| r.requests).sum::<u64>(),
        "",
        "",
        MicroUsd(total).to_usd_string()
    );
}
