//! `quarry eval`: run a golden set against prompt versions × models through the production
//! chat path, print the decision grid, gate on it, save the run, and compare two runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use quarry_core::pricing::MicroUsd;
use quarry_core::prompts::PromptSelector;
use quarry_eval::golden::{GoldenCase, parse_set};
use quarry_eval::grid::{CellSummary, Comparison, EvalRun, Gate, compare, recommend, summarize};
use quarry_eval::runner::{
    CaseResult, CellResult, Combination, EvalOptions, Outcome, Progress, run,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: EvalCommand,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run a golden set under every combination of prompt versions (or labels) and models.
    Run(RunArgs),
    /// What changed between two saved runs, case by case.
    Compare {
        /// A run ID (under --runs-dir) or the path of a saved run.
        a: String,
        b: String,
        #[arg(long, default_value = ".quarry/evals")]
        runs_dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Exit non-zero when a case that passed in A does not pass in B.
        #[arg(long)]
        fail_on_regression: bool,
    },
    /// Rated requests of a prompt, with their `full` audit records, as golden-set cases:
    /// well-rated answers become judge cases against them, poorly rated ones judge cases
    /// for review (with a `not_contains` of the rejected answer).
    ImportFeedback(crate::feedback::ImportArgs),
}

/// The gate and how the eval runs: shared by `eval run` and `prompts promote --gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// Lowest acceptable pass rate (0 to 1) of the cases evaluated.
    #[arg(long, default_value_t = 1.0)]
    pub min_pass: f64,
    /// Highest acceptable p95 latency.
    #[arg(long)]
    pub max_p95_ms: Option<u64>,
    /// Highest acceptable cost per 1,000 requests, in USD (e.g. 0.50).
    #[arg(long)]
    pub max_cost_per_1k: Option<String>,
    /// Tiers or model IDs to evaluate, comma-separated (default: the prompt's own).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Cases in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Runs of a case after a throttle or transient failure, with a shared backoff.
    #[arg(long, default_value_t = 4)]
    pub case_retries: u32,
    /// First backoff after a throttle (doubles per retry, full jitter).
    #[arg(long, default_value_t = 2000)]
    pub backoff_ms: u64,
    /// The tenant the eval's usage is charged to (feature `eval` in the ledger); a shared
    /// Knowledge Base is searched as this tenant (its documents only).
    #[arg(long, default_value = "eval")]
    pub tenant: String,
    /// Where runs are saved.
    #[arg(long, default_value = ".quarry/evals")]
    pub runs_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The prompt under test; without it, cases must carry their messages.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Prompt versions, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "labels",
        requires = "prompt"
    )]
    pub versions: Vec<u64>,
    /// Prompt labels, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "prompt")]
    pub labels: Vec<String>,
    /// The golden set (JSONL).
    #[arg(long)]
    pub set: PathBuf,
    #[command(flatten)]
    pub gate: GateArgs,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    #[arg(long)]
    pub csv: bool,
}

pub async fn run_command(args: EvalArgs) -> Result<(), String> {
    match args.command {
        EvalCommand::Run(run_args) => {
            let prompts: Vec<Option<(String, PromptSelector)>> = match &run_args.prompt {
                None => vec![None],
                Some(name) if !run_args.versions.is_empty() => run_args
                    .versions
                    .iter()
                    .map(|v| Some((name.clone(), PromptSelector::Version(*v))))
                    .collect(),
                Some(name) if !run_args.labels.is_empty() => run_args
                    .labels
                    .iter()
                    .map(|l| Some((name.clone(), PromptSelector::Label(l.clone()))))
                    .collect(),
                Some(name) => vec![Some((name.clone(), PromptSelector::Default))],
            };
            if run_args.prompt.is_none() && run_args.gate.models.is_empty() {
                return Err("name the models to evaluate (--models) or a prompt (--prompt)".into());
            }
            let output = if run_args.json {
                Format::Json
            } else if run_args.csv {
                Format::Csv
            } else {
                Format::Table
            };
            let report = evaluate(&args.aws, &run_args.set, &prompts, &run_args.gate).await?;
            report.print(output);
            match report.recommended {
                Some(_) => Ok(()),
                None => Err("gate failed: no combination meets it".into()),
            }
        }
        EvalCommand::ImportFeedback(import) => {
            crate::feedback::import_command(&args.aws, &import).await
        }
        EvalCommand::Compare {
            a,
            b,
            runs_dir,
            json,
            fail_on_regression,
        } => {
            let (ra, rb) = (load_run(&runs_dir, &a)?, load_run(&runs_dir, &b)?);
            let cmp = compare(&ra, &rb);
            // Comparing nothing proves nothing: never a pass.
            if cmp.common_cases == 0 {
                return Err(format!(
                    "runs {a} and {b} have nothing in common ({} matching cell(s), no case in both): nothing was compared",
                    cmp.cells.len()
                ));
            }
            if json {
                let text = serde_json::to_string_pretty(&cmp).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print_comparison(&ra, &rb, &cmp);
            }
            let regressions = cmp.cases.iter().filter(|c| c.is_regression()).count();
            if fail_on_regression && regressions > 0 {
                return Err(format!("{regressions} case(s) regressed from {a} to {b}"));
            }
            Ok(())
        }
    }
}

