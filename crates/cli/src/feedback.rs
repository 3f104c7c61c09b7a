//! `quarry feedback report --prompt P`: a prompt's versions (and models) compared by what
//! users said of their answers; and `quarry eval import-feedback`: rated requests, with
//! their `full` audit records, turned into golden-set cases.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Days, NaiveDate};
use clap::Subcommand;
use quarry_admin::audit::{AuditQuery, AuditReader};
use quarry_aws::feedback::DynamoFeedback;
use quarry_core::feedback::Feedback;
use quarry_core::model::{Message, Role, SystemBlock};
use quarry_core::ports::FeedbackStore;
use quarry_eval::golden::{Assertion, CaseMessage, CaseRole, GoldenCase, JudgeSpec};
use serde_json::{Value, json};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct FeedbackArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: FeedbackCommand,
}

#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Ratings of a prompt's answers, by version and model: how many, the mean score
    /// (normalised to -1..1) and the shares rated up and down.
    Report {
        #[arg(long)]
        prompt: String,
        #[arg(long)]
        json: bool,
    },
}

/// `quarry eval import-feedback`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The prompt whose rated requests become cases.
    #[arg(long)]
    pub prompt: String,
    /// Where the golden set (JSONL) is written.
    #[arg(long)]
    pub out: PathBuf,
    /// Only this tenant's ratings.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The judge of the cases (a tier or model ID).
    #[arg(long, default_value = "smart")]
    pub judge: String,
    /// The audit bucket (output `AuditBucketName`); `quarry-{stage}-audit` when unset.
    #[arg(long, env = "QUARRY_AUDIT_BUCKET")]
    pub bucket: Option<String>,
}

pub async fn run(args: FeedbackArgs) -> Result<(), String> {
    let FeedbackCommand::Report { prompt, json } = args.command;
    let store = DynamoFeedback::new(&args.aws.sdk().await, &args.aws.settings().usage_table);
    let ratings = store
        .list(&prompt)
        .await
        .map_err(|e| args.aws.failure("the feedback", &e))?;
    let rows = report(&prompt, &ratings);
    if json {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no ratings of prompt {prompt}");
        return Ok(());
    }
    println!(
        "{:<10} {:<40} {:>7} {:>7} {:>6} {:>6}",
        "version", "model", "ratings", "mean", "up", "down"
    );
    for r in &rows {
        println!(
            "{:<10} {:<40} {:>7} {:>7.2} {:>5.0}% {:>5.0}%",
            r["version"],
            r["model"].as_str().unwrap_or_default(),
            r["ratings"],
            r["mean"].as_f64().unwrap_or_default(),
            r["up"].as_f64().unwrap_or_default() * 100.0,
            r["down"].as_f64().unwrap_or_default() * 100.0,
        );
    }
    Ok(())
}

/// One row per (version, model), versions in order.
fn report(prompt: &str, ratings: &[Feedback]) -> Vec<Value> {
    let mut groups: BTreeMap<(u64, &str), Vec<f64>> = BTreeMap::new();
    for f in ratings {
        groups
            .entry((f.version, f.model.as_str()))
            .or_default()
            .push(f.normalized);
    }
    groups
        .into_iter()
        .map(|((version, model), scores)| {
            let n = scores.len() as f64;
            let share =
                |keep: fn(&f64) -> bool| scores.iter().filter(|s| keep(s)).count() as f64 / n;
            json!({
                "prompt": prompt,
                "version": version,
                "model": model,
                "ratings": scores.len(),
                "mean": scores.iter().sum::<f64>() / n,
                "up": share(|s| *s > 0.0),
                "down": share(|s| *s < 0.0),
            })
        })
        .collect()
}

/// `quarry eval import-feedback`: writes the set and says what was left out.
pub async fn import_command(aws: &AwsArgs, args: &ImportArgs) -> Result<(), String> {
    let (written, missing) = import(aws, args).await?;
    let left_out = if missing > 0 {
        format!("; {missing} rated requests have no `full` audit record and were left out")
    } else {
        String::new()
    };
    println!(
        "{written} cases written to {}{left_out}",
        args.out.display()
    );
    Ok(())
}

