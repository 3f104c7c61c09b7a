//! `quarry audit get REQUEST_ID` and `quarry audit export --tenant T --from D --to D`: the
//! audit trail read back from the audit bucket (see `quarry_admin::audit` for how).

use chrono::{Days, NaiveDate, Utc};
use clap::Subcommand;
use quarry_admin::audit::{AuditQuery, AuditReader};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// The audit bucket (the stack's output `AuditBucketName`); `quarry-{stage}-audit` when
    /// unset, as `quarry dev` names it.
    #[arg(long, env = "QUARRY_AUDIT_BUCKET", global = true)]
    pub bucket: Option<String>,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// One request's record, as JSON.
    Get {
        request_id: String,
        /// The tenant the request belongs to (narrows the search to its partitions).
        #[arg(long)]
        tenant: Option<String>,
        /// The day of the request (YYYY-MM-DD); else the last `--days` days.
        #[arg(long)]
        date: Option<NaiveDate>,
        #[arg(long, default_value_t = 7)]
        days: u64,
    },
    /// A tenant's records between two days (inclusive), as JSON lines on stdout.
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
    },
}

pub async fn run(args: AuditArgs) -> Result<(), String> {
    let sdk = args.aws.sdk().await;
    let bucket = args
        .bucket
        .clone()
        .unwrap_or_else(|| args.aws.settings().audit_bucket);
    let reader = AuditReader::new(&sdk, &bucket);
    match args.command {
        AuditCommand::Get {
            request_id,
            tenant,
            date,
            days,
        } => {
            let today = Utc::now().date_naive();
            let (from, to) = match date {
                Some(d) => (d, d),
                None => (
                    today
                        .checked_sub_days(Days::new(days.saturating_sub(1)))
                        .unwrap_or(today),
                    today,
                ),
            };
            let query = AuditQuery {
                tenant: tenant.clone(),
                from,
                to,
                request_id: Some(request_id.clone()),
            };
            let records = reader
                .read(&query)
                .await
                .map_err(|e| args.aws.failure("the audit trail", &e))?;
            let Some(record) = records.last() else {
                return Err(format!(
                    "no audit record of request {request_id}{} from {from} to {to} in {bucket}: records arrive after Firehose's buffering (up to a minute or so); only tenants and prompts with `audit: metadata` or `full` are recorded",
                    tenant.map(|t| format!(" (tenant {t})")).unwrap_or_default()
                ));
            };
            println!(
                "{}",
                serde_json::to_string_pretty(record).map_err(|e| e.to_string())?
            );
        }
        AuditCommand::Export { tenant, from, to } => {
            let query = AuditQuery {
                tenant: Some(tenant),
                from,
                to,
                request_id: None,
            };
            let records = reader
                .read(&query)
                .await
                .map_err(|e| args.aws.failure("the audit trail", &e))?;
            for r in &records {
                println!("{r}");
            }
            eprintln!("{} records", records.len());
        }
    }
    Ok(())
}