/// Gates `name@version` before `prompts promote`: Err says why it is refused.
pub async fn gate_version(
    aws: &AwsArgs,
    name: &str,
    version: u64,
    set: &Path,
    gate: &GateArgs,
) -> Result<(), String> {
    // The gate must run what the label will serve: the prompt version with its own routing.
    // A pass on another model says nothing about production traffic.
    if !gate.models.is_empty() {
        return Err(format!(
            "refusing to gate {name}@{version} on --models {}: a promotion gate runs the routing the label will serve (the prompt's own tier or model); use --models with `quarry eval run` to explore",
            gate.models.join(",")
        ));
    }
    let prompts = vec![Some((name.to_owned(), PromptSelector::Version(version)))];
    let report = evaluate(aws, set, &prompts, gate).await?;
    report.print(Format::Table);
    match report.summaries.iter().find(|s| !s.meets_gate()) {
        None => Ok(()),
        Some(s) => Err(format!(
            "refusing to promote {name}@{version}: {} fails the gate {}: {}",
            s.label,
            set.display(),
            s.gate_failures.join("; ")
        )),
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Table,
    Json,
    Csv,
}

struct Report {
    run: EvalRun,
    cases: Vec<GoldenCase>,
    summaries: Vec<CellSummary>,
    recommended: Option<usize>,
    saved_to: Option<PathBuf>,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn case_done(&self, cell: &str, result: &CaseResult) {
        self.0.inc(1);
        if result.retries > 0 {
            self.0.set_message(format!(
                "{cell} {}: retried {} time(s) after throttling",
                result.case, result.retries
            ));
        }
    }
}

async fn evaluate(
    aws: &AwsArgs,
    set: &Path,
    prompts: &[Option<(String, PromptSelector)>],
    gate_args: &GateArgs,
) -> Result<Report, String> {
    let text = std::fs::read_to_string(set)
        .map_err(|e| format!("cannot read the golden set {}: {e}", set.display()))?;
    let cases = parse_set(&set.display().to_string(), &text).map_err(|e| e.to_string())?;
    if !(0.0..=1.0).contains(&gate_args.min_pass) {
        return Err("--min-pass is a fraction from 0 to 1 (e.g. 0.95)".into());
    }
    let gate = Gate {
        min_pass: gate_args.min_pass,
        max_p95_ms: gate_args.max_p95_ms,
        max_cost_per_1k_micros: match &gate_args.max_cost_per_1k {
            Some(usd) => Some(
                MicroUsd::parse_usd(usd)
                    .map_err(|e| format!("--max-cost-per-1k: {e}"))?
                    .0,
            ),
            None => None,
        },
    };
    let routes: Vec<Option<String>> = if gate_args.models.is_empty() {
        vec![None]
    } else {
        gate_args.models.iter().cloned().map(Some).collect()
    };
    let combinations: Vec<Combination> = prompts
        .iter()
        .flat_map(|p| {
            routes.iter().map(move |r| Combination {
                prompt: p.clone(),
                route: r.clone(),
            })
        })
        .collect();

    let now = chrono::Utc::now();
    let run_id = format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    );
    let options = EvalOptions {
        run_id: run_id.clone(),
        tenant: gate_args.tenant.clone(),
        concurrency: gate_args.concurrency,
        case_retries: gate_args.case_retries,
        backoff: Duration::from_millis(gate_args.backoff_ms),
        ..EvalOptions::default()
    };
    let state = chat_handler::AppState::from_sdks(
        &aws.sdk().await,
        &aws.bedrock_sdk().await,
        aws.settings(),
        chat_handler::Options::default(),
    );
    // The eval may retrieve from every Knowledge Base the routing declares.
    let mut options = options;
    if let Ok(routing) = state.service.configs().routing().await {
        options.knowledge_bases = routing.knowledge_bases.keys().cloned().collect();
    }
    let bar = ProgressBar::new((cases.len() * combinations.len()) as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} cases {elapsed} {msg}") {
        bar.set_style(style);
    }
    let progress = Bar(bar);
    let cells = run(&state.service, &cases, &combinations, &options, &progress).await;
    progress.0.finish_and_clear();

    let summaries: Vec<CellSummary> = cells.iter().map(|c| summarize(c, &gate)).collect();
    let recommended = recommend(&summaries);
    let run = EvalRun {
        id: run_id,
        created_at: now.to_rfc3339(),
        set: set.display().to_string(),
        set_sha256: hex::encode(Sha256::digest(text.as_bytes())),
        tenant: gate_args.tenant.clone(),
        gate,
        cells,
    };
    let saved_to = save_run(&gate_args.runs_dir, &run);
    Ok(Report {
        run,
        cases,
        summaries,
        recommended,
        saved_to,
    })
}