/// Writes the golden set; returns (cases written, ratings without a `full` record).
pub async fn import(aws: &AwsArgs, args: &ImportArgs) -> Result<(usize, usize), String> {
    let sdk = aws.sdk().await;
    let settings = aws.settings();
    let ratings = DynamoFeedback::new(&sdk, &settings.usage_table)
        .list(&args.prompt)
        .await
        .map_err(|e| aws.failure("the feedback", &e))?;
    let ratings: Vec<&Feedback> = ratings
        .iter()
        .filter(|f| args.tenant.as_ref().is_none_or(|t| &f.tenant == t))
        .collect();
    let bucket = args.bucket.clone().unwrap_or(settings.audit_bucket);
    let reader = AuditReader::new(&sdk, &bucket);
    // The records of each tenant's rated days (a rating comes after its request: up to a
    // week before it is searched).
    let mut records: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, Vec<NaiveDate>> = BTreeMap::new();
    for f in &ratings {
        let day = NaiveDate::parse_from_str(f.at.get(..10).unwrap_or_default(), "%Y-%m-%d")
            .map_err(|e| format!("rating of {}: bad time {}: {e}", f.request_id, f.at))?;
        by_tenant.entry(&f.tenant).or_default().push(day);
    }
    for (tenant, days) in by_tenant {
        let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
            continue;
        };
        let query = AuditQuery {
            tenant: Some(tenant.to_owned()),
            from: first.checked_sub_days(Days::new(7)).unwrap_or(*first),
            to: *last,
            request_id: None,
        };
        for r in reader
            .read(&query)
            .await
            .map_err(|e| aws.failure("the audit trail", &e))?
        {
            let id = r["request_id"].as_str().unwrap_or_default().to_owned();
            records.insert((tenant.to_owned(), id), r);
        }
    }
    let mut cases = Vec::new();
    let mut missing = 0;
    for f in &ratings {
        let record = records.get(&(f.tenant.clone(), f.request_id.clone()));
        match record.and_then(|r| case_of(f, r, &args.judge)) {
            Some(case) => cases.push(case),
            None => missing += 1,
        }
    }
    let lines: Vec<String> = cases
        .iter()
        .filter_map(|c| serde_json::to_string(c).ok())
        .collect();
    let text = if lines.is_empty() {
        String::new()
    } else {
        lines.join("\n") + "\n"
    };
    std::fs::write(&args.out, text)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    Ok((cases.len(), missing))
}

/// A golden case from a rating and its `full` audit record; `None` without the input.
///
/// The prompt's variables become the case's; the conversation before the rendered template
/// (the input's last user turn) its messages. A well-rated answer becomes a judge case
/// against that answer; a poorly rated one a judge case for review, with the rating's words,
/// and a `not_contains` of its first sentence, so the same answer fails again.
fn case_of(f: &Feedback, record: &Value, judge: &str) -> Option<GoldenCase> {
    let input = record["input"].as_str()?;
    let (_system, mut messages): (Vec<SystemBlock>, Vec<Message>) =
        serde_json::from_str(input).ok()?;
    let variables = record["variables"]
        .as_str()
        .and_then(|v| serde_json::from_str::<serde_json::Map<String, Value>>(v).ok())
        .unwrap_or_default();
    if record["prompt"].is_object() && messages.last().is_some_and(|m| m.role == Role::User) {
        messages.pop();
    }
    let messages: Vec<CaseMessage> = messages
        .iter()
        .map(|m| CaseMessage {
            role: match m.role {
                Role::User => CaseRole::User,
                Role::Assistant => CaseRole::Assistant,
            },
            content: m.text(),
        })
        .filter(|m| !m.content.is_empty())
        .collect();
    if variables.is_empty() && messages.is_empty() {
        return None;
    }
    let answer = record["output"].as_str().unwrap_or_default();
    let said = [f.label.as_deref(), f.comment.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    let (assertions, rubric) = if f.normalized > 0.0 {
        (
            Vec::new(),
            format!(
                "Users rated this answer to the same request well ({} on {}): \"{answer}\". The answer is at least as correct, complete and helpful.",
                f.score,
                scale(f)
            ),
        )
    } else {
        let first = answer
            .split_inclusive(['.', '!', '?', '\n'])
            .next()
            .unwrap_or(answer)
            .trim();
        (
            (!first.is_empty())
                .then(|| Assertion::NotContains {
                    value: first.to_owned(),
                })
                .into_iter()
                .collect(),
            format!(
                "REVIEW: users rated this answer to the same request poorly ({} on {}{}): \"{answer}\". The answer avoids what made it poor and answers the request correctly.",
                f.score,
                scale(f),
                if said.is_empty() {
                    String::new()
                } else {
                    format!("; they said: {said}")
                }
            ),
        )
    };
    let id: String = format!("feedback-{}", f.request_id)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Some(GoldenCase {
        id,
        variables,
        messages,
        assertions,
        judge: Some(JudgeSpec {
            model: judge.to_owned(),
            rubric,
            min_score: 4,
        }),
    })
}

fn scale(f: &Feedback) -> &'static str {
    match f.scale {
        quarry_core::feedback::Scale::Thumbs => "-1..1",
        quarry_core::feedback::Scale::Stars => "1..5",
    }
}
