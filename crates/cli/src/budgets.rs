//! `quarry budgets`: each tenant's standing against its budget (what enforcement acts on),
//! and an evaluation run now instead of at cost-alarm's next schedule.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Subcommand;
use quarry_aws::budgets::DynamoBudgets;
use quarry_aws::ledger::{Buckets, LedgerReader, month_pk};
use quarry_aws::ssm::SsmParams;
use quarry_core::budget::{BudgetLevel, percent};
use quarry_core::config::Configs;
use quarry_core::ports::BudgetStore;
use quarry_core::pricing::MicroUsd;
use serde::Serialize;

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct BudgetsArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: BudgetsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Each tenant's month-to-date spend against its budget, and the state chat and batch
    /// enforce (as cost-alarm last wrote it).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Evaluate every tenant now (what cost-alarm does every 5 minutes): states, notices,
    /// the spill replay. Prints what changed.
    Evaluate,
}

#[derive(Debug, Serialize)]
struct Standing {
    tenant: String,
    spend_usd: String,
    budget_usd: Option<String>,
    percent_used: Option<u64>,
    state: BudgetLevel,
    reason: String,
    blocked_features: Vec<String>,
}

pub async fn run(args: BudgetsArgs) -> Result<(), String> {
    let aws = &args.aws;
    let sdk = aws.sdk().await;
    let settings = aws.settings();
    match args.command {
        BudgetsCommand::Evaluate => {
            let summary = cost_alarm::CostAlarm::from_sdk(&sdk, &settings)
                .handle(
                    &serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
                    chrono::Utc::now(),
                )
                .await;
            for t in &summary.transitions {
                println!("changed  {t}");
            }
            for n in &summary.notifications {
                println!("notified {n}");
            }
            println!(
                "{} tenant(s) evaluated, {} change(s), {} usage record(s) replayed from the spill",
                summary.tenants.len(),
                summary.transitions.len(),
                summary.replayed
            );
            if summary.errors.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "evaluation incomplete: {}",
                    summary.errors.join("; ")
                ))
            }
        }
        BudgetsCommand::Status { json } => {
            let configs = Configs::new(
                Arc::new(SsmParams::new(&sdk)),
                &settings.param_prefix,
                std::time::Duration::ZERO,
            );
            let budgets = configs
                .budgets()
                .await
                .map_err(|e| aws.failure("the budgets", &e))?;
            let directory = configs
                .tenants()
                .await
                .map_err(|e| aws.failure("the tenant directory", &e))?;
            let mut tenants: BTreeSet<String> = directory.tenants.keys().cloned().collect();
            if let Some(b) = &budgets {
                tenants.extend(b.tenants.keys().cloned());
            }
            let month = Buckets::of(chrono::Utc::now().timestamp_millis()).month;
            let reader = LedgerReader::new(&sdk, &settings.usage_table);
            let states = DynamoBudgets::new(&sdk, &settings.usage_table);
            let mut rows = Vec::new();
            for tenant in tenants {
                let spend = MicroUsd(
                    reader
                        .get(&month_pk(&tenant, &month), "TOTAL")
                        .await
                        .map_err(|e| aws.failure("the ledger", &e))?
                        .cost_micro,
                );
                let state = BudgetStore::state(&states, &tenant)
                    .await
                    .map_err(|e| aws.failure("the budget states", &e))?
                    .filter(|s| s.month == month);
                let limit = budgets
                    .as_ref()
                    .and_then(|b| b.tenants.get(&tenant))
                    .map(|b| b.monthly_usd.0);
                rows.push(Standing {
                    spend_usd: spend.to_usd_string(),
                    budget_usd: limit.map(MicroUsd::to_usd_string),
                    percent_used: limit.map(|l| percent(spend, l)),
                    state: state.as_ref().map_or(BudgetLevel::Ok, |s| s.level),
                    reason: state.as_ref().map(|s| s.reason.clone()).unwrap_or_default(),
                    blocked_features: state.map(|s| s.blocked_features).unwrap_or_default(),
                    tenant,
                });
            }
            if json {
                let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
                println!("{text}");
                return Ok(());
            }
            println!("Budgets, {month} (month to date, UTC; states as cost-alarm last wrote them)");
            println!(
                "{:<16} {:>12} {:>12} {:>6} {:<9} reason",
                "tenant", "spend USD", "budget USD", "used", "state"
            );
            for r in &rows {
                println!(
                    "{:<16} {:>12} {:>12} {:>6} {:<9} {}",
                    r.tenant,
                    r.spend_usd,
                    r.budget_usd.as_deref().unwrap_or("-"),
                    r.percent_used.map_or("-".to_owned(), |p| format!("{p}%")),
                    format!("{:?}", r.state).to_lowercase(),
                    r.reason
                );
            }
            Ok(())
        }
    }
}
