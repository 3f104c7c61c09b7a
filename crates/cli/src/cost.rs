//! `quarry cost report`: month-to-date usage and cost from the ledger, per tenant and
//! broken down by model, feature or day; a table with a bar chart, or JSON / CSV.

use clap::{Subcommand, ValueEnum};
use quarry_aws::budgets::DynamoBudgets;
use quarry_aws::ledger::{Buckets, LedgerReader, Totals, month_pk};
use quarry_aws::ssm::SsmParams;
use quarry_core::Error;
use quarry_core::budget::{BudgetLevel, percent};
use quarry_core::config::Configs;
use quarry_core::params::ParamError;
use quarry_core::ports::BudgetStore;
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
    /// The API key (developer) that made the calls.
    Key,
}

impl By {
    fn prefix(self) -> &'static str {
        match self {
            Self::Model => "MODEL#",
            Self::Feature => "FEATURE#",
            Self::Day => "DAY#",
            Self::Key => "KEY#",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// Usage and cost of a month (default: this one), per tenant.
    Report {
        /// One tenant (default: every tenant of the ledger, the directory and the budgets).
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
        /// Provisioned Throughput instead: each provisioned model's hourly commitment, the
        /// tokens it served and its utilisation of its capacity.
        #[arg(long, conflicts_with_all = ["by", "csv"])]
        provisioned: bool,
    },
    /// Counts the ledger markers the usage stream never counted (its aggregation failed
    /// past the stream's 24 hours): each at most once, whatever the stream does later.
    Recount {
        /// Only markers of requests answered at least this many minutes ago (younger ones
        /// are still on their way through the stream).
        #[arg(long, default_value_t = 10)]
        older_than_minutes: i64,
    },
    /// The ledger's spend per tenant against the AWS bill per tenant (Cost Explorer, by the
    /// `tenant` tag of the tenants' inference profiles).
    Reconcile {
        /// YYYY-MM (UTC).
        #[arg(long)]
        month: Option<String>,
        #[arg(long)]
        json: bool,
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
    /// The tenant's monthly budget, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_usd: Option<String>,
    /// Month-to-date spend in percent of the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    percent_used: Option<u64>,
    /// The budget state enforcement acts on: `ok`, `warning`, `degraded` or `blocked`.
    state: BudgetLevel,
    #[serde(skip)]
    cost_micro: u64,
}

fn row(tenant: &str, key: String, t: Totals, budget: &Standing) -> Row {
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
        budget_usd: budget.limit.map(MicroUsd::to_usd_string),
        percent_used: budget.percent,
        state: budget.state,
        cost_micro: t.cost_micro,
    }
}

/// A tenant against its budget.
struct Standing {
    limit: Option<MicroUsd>,
    percent: Option<u64>,
    state: BudgetLevel,
}

fn valid_month(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && m[..4].parse::<u32>().is_ok()
        && m[5..].parse::<u32>().is_ok_and(|x| (1..=12).contains(&x))
}

pub async fn run(args: CostArgs) -> Result<(), String> {
    let (tenant, month, by, json, csv, provisioned, reconcile) = match args.command {
        CostCommand::Report {
            tenant,
            month,
            by,
            json,
            csv,
            provisioned,
        } => (tenant, month, by, json, csv, provisioned, false),
        CostCommand::Reconcile { month, json } => (None, month, None, json, false, false, true),
        CostCommand::Recount { older_than_minutes } => {
            return recount(&args.aws, older_than_minutes).await;
        }
    };
    let month = month.unwrap_or_else(|| Buckets::of(chrono::Utc::now().timestamp_millis()).month);
    if !valid_month(&month) {
        return Err(format!("--month must be YYYY-MM, not '{month}'"));
    }
    let aws = &args.aws;
    let sdk = aws.sdk().await;
    let settings = aws.settings();
    let reader = LedgerReader::new(&sdk, &settings.usage_table);
    let configs = Configs::new(
        std::sync::Arc::new(SsmParams::new(&sdk)),
        &settings.param_prefix,
        std::time::Duration::ZERO,
    );
    // Every read must succeed: a report that cannot read is an error, never a $0 report.
    let directory = match configs.tenants().await {
        Ok(d) => d,
        Err(Error::Config(ParamError::NotFound(name))) => {
            return Err(format!(
                "stage '{}' has no tenant directory ({name}) at {}: is the stage deployed and its configuration pushed?",
                aws.stage,
                aws.target()
            ));
        }
        Err(e) => return Err(aws.failure("the tenant directory", &e)),
    };
    let budgets = configs
        .budgets()
        .await
        .map_err(|e| aws.failure("the budgets", &e))?;
    let in_ledger = reader
        .tenants_in(&month)
        .await
        .map_err(|e| aws.failure(&format!("the ledger ({})", settings.usage_table), &e))?;
    // The bill: every tenant of the ledger (also those the directory no longer lists), of
    // the directory and of the budgets.
    let mut known: std::collections::BTreeSet<String> = in_ledger.into_iter().collect();
    known.extend(directory.tenants.keys().cloned());
    if let Some(b) = &budgets {
        known.extend(b.tenants.keys().cloned());
    }
    let tenants: Vec<String> = match tenant {
        Some(t) if known.contains(&t) => vec![t],
        Some(t) => {
            return Err(format!(
                "unknown tenant '{t}': not in the directory, the budgets or the ledger of {month} (stage {})",
                aws.stage
            ));
        }
        None => known.into_iter().collect(),
    };
    if reconcile {
        let billed = crate::cost_reconcile::billed(&sdk, &month)
            .await
            .map_err(|e| aws.failure("Cost Explorer", &e))?;
        let rows = crate::cost_reconcile::rows(&reader, &billed, &tenants, &month)
            .await
            .map_err(|e| aws.failure("the ledger", &e))?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
            );
        } else {
            crate::cost_reconcile::print(&month, &rows);
        }
        return Ok(());
    }
    if provisioned {
        let routing = configs
            .routing()
            .await
            .map_err(|e| aws.failure("the routing", &e))?;
        let rows = crate::cost_provisioned::rows(&reader, &routing, &tenants, &month)
            .await
            .map_err(|e| aws.failure("the ledger", &e))?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
            );
        } else {
            crate::cost_provisioned::print(&month, &rows);
        }
        return Ok(());
    }
    let states = DynamoBudgets::new(&sdk, &settings.usage_table);
    let mut rows = Vec::new();
    for t in &tenants {
        let pk = month_pk(t, &month);
        let total = reader
            .get(&pk, "TOTAL")
            .await
            .map_err(|e| aws.failure("the ledger", &e))?;
        let state = BudgetStore::state(&states, t)
            .await
            .map_err(|e| aws.failure("the budget states", &e))?
            .filter(|s| s.month == month)
            .map_or(BudgetLevel::Ok, |s| s.level);
        let limit = budgets
            .as_ref()
            .and_then(|b| b.tenants.get(t))
            .map(|b| b.monthly_usd.0);
        let standing = Standing {
            limit,
            percent: limit.map(|l| percent(MicroUsd(total.cost_micro), l)),
            state,
        };
        match by {
            None => rows.push(row(t, "total".into(), total, &standing)),
            Some(b) => {
                let parts = reader
                    .list(&pk, b.prefix())
                    .await
                    .map_err(|e| aws.failure("the ledger", &e))?;
                let mut rest = total;
                for (key, totals) in parts {
                    rest = rest.minus(&totals);
                    rows.push(row(t, key, totals, &standing));
                }
                // Spend without a feature tag is spend too: its own row, so the rows add up
                // to the ledger's total.
                if matches!(b, By::Feature | By::Key) && (rest.requests > 0 || rest.cost_micro > 0)
                {
                    let label = if matches!(b, By::Key) {
                        "(no key)"
                    } else {
                        "(untagged)"
                    };
                    rows.push(row(t, label.into(), rest, &standing));
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
        Some(By::Key) => "key",
    };
    println!("Quarry cost report, {month} (month to date, UTC)");
    let width = rows
        .iter()
        .map(|r| r.key.len())
        .max()
        .unwrap_or(5)
        .max(what.len());
    println!(
        "{:<12} {:<width$} {:>9} {:>12} {:>12} {:>12} {:>10} {:>5} {:<9} cost",
        "tenant",
        what,
        "requests",
        "input tok",
        "output tok",
        "cost USD",
        "budget",
        "used",
        "state"
    );
    let max = rows.iter().map(|r| r.cost_micro).max().unwrap_or(0);
    for r in rows {
        let bar = if max == 0 {
            0
        } else {
            (r.cost_micro * 30).div_ceil(max) as usize
        };
        println!(
            "{:<12} {:<width$} {:>9} {:>12} {:>12} {:>12} {:>10} {:>5} {:<9} {}",
            r.tenant,
            r.key,
            r.requests,
            r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
            r.output_tokens,
            r.cost_usd,
            r.budget_usd.as_deref().unwrap_or("-"),
            r.percent_used.map_or("-".to_owned(), |p| format!("{p}%")),
            format!("{:?}", r.state).to_lowercase(),
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

/// `quarry cost recount`: markers the stream left uncounted, counted now.
async fn recount(aws: &crate::aws::AwsArgs, older_than_minutes: i64) -> Result<(), String> {
    let sdk = aws.sdk().await;
    let settings = aws.settings();
    let aggregator =
        quarry_aws::ledger::DynamoLedger::new(&sdk, &settings.usage_table, &settings.spill_queue)
            .aggregator();
    let before = chrono::Utc::now().timestamp_millis() - older_than_minutes.max(0) * 60_000;
    let done = aggregator
        .recount(before)
        .await
        .map_err(|e| aws.failure("the usage ledger", &e))?;
    println!(
        "{} marker(s) counted now, {} already counted",
        done.counted, done.already
    );
    if done.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} marker(s) could not be counted yet (DynamoDB failing); run it again",
            done.failed.len()
        ))
    }
}