/// Saves a run; a run that cannot be saved is a warning, not a lost eval.
fn save_run(dir: &Path, run: &EvalRun) -> Option<PathBuf> {
    let path = dir.join(format!("{}.json", run.id));
    let saved = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::to_vec_pretty(run).map_err(|e| e.to_string()))
        .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
    match saved {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!(
                "warning: the run could not be saved to {}: {e}",
                path.display()
            );
            None
        }
    }
}

fn load_run(dir: &Path, reference: &str) -> Result<EvalRun, String> {
    let direct = PathBuf::from(reference);
    let path = if direct.is_file() {
        direct
    } else {
        dir.join(format!("{reference}.json"))
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "no saved run {reference} ({}: {e}); runs are saved under --runs-dir",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a saved run: {e}", path.display()))
}

fn usd(micros: Option<u64>) -> String {
    micros.map_or_else(|| "unpriced".to_owned(), |m| MicroUsd(m).to_string())
}

fn short(s: &str, max: usize) -> String {
    let flat = s.replace('\n', " ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

impl Report {
    fn print(&self, format: Format) {
        match format {
            Format::Json => self.print_json(),
            Format::Csv => self.print_csv(),
            Format::Table => self.print_table(),
        }
    }

    fn recommended_label(&self) -> Option<&str> {
        self.recommended
            .and_then(|i| self.summaries.get(i))
            .map(|s| s.label.as_str())
    }

    fn print_json(&self) {
        let value = json!({
            "run_id": self.run.id,
            "saved_to": self.saved_to,
            "set": self.run.set,
            "gate": self.run.gate,
            "grid": self.summaries,
            "recommended": self.recommended_label(),
            "cells": self.run.cells,
        });
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("quarry: {e}"),
        }
    }

    fn print_csv(&self) {
        println!(
            "combination,cases,passed,failed,errors,pass_rate,p50_ms,p95_ms,input_tokens,output_tokens,cost_usd,cost_per_1k_usd,judge_cost_usd,retries,meets_gate,retrieval_hit_rate,grounding_mean"
        );
        for s in &self.summaries {
            println!(
                "\"{}\",{},{},{},{},{:.4},{},{},{},{},{},{},{},{},{},{},{}",
                s.label.replace('"', "\"\""),
                s.cases,
                s.passed,
                s.failed,
                s.errors,
                s.pass_rate,
                s.p50_ms,
                s.p95_ms,
                s.input_tokens,
                s.output_tokens,
                s.cost_micros
                    .map_or_else(String::new, |m| MicroUsd(m).to_usd_string()),
                s.cost_per_1k_micros
                    .map_or_else(String::new, |m| MicroUsd(m).to_usd_string()),
                MicroUsd(s.judge_cost_micros).to_usd_string(),
                s.retries,
                s.meets_gate(),
                s.retrieval_hit_rate
                    .map_or_else(String::new, |r| format!("{r:.4}")),
                s.grounding_mean
                    .map_or_else(String::new, |g| format!("{g:.4}"))
            );
        }
    }

    fn print_table(&self) {
        let width = self
            .summaries
            .iter()
            .map(|s| s.label.chars().count())
            .max()
            .unwrap_or(11)
            .max(11);
        // Retrieval's columns only when a combination retrieved.
        let rag = self
            .summaries
            .iter()
            .any(|s| s.retrieval_hit_rate.is_some() || s.grounding_mean.is_some());
        let rag_head = if rag {
            format!("  {:>7}  {:>8}", "hit", "grounded")
        } else {
            String::new()
        };
        println!(
            "{:<width$}  {:>6}  {:>7}  {:>7}  {:>8}  {:>8}  {:>12}  {:>7}{rag_head}  gate",
            "combination",
            "pass",
            "p50 ms",
            "p95 ms",
            "in tok",
            "out tok",
            "cost/1k req",
            "retries"
        );
        for s in &self.summaries {
            let rag_cells = if rag {
                format!(
                    "  {:>7}  {:>8}",
                    s.retrieval_hit_rate
                        .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                    s.grounding_mean
                        .map_or("-".to_owned(), |g| format!("{g:.2}"))
                )
            } else {
                String::new()
            };
            println!(
                "{:<width$}  {:>5.1}%  {:>7}  {:>7}  {:>8}  {:>8}  {:>12}  {:>7}{rag_cells}  {}",
                s.label,
                s.pass_rate * 100.0,
                s.p50_ms,
                s.p95_ms,
                s.input_tokens,
                s.output_tokens,
                usd(s.cost_per_1k_micros),
                s.retries,
                if s.meets_gate() { "pass" } else { "FAIL" }
            );
        }
        for (cell, s) in self.run.cells.iter().zip(&self.summaries) {
            if !s.gate_failures.is_empty() {
                println!("\n{}: {}", s.label, s.gate_failures.join("; "));
            }
            print_cases(cell, &self.cases);
        }
        println!();
        match self.recommended_label() {
            Some(label) => {
                println!("Recommended: {label} (the cheapest combination that meets the gate)")
            }
            None => println!("No combination meets the gate."),
        }
        if let Some(path) = &self.saved_to {
            println!("Saved run {} to {}", self.run.id, path.display());
        }
    }
}

/// The failed and unevaluated cases of a cell, with their inputs.
fn print_cases(cell: &CellResult, cases: &[GoldenCase]) {
    for r in &cell.results {
        let what = match r.outcome {
            Outcome::Passed => continue,
            Outcome::Failed => r.failures.join("; "),
            Outcome::Error => format!("not evaluated: {}", r.error.as_deref().unwrap_or("")),
        };
        println!("  {} {}: {}", cell.label, r.case, what);
        if let Some(case) = cases.iter().find(|c| c.id == r.case) {
            let input = json!({"variables": case.variables, "messages": case.messages});
            println!("    input:  {}", short(&input.to_string(), 200));
        }
        if !r.output.is_empty() {
            println!("    output: {}", short(&r.output, 200));
        }
    }
}

fn print_comparison(a: &EvalRun, b: &EvalRun, cmp: &Comparison) {
    println!("{} -> {}", a.id, b.id);
    if a.set_sha256 != b.set_sha256 {
        println!(
            "note: the runs used different golden sets ({} vs {})",
            a.set, b.set
        );
    }
    if cmp.cells.is_empty() {
        println!("no combination in common (compare runs of the same grid, or one cell each)");
    }
    for c in &cmp.cells {
        let label = if c.before == c.after {
            c.before.clone()
        } else {
            format!("{} -> {}", c.before, c.after)
        };
        println!(
            "{label}: pass {:.1}% -> {:.1}%, p95 {} -> {} ms, cost/1k {} -> {}",
            c.pass_rate.0 * 100.0,
            c.pass_rate.1 * 100.0,
            c.p95_ms.0,
            c.p95_ms.1,
            usd(c.cost_per_1k_micros.0),
            usd(c.cost_per_1k_micros.1)
        );
    }
    for c in &cmp.cases {
        let word = match (c.before, c.after) {
            (None, _) => "NEW",
            (_, None) => "REMOVED",
            _ if c.is_regression() => "REGRESSED",
            (Some(x), Some(y)) if x != Outcome::Passed && y == Outcome::Passed => "FIXED",
            (Some(x), Some(y)) if x != y => "CHANGED",
            _ => "OUTPUT",
        };
        let outcome = |o: Option<Outcome>| {
            o.map_or_else(|| "-".to_owned(), |o| format!("{o:?}").to_lowercase())
        };
        print!(
            "  {word:<9} {} {}: {} -> {}",
            c.cell,
            c.case,
            outcome(c.before),
            outcome(c.after)
        );
        if c.output_changed {
            print!(" (output changed)");
        }
        if !c.failures.is_empty() {
            print!(": {}", c.failures.join("; "));
        }
        println!();
    }
    if cmp.cases.is_empty() {
        println!("no case changed");
    }
}
