//! `quarry eval` and gated promotion against moto and the emulator (deterministic, so the
//! pass rates are exact).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quarry_core::pricing::MicroUsd;
use quarry_testkit::{Stack, workspace_root};
use serde_json::{Value, json};

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const NOVA_LITE: &str = "amazon.nova-lite-v1:0";

fn quarry(stack: &Stack, command: &str, args: &[&str]) -> (bool, String, String) {
    let bedrock = stack.emulator.url();
    let mut all = vec!["--bedrock-endpoint", &bedrock];
    all.extend_from_slice(args);
    let (ok, out) = stack.cli(env!("CARGO_BIN_EXE_quarry"), &[command], &all);
    // stdout first, then stderr: a JSON document is the first line's start.
    let json_end = out.rfind("\n}").map_or(0, |i| i + 2);
    (ok, out[..json_end].to_owned(), out)
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn scratch(stack: &Stack, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-eval-{}-{name}", stack.settings.stage));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_set(dir: &Path, cases: &[Value]) -> String {
    let path = dir.join("set.jsonl");
    let text: Vec<String> = cases.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The ledger's month-to-date cost of `feature` for tenant `eval`.
fn ledger_cost(stack: &Stack, feature: &str) -> u64 {
    let (ok, out) = stack.cli(
        env!("CARGO_BIN_EXE_quarry"),
        &["cost"],
        &["report", "--tenant", "eval", "--by", "feature", "--json"],
    );
    assert!(ok, "{out}");
    let rows = json_of(&out);
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == feature)
        .map_or(0, |r| {
            MicroUsd::parse_usd(r["cost_usd"].as_str().unwrap())
                .unwrap()
                .0
        })
}

/// Four cases: a v1 answer (12-60 words, ends with a sentence) passes the first three and
/// fails the fourth (`max_output_tokens: 5`); a v2 capped at 3 tokens fails the first three
/// (no full sentence) and passes the fourth.
fn summarize_set() -> Vec<Value> {
    let sentence = json!({"type": "regex", "pattern": "\\.$"});
    let short = json!({"type": "max_output_tokens", "value": 100});
    vec![
        json!({"id": "news", "variables": {"text": "The council approved the new budget on Monday."}, "assert": [sentence, short]}),
        json!({"id": "email", "variables": {"text": "Please send the invoice by Friday.", "max_words": 20}, "assert": [sentence, {"type": "not_contains", "value": "As an AI"}]}),
        json!({"id": "report", "variables": {"text": "Revenue grew 12% while costs fell."}, "assert": [sentence]}),
        json!({"id": "tiny", "variables": {"text": "Hello."}, "assert": [{"type": "max_output_tokens", "value": 5}]}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_passes_and_fails_grid_cost_equals_the_ledger_and_runs_compare() {
    let stack = Stack::start().await;
    let dir = scratch(&stack, "gate");
    let set = write_set(&dir, &summarize_set());
    let runs = dir.join("runs");
    let runs = runs.to_str().unwrap();
    let eval = |versions: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--prompt",
            "summarize",
            "--versions",
            versions,
            "--set",
            &set,
            "--runs-dir",
            runs,
        ];
        args.extend_from_slice(extra);
        quarry(&stack, "eval", &args)
    };
    let promote = |version: &str| {
        quarry(
            &stack,
            "prompts",
            &[
                "promote",
                "summarize",
                version,
                "--to",
                "prod",
                "--gate",
                &set,
                "--min-pass",
                "0.75",
                "--runs-dir",
                runs,
            ],
        )
    };

    // Version 2 of summarize answers in at most 3 tokens.
    let prompts = dir.join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    let v1 =
        std::fs::read_to_string(workspace_root().join("infra/prompts/summarize.yaml")).unwrap();
    assert!(v1.contains("max_tokens: 400"));
    std::fs::write(
        prompts.join("summarize.yaml"),
        v1.replace("max_tokens: 400", "max_tokens: 3"),
    )
    .unwrap();
    let (ok, _, out) = quarry(
        &stack,
        "prompts",
        &["push", "--dir", prompts.to_str().unwrap()],
    );
    assert!(ok && out.contains("summarize@1 -> summarize@2"), "{out}");

    // The grid: exact pass rates, the cheapest passing combination recommended.
    let (ok, stdout, out) = eval("1,2", &["--min-pass", "0.75", "--json"]);
    assert!(ok, "{out}");
    let report = json_of(&stdout);
    let grid = report["grid"].as_array().unwrap();
    assert_eq!(grid.len(), 2);
    assert_eq!(grid[0]["label"], "summarize@1 (prompt's)");
    assert_eq!(
        (grid[0]["passed"].as_u64(), grid[0]["failed"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(grid[0]["pass_rate"], 0.75);
    assert_eq!(grid[1]["pass_rate"], 0.25);
    assert_eq!(grid[0]["errors"], 0);
    assert_eq!(grid[0]["gate_failures"], json!([]));
    assert!(
        grid[1]["gate_failures"][0]
            .as_str()
            .unwrap()
            .contains("25.0% is below 75.0%")
    );
    assert_eq!(report["recommended"], "summarize@1 (prompt's)");
    let cells = report["cells"].as_array().unwrap();
    let tiny = &cells[0]["results"][3];
    assert_eq!(tiny["outcome"], "failed");
    assert!(
        tiny["failures"][0]
            .as_str()
            .unwrap()
            .starts_with("max_output_tokens")
    );
    assert_eq!(cells[1]["results"][0]["prompt_version"], 2);
    assert_eq!(cells[1]["results"][0]["output_tokens"], 3);

    // The grid's cost is what the ledger charged for the same requests.
    let grid_cost: u64 = grid
        .iter()
        .map(|g| g["cost_micros"].as_u64().unwrap())
        .sum();
    assert!(grid_cost > 0);
    stack.settle().await;
    assert_eq!(ledger_cost(&stack, "eval"), grid_cost);
    let per_1k = grid[0]["cost_per_1k_micros"].as_u64().unwrap();
    assert_eq!(per_1k, grid[0]["cost_micros"].as_u64().unwrap() * 1000 / 4);

    // A stricter gate: no combination meets it, the exit status says so, the table says why.
    let (ok, _, out) = eval("1,2", &["--min-pass", "0.9"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("gate failed") && out.contains("No combination meets the gate"),
        "{out}"
    );
    assert!(
        out.contains("summarize@1 (prompt's) tiny: max_output_tokens"),
        "{out}"
    );
    assert!(
        out.contains(r#"input:  {"messages":[],"variables":{"text":"Hello."}}"#),
        "{out}"
    );

    // Gated promotion refuses v2 and keeps prod where it was; v1 passes.
    let (ok, _, out) = promote("2");
    assert!(!ok, "{out}");
    assert!(out.contains("refusing to promote summarize@2"), "{out}");
    assert!(out.contains("pass rate 25.0% is below 75.0%"), "{out}");
    let (ok, _, out) = quarry(&stack, "prompts", &["show", "summarize:prod"]);
    assert!(!ok && out.contains("no label 'prod'"), "{out}");
    // A gate on a model the label does not serve proves nothing about it: refused.
    let (ok, _, out) = quarry(
        &stack,
        "prompts",
        &[
            "promote",
            "summarize",
            "1",
            "--to",
            "prod",
            "--gate",
            &set,
            "--min-pass",
            "0.75",
            "--runs-dir",
            runs,
            "--models",
            "us.amazon.nova-lite-v1:0",
        ],
    );
    assert!(
        !ok && out.contains("a promotion gate runs the routing the label will serve"),
        "{out}"
    );
    let (ok, _, out) = quarry(&stack, "prompts", &["show", "summarize:prod"]);
    assert!(!ok && out.contains("no label 'prod'"), "{out}");
    let (ok, _, out) = promote("1");
    assert!(ok && out.contains("summarize:prod -> 1"), "{out}");

    // Two saved runs, one version each: compare shows the cases that changed.
    let mut ids = Vec::new();
    for version in ["1", "2"] {
        let (_, stdout, out) = eval(version, &["--json"]);
        ids.push(
            json_of(&stdout)["run_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{out}"))
                .to_owned(),
        );
    }
    let (ok, _, out) = quarry(
        &stack,
        "eval",
        &["compare", &ids[0], &ids[1], "--runs-dir", runs],
    );
    assert!(ok, "{out}");
    assert!(out.contains("pass 75.0% -> 25.0%"), "{out}");
    for case in ["news", "email", "report"] {
        assert!(out.contains(&format!("REGRESSED summarize@1 (prompt's) -> summarize@2 (prompt's) {case}: passed -> failed")), "{out}");
    }
    assert!(
        out.contains(
            "FIXED     summarize@1 (prompt's) -> summarize@2 (prompt's) tiny: failed -> passed"
        ),
        "{out}"
    );
    let (ok, _, out) = quarry(
        &stack,
        "eval",
        &[
            "compare",
            &ids[0],
            &ids[1],
            "--runs-dir",
            runs,
            "--fail-on-regression",
        ],
    );
    assert!(!ok && out.contains("3 case(s) regressed"), "{out}");

    // A run with no case in common: comparing nothing is never a pass.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = write_set(
        &other_dir,
        &[
            json!({"id": "elsewhere", "variables": {"text": "Somewhere else."}, "assert": [{"type": "max_output_tokens", "value": 500}]}),
        ],
    );
    let (_, stdout, out) = quarry(
        &stack,
        "eval",
        &[
            "run",
            "--prompt",
            "summarize",
            "--versions",
            "1",
            "--set",
            &other,
            "--runs-dir",
            runs,
            "--json",
        ],
    );
    let other_id = json_of(&stdout)["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    for extra in [&[][..], &["--fail-on-regression"][..]] {
        let mut args = vec!["compare", &ids[0], &other_id, "--runs-dir", runs];
        args.extend_from_slice(extra);
        let (ok, _, out) = quarry(&stack, "eval", &args);
        assert!(!ok && out.contains("nothing in common"), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_model_scores_each_answer() {
    let stack = Stack::start().await;
    let dir = scratch(&stack, "judge");
    let rubric = "The answer is a faithful summary of the input.";
    let judge =
        |min: u8| json!({"model": format!("us.{NOVA_LITE}"), "rubric": rubric, "min_score": min});
    let set = write_set(
        &dir,
        &[
            json!({"id": "a", "variables": {"text": "Alpha."}, "judge": judge(1)}),
            json!({"id": "b", "variables": {"text": "Beta."}, "judge": judge(1)}),
            json!({"id": "c", "variables": {"text": "Gamma."}, "judge": judge(5)}),
        ],
    );
    let (_, stdout, out) = quarry(
        &stack,
        "eval",
        &[
            "run",
            "--prompt",
            "summarize",
            "--set",
            &set,
            "--json",
            "--runs-dir",
            dir.join("runs").to_str().unwrap(),
        ],
    );
    let report = json_of(&stdout);
    let results = report["cells"][0]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    for r in results {
        let j = &r["judge"];
        let score = j["score"].as_u64().unwrap();
        assert!((1..=5).contains(&score), "{r}");
        assert_eq!(j["model"], format!("us.{NOVA_LITE}"));
        let expected = if score >= j["min_score"].as_u64().unwrap() {
            "passed"
        } else {
            "failed"
        };
        assert_eq!(r["outcome"], expected, "{r}");
    }
    assert_eq!(results[0]["outcome"], "passed");
    assert_eq!(results[1]["outcome"], "passed");

    // The named model judged each answer, seeing the rubric and the answer.
    let emu = stack.emulator.state();
    assert_eq!(emu.calls(Some("Converse"), Some(NOVA_LITE)), 3);
    assert_eq!(emu.calls(Some("Converse"), Some(HAIKU)), 3);
    let judged: Vec<String> = emu
        .recorded(100)
        .into_iter()
        .filter(|r| r.model_id.contains(NOVA_LITE))
        .map(|r| r.body.to_string())
        .collect();
    assert_eq!(judged.len(), 3);
    let first_output = results[0]["output"].as_str().unwrap();
    assert!(
        judged
            .iter()
            .any(|b| b.contains(rubric) && b.contains(first_output))
    );

    // Judge calls are charged apart from the requests under test.
    let judge_cost = report["grid"][0]["judge_cost_micros"].as_u64().unwrap();
    assert!(judge_cost > 0);
    stack.settle().await;
    assert_eq!(ledger_cost(&stack, "eval-judge"), judge_cost);
    assert_eq!(
        ledger_cost(&stack, "eval"),
        report["grid"][0]["cost_micros"].as_u64().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_model_is_retried_and_reported_not_failed() {
    let stack = Stack::start().await;
    let dir = scratch(&stack, "throttle");
    let set = write_set(&dir, &summarize_set()[..3]);
    let runs = dir.join("runs");
    let model = format!("us.{NOVA_LITE}");
    let args = |retries: &'static str| {
        vec![
            "run".to_owned(),
            "--prompt".into(),
            "summarize".into(),
            "--models".into(),
            model.clone(),
            "--set".into(),
            set.clone(),
            "--json".into(),
            "--concurrency".into(),
            "1".into(),
            "--backoff-ms".into(),
            "20".into(),
            "--case-retries".into(),
            retries.into(),
            "--runs-dir".into(),
            runs.to_str().unwrap().into(),
        ]
    };

    // Four throttles: the invocation layer's three attempts are spent, the eval pauses and
    // runs the case again, and the fourth throttle is followed by an answer.
    stack.emulator.state().update_faults(|f| {
        f.entry(NOVA_LITE.to_owned()).or_default().throttle_next = 4;
    });
    let a = args("4");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, stdout, out) = quarry(&stack, "eval", &a);
    assert!(ok, "{out}");
    let report = json_of(&stdout);
    let grid = &report["grid"][0];
    assert_eq!(
        (grid["pass_rate"].as_f64(), grid["errors"].as_u64()),
        (Some(1.0), Some(0)),
        "{grid}"
    );
    assert_eq!(grid["retries"], 1, "{grid}");
    assert_eq!(report["cells"][0]["results"][0]["retries"], 1);
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("Converse"), Some(NOVA_LITE)),
        4 + 3
    );

    // A model that never stops throttling: the cases are reported as not evaluated, never
    // as failures, and the gate does not pass on them.
    stack.emulator.state().update_faults(|f| {
        f.entry(NOVA_LITE.to_owned())
            .or_default()
            .throttle_probability = 1.0;
    });
    let a = args("1");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, stdout, out) = quarry(&stack, "eval", &a);
    assert!(!ok, "{out}");
    let report = json_of(&stdout);
    let grid = &report["grid"][0];
    assert_eq!(
        (grid["failed"].as_u64(), grid["errors"].as_u64()),
        (Some(0), Some(3)),
        "{grid}"
    );
    assert!(
        grid["gate_failures"][0]
            .as_str()
            .unwrap()
            .contains("could not be evaluated")
    );
    let first = &report["cells"][0]["results"][0];
    assert_eq!(first["outcome"], "error");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("models_unavailable"),
        "{first}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_golden_sets_in_infra_are_valid_and_name_real_prompts() {
    let root = workspace_root().join("infra");
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("evals")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let cases = quarry_eval::golden::parse_set(&path.display().to_string(), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cases.len() >= 3, "{}", path.display());
        let prompt = root
            .join("prompts")
            .join(path.with_extension("yaml").file_name().unwrap());
        assert!(
            prompt.is_file(),
            "{} has no prompt {}",
            path.display(),
            prompt.display()
        );
        seen += 1;
    }
    assert!(seen >= 2);
}
