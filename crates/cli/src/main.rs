//! `quarry`: the local stack (`dev`, `serve`) and the operator commands.

mod admin;
mod audit;
mod aws;
mod batch;
mod batch_bulk;
mod budgets;
mod cost;
mod cost_provisioned;
mod cost_reconcile;
mod dev;
mod eval;
mod feedback;
mod kb;
mod prompts;
mod serve;
mod tenant_policy;
mod tenant_profiles;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "quarry",
    version,
    about = "Quarry: a production gateway for Amazon Bedrock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Quarry locally: moto and the Bedrock emulator (unless endpoints are given), the
    /// API on 127.0.0.1, the batch poller and the cost-alarm schedule.
    Dev(dev::DevArgs),
    /// Serve the API, the batch poller and the cost-alarm schedule against the endpoints of
    /// the environment (what `dev` runs once the stack is up).
    Serve(serve::ServeArgs),
    /// Prompts in SSM: push, list, show, diff, promote, rollback.
    Prompts(prompts::PromptsArgs),
    /// Batch jobs: submit a JSONL file, status, results.
    Batch(batch::BatchArgs),
    /// Usage and cost from the ledger.
    Cost(cost::CostArgs),
    /// Budgets: each tenant's standing and state; evaluate now.
    Budgets(budgets::BudgetsArgs),
    /// Push infra/ (routing, pricing, budgets, experiments, prompts) to SSM.
    Config(admin::ConfigArgs),
    /// Tenants: list, set, remove.
    Tenants(admin::TenantsArgs),
    /// API keys: create (shown once), revoke.
    Keys(admin::KeysArgs),
    /// Evaluate prompts and models on golden sets: run (grid, gate), compare saved runs.
    Eval(eval::EvalArgs),
    /// Knowledge Bases: what a query retrieves, with scores.
    Kb(kb::KbArgs),
    /// The audit trail: one request's record, or a tenant's records over days.
    Audit(audit::AuditArgs),
    /// Feedback on answers: a prompt's versions compared by their ratings.
    Feedback(feedback::FeedbackArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quarry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Prompts(args) => prompts::run(args).await,
            Command::Batch(args) => batch::run(args).await,
            Command::Cost(args) => cost::run(args).await,
            Command::Budgets(args) => budgets::run(args).await,
            Command::Config(args) => admin::config(args).await,
            Command::Tenants(args) => admin::tenants(args).await,
            Command::Keys(args) => admin::keys(args).await,
            Command::Eval(args) => eval::run_command(args).await,
            Command::Kb(args) => kb::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Feedback(args) => feedback::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quarry: {}", plain(&message));
            ExitCode::FAILURE
        }
    }
}

/// An SDK that could not reach its endpoint: one line, with a hint of what to check (the
/// commands that know their endpoint say it themselves). Other errors as they are.
fn plain(message: &str) -> String {
    let unreachable = message.contains("dispatch failure") || message.contains("onnection refused");
    if !unreachable {
        return message.to_owned();
    }
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.contains(" — ") {
        line
    } else {
        format!(
            "{line} — is `quarry dev` running? pass --aws-endpoint (and --bedrock-endpoint) for a local stack, or check the AWS credentials and region"
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_one_plain_line() {
        let e = super::plain(
            "cannot read x: dispatch failure: io error\n  caused by: Connection refused (os error 111)",
        );
        assert_eq!(e.lines().count(), 1);
        assert!(e.contains("is `quarry dev` running?"), "{e}");
        assert_eq!(super::plain("no tenant initech"), "no tenant initech");
    }
}
