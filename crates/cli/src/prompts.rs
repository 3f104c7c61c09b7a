//! `quarry prompts`: push, list, show, diff, promote, rollback.

use std::path::PathBuf;

use clap::Subcommand;
use quarry_admin::infra::{load_prompts, push_prompts};
use quarry_admin::prompt_admin::{PromptAdmin, diff, to_yaml};
use quarry_aws::ssm::SsmParams;
use quarry_core::prompts::{PromptSelector, parse_reference};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct PromptsArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: PromptsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Push infra/prompts/*.yaml; only changed prompts get a new version.
    Push {
        #[arg(long, default_value = "infra/prompts")]
        dir: PathBuf,
    },
    /// Every prompt with its latest version and labels.
    List,
    /// One prompt: NAME (latest), NAME@VERSION or NAME:LABEL.
    Show { reference: String },
    /// What changed between two versions (or labels) of a prompt.
    Diff { name: String, a: String, b: String },
    /// Point a label (release channel) at a version; with --gate, only if the version
    /// passes the golden set.
    Promote {
        name: String,
        version: u64,
        #[arg(long)]
        to: String,
        /// A golden set (JSONL) the version must pass first.
        #[arg(long)]
        gate: Option<PathBuf>,
        #[command(flatten)]
        eval: crate::eval::GateArgs,
    },
    /// Move a label back to the version it pointed at before.
    Rollback {
        name: String,
        #[arg(long)]
        label: String,
    },
}

/// A version number or a label.
fn selector(s: &str) -> PromptSelector {
    match s.parse::<u64>() {
        Ok(v) => PromptSelector::Version(v),
        Err(_) => PromptSelector::Label(s.to_owned()),
    }
}

pub async fn run(args: PromptsArgs) -> Result<(), String> {
    let sdk = args.aws.sdk().await;
    let settings = args.aws.settings();
    let ssm = SsmParams::new(&sdk);
    let admin = PromptAdmin::new(&ssm, &settings);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match args.command {
        PromptsCommand::Push { dir } => {
            let prompts = load_prompts(&dir).map_err(|e| err(&e))?;
            if prompts.is_empty() {
                return Err(format!("no prompts in {}", dir.display()));
            }
            let pushed = push_prompts(&ssm, &settings, &prompts)
                .await
                .map_err(|e| err(&e))?;
            for (p, spec) in pushed.iter().zip(&prompts) {
                match (p.changed, p.previous) {
                    (false, _) => println!("unchanged  {}@{}", spec.name, p.version),
                    (true, None) => println!("new        {}@{}", spec.name, p.version),
                    (true, Some(prev)) => {
                        println!(
                            "changed    {}@{} -> {}@{}",
                            spec.name, prev, spec.name, p.version
                        );
                        if let Ok((old, _)) =
                            admin.spec(&spec.name, &PromptSelector::Version(prev)).await
                        {
                            print!(
                                "{}",
                                diff(
                                    &old,
                                    &format!("{}@{prev}", spec.name),
                                    spec,
                                    &format!("{}@{}", spec.name, p.version)
                                )
                            );
                        }
                    }
                }
            }
        }
        PromptsCommand::List => {
            println!("{:<32} {:>7}  labels", "prompt", "latest");
            for name in admin.names().await.map_err(|e| err(&e))? {
                let s = admin.summary(&name).await.map_err(|e| err(&e))?;
                let labels: Vec<String> =
                    s.labels.iter().map(|(l, v)| format!("{l}={v}")).collect();
                println!("{:<32} {:>7}  {}", s.name, s.latest, labels.join(" "));
            }
        }
        PromptsCommand::Show { reference } => {
            let (name, sel) = parse_reference(&reference).map_err(|e| err(&e))?;
            let (spec, version) = admin.spec(&name, &sel).await.map_err(|e| err(&e))?;
            println!("# {name}@{version}");
            print!("{}", to_yaml(&spec));
        }
        PromptsCommand::Diff { name, a, b } => {
            let (sa, va) = admin
                .spec(&name, &selector(&a))
                .await
                .map_err(|e| err(&e))?;
            let (sb, vb) = admin
                .spec(&name, &selector(&b))
                .await
                .map_err(|e| err(&e))?;
            let out = diff(&sa, &format!("{name}@{va}"), &sb, &format!("{name}@{vb}"));
            if out.is_empty() {
                println!("{name}@{va} and {name}@{vb} are identical");
            } else {
                print!("{out}");
            }
        }
        PromptsCommand::Promote {
            name,
            version,
            to,
            gate,
            eval,
        } => {
            if let Some(set) = gate {
                crate::eval::gate_version(&args.aws, &name, version, &set, &eval).await?;
            }
            let before = admin
                .promote(&name, version, &to)
                .await
                .map_err(|e| err(&e))?;
            match before {
                Some(b) => println!("{name}:{to} {b} -> {version}"),
                None => println!("{name}:{to} -> {version}"),
            }
        }
        PromptsCommand::Rollback { name, label } => {
            let (from, to) = admin.rollback(&name, &label).await.map_err(|e| err(&e))?;
            println!("{name}:{label} rolled back {from} -> {to}");
        }
    }
    Ok(())
}
