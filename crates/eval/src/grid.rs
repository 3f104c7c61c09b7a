//! The decision grid: per combination, pass rate, latency percentiles, tokens and cost per
//! 1,000 requests; the gate; the cheapest combination that meets it; and what changed
//! between two saved runs.

use quarry_core::pricing::MicroUsd;
use serde::{Deserialize, Serialize};

use crate::runner::{CaseResult, CellResult, Outcome};

/// A saved eval run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The golden set's path and the SHA-256 of its content.
    pub set: String,
    pub set_sha256: String,
    pub tenant: String,
    pub gate: Gate,
    pub cells: Vec<CellResult>,
}

/// What a combination must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Passed over evaluated cases, 0 to 1.
    pub min_pass: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_per_1k_micros: Option<u64>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_pass: 1.0,
            max_p95_ms: None,
            max_cost_per_1k_micros: None,
        }
    }
}

/// One row of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub label: String,
    pub cases: usize,
    pub passed: usize,
    pub failed: usize,
    /// Cases that could not be evaluated.
    pub errors: usize,
    /// `passed / (passed + failed)`; 0 when nothing was evaluated.
    pub pass_rate: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost of the answered requests (judge calls excluded); `None` when a model is unpriced.
    pub cost_micros: Option<u64>,
    pub cost_per_1k_micros: Option<u64>,
    pub judge_cost_micros: u64,
    /// Case runs after throttles or transient failures.
    pub retries: u32,
    /// Share of the cases with `retrieval_hit` assertions whose expected sources were
    /// retrieved; `None` without such cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_hit_rate: Option<f64>,
    /// Mean grounding score of the answers checked; `None` when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding_mean: Option<f64>,
    /// Why the gate refused this combination; empty when it passed.
    pub gate_failures: Vec<String>,
}

impl CellSummary {
    pub fn meets_gate(&self) -> bool {
        self.gate_failures.is_empty()
    }
}

/// Nearest-rank percentile of `values` (sorted here).
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

pub fn summarize(cell: &CellResult, gate: &Gate) -> CellSummary {
    let count = |o: Outcome| cell.results.iter().filter(|r| r.outcome == o).count();
    let (passed, failed, errors) = (
        count(Outcome::Passed),
        count(Outcome::Failed),
        count(Outcome::Error),
    );
    let answered: Vec<&CaseResult> = cell.results.iter().filter(|r| r.model.is_some()).collect();
    let mut latencies: Vec<u64> = answered.iter().map(|r| r.latency_ms).collect();
    let cost_micros = answered.iter().map(|r| r.cost_micros).sum::<Option<u64>>();
    let cost_per_1k_micros = match (cost_micros, answered.len()) {
        (Some(c), n) if n > 0 => Some(((u128::from(c) * 1000) / n as u128) as u64),
        _ => None,
    };
    let evaluated = passed + failed;
    let mut summary = CellSummary {
        label: cell.label.clone(),
        cases: cell.results.len(),
        passed,
        failed,
        errors,
        pass_rate: if evaluated == 0 {
            0.0
        } else {
            passed as f64 / evaluated as f64
        },
        p50_ms: percentile(&mut latencies, 50.0),
        p95_ms: percentile(&mut latencies, 95.0),
        input_tokens: answered.iter().map(|r| r.input_tokens).sum(),
        output_tokens: answered.iter().map(|r| r.output_tokens).sum(),
        cost_micros,
        cost_per_1k_micros,
        judge_cost_micros: cell
            .results
            .iter()
            .filter_map(|r| r.judge.as_ref().and_then(|j| j.cost_micros))
            .sum(),
        retries: cell.results.iter().map(|r| r.retries).sum(),
        retrieval_hit_rate: mean(
            cell.results
                .iter()
                .filter_map(|r| r.retrieval_hit.map(|hit| if hit { 1.0 } else { 0.0 })),
        ),
        grounding_mean: mean(cell.results.iter().filter_map(|r| r.grounding)),
        gate_failures: Vec::new(),
    };
    summary.gate_failures = gate.failures(&summary);
    summary
}

impl Gate {
    /// Why `s` does not meet the gate.
    pub fn failures(&self, s: &CellSummary) -> Vec<String> {
        let mut out = Vec::new();
        if s.errors > 0 {
            out.push(format!(
                "{} of {} cases could not be evaluated (see their errors); run again",
                s.errors, s.cases
            ));
        }
        if s.pass_rate + 1e-9 < self.min_pass {
            out.push(format!(
                "pass rate {:.1}% is below {:.1}% ({} of {} failed)",
                s.pass_rate * 100.0,
                self.min_pass * 100.0,
                s.failed,
                s.passed + s.failed
            ));
        }
        if let Some(max) = self.max_p95_ms
            && s.p95_ms > max
        {
            out.push(format!("p95 latency {} ms is over {max} ms", s.p95_ms));
        }
        if let Some(max) = self.max_cost_per_1k_micros {
            match s.cost_per_1k_micros {
                Some(c) if c > max => out.push(format!(
                    "cost per 1,000 requests {} is over {}",
                    MicroUsd(c),
                    MicroUsd(max)
                )),
                None => out.push("the cost is unknown (unpriced model)".to_owned()),
                _ => {}
            }
        }
        out
    }
}

/// The cheapest combination that meets the gate (ties: lower p95, then grid order).
/// Unpriced combinations are only recommended when no priced one qualifies.
pub fn recommend(summaries: &[CellSummary]) -> Option<usize> {
    summaries
        .iter()
        .enumerate()
        .filter(|(_, s)| s.meets_gate())
        .min_by_key(|(i, s)| {
            (
                s.cost_per_1k_micros.is_none(),
                s.cost_per_1k_micros,
                s.p95_ms,
                *i,
            )
        })
        .map(|(i, _)| i)
}

/// A case whose result differs between two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseChange {
    pub cell: String,
    pub case: String,
    /// `None`: the case is absent from that run.
    pub before: Option<Outcome>,
    pub after: Option<Outcome>,
    pub output_changed: bool,
    /// Why it fails in the second run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl CaseChange {
    pub fn is_regression(&self) -> bool {
        self.before == Some(Outcome::Passed) && self.after != Some(Outcome::Passed)
    }
}

/// One grid row in both runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellChange {
    pub before: String,
    pub after: String,
    pub pass_rate: (f64, f64),
    pub p95_ms: (u64, u64),
    pub cost_per_1k_micros: (Option<u64>, Option<u64>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub cells: Vec<CellChange>,
    pub cases: Vec<CaseChange>,
    /// Cases found in both runs (over the matched cells): 0 means nothing was compared.
    #[serde(default)]
    pub common_cases: usize,
}

/// What changed from `a` to `b`. Cells are matched by label; when each run has exactly one
/// cell (e.g. two versions of a prompt), they are compared with each other.
pub fn compare(a: &EvalRun, b: &EvalRun) -> Comparison {
    let pairs: Vec<(&CellResult, &CellResult)> = if a.cells.len() == 1 && b.cells.len() == 1 {
        vec![(&a.cells[0], &b.cells[0])]
    } else {
        a.cells
            .iter()
            .filter_map(|ca| {
                b.cells
                    .iter()
                    .find(|cb| cb.label == ca.label)
                    .map(|cb| (ca, cb))
            })
            .collect()
    };
    let mut out = Comparison {
        cells: Vec::new(),
        cases: Vec::new(),
        common_cases: 0,
    };
    for (ca, cb) in pairs {
        let (sa, sb) = (summarize(ca, &a.gate), summarize(cb, &b.gate));
        out.cells.push(CellChange {
            before: ca.label.clone(),
            after: cb.label.clone(),
            pass_rate: (sa.pass_rate, sb.pass_rate),
            p95_ms: (sa.p95_ms, sb.p95_ms),
            cost_per_1k_micros: (sa.cost_per_1k_micros, sb.cost_per_1k_micros),
        });
        let label = if ca.label == cb.label {
            ca.label.clone()
        } else {
            format!("{} -> {}", ca.label, cb.label)
        };
        let mut ids: Vec<&str> = ca.results.iter().map(|r| r.case.as_str()).collect();
        for r in &cb.results {
            if !ids.contains(&r.case.as_str()) {
                ids.push(&r.case);
            }
        }
        for id in ids {
            let ra = ca.results.iter().find(|r| r.case == id);
            let rb = cb.results.iter().find(|r| r.case == id);
            if ra.is_some() && rb.is_some() {
                out.common_cases += 1;
            }
            let before = ra.map(|r| r.outcome);
            let after = rb.map(|r| r.outcome);
            let output_changed = match (ra, rb) {
                (Some(x), Some(y)) => x.output != y.output,
                _ => true,
            };
            if before != after || output_changed {
                out.cases.push(CaseChange {
                    cell: label.clone(),
                    case: id.to_owned(),
                    before,
                    after,
                    output_changed,
                    failures: rb.map(|r| r.failures.clone()).unwrap_or_default(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(case: &str, outcome: Outcome, latency_ms: u64, cost: Option<u64>) -> CaseResult {
        CaseResult {
            case: case.into(),
            outcome,
            failures: if outcome == Outcome::Failed {
                vec!["contains: \"x\" not found".into()]
            } else {
                vec![]
            },
            error: None,
            output: format!("{case} {outcome:?}"),
            model: (outcome != Outcome::Error).then(|| "m".to_owned()),
            prompt_version: Some(1),
            input_tokens: 10,
            output_tokens: 5,
            cost_micros: cost,
            latency_ms,
            retries: 0,
            model_calls: 1,
            fallbacks: vec![],
            judge: None,
            sources: vec![],
            grounding: None,
            retrieval_hit: None,
        }
    }

    fn cell(label: &str, results: Vec<CaseResult>) -> CellResult {
        CellResult {
            label: label.into(),
            prompt: None,
            route: label.into(),
            results,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 50.0), 50);
        assert_eq!(percentile(&mut v, 95.0), 95);
        assert_eq!(percentile(&mut [7], 95.0), 7);
        assert_eq!(percentile(&mut [], 95.0), 0);
    }

    #[test]
    fn summary_gate_and_recommendation() {
        let gate = Gate {
            min_pass: 0.75,
            ..Gate::default()
        };
        let cheap_bad = cell(
            "cheap",
            vec![
                result("a", Outcome::Passed, 10, Some(1)),
                result("b", Outcome::Failed, 20, Some(1)),
            ],
        );
        let good = cell(
            "good",
            vec![
                result("a", Outcome::Passed, 30, Some(10)),
                result("b", Outcome::Passed, 40, Some(12)),
            ],
        );
        let flaky = cell(
            "flaky",
            vec![
                result("a", Outcome::Passed, 5, Some(2)),
                result("b", Outcome::Error, 5, None),
            ],
        );
        let s: Vec<CellSummary> = [&cheap_bad, &good, &flaky]
            .iter()
            .map(|c| summarize(c, &gate))
            .collect();
        assert_eq!(s[0].pass_rate, 0.5);
        assert!(s[0].gate_failures[0].contains("50.0% is below 75.0%"));
        assert_eq!(s[1].cost_micros, Some(22));
        assert_eq!(s[1].cost_per_1k_micros, Some(11_000));
        assert_eq!((s[1].p50_ms, s[1].p95_ms), (30, 40));
        // An error is not a failure, but a gate cannot pass on cases it did not see.
        assert_eq!((s[2].pass_rate, s[2].errors), (1.0, 1));
        assert!(s[2].gate_failures[0].contains("could not be evaluated"));
        assert_eq!(recommend(&s), Some(1));

        let strict = Gate {
            min_pass: 1.0,
            max_cost_per_1k_micros: Some(5_000),
            ..Gate::default()
        };
        let s = summarize(&good, &strict);
        assert!(s.gate_failures[0].contains("cost per 1,000 requests $0.011000"));
        assert_eq!(recommend(&[s]), None);
    }

    #[test]
    fn unpriced_cost_is_unknown_not_zero() {
        let c = cell("u", vec![result("a", Outcome::Passed, 1, None)]);
        let s = summarize(&c, &Gate::default());
        assert_eq!((s.cost_micros, s.cost_per_1k_micros), (None, None));
    }

    #[test]
    fn comparison_lists_changed_cases() {
        let run = |cells| EvalRun {
            id: "r".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            set: "s.jsonl".into(),
            set_sha256: "0".into(),
            tenant: "eval".into(),
            gate: Gate::default(),
            cells,
        };
        let a = run(vec![cell(
            "p@1 fast",
            vec![
                result("a", Outcome::Passed, 1, Some(1)),
                result("b", Outcome::Passed, 1, Some(1)),
            ],
        )]);
        let b = run(vec![cell(
            "p@2 fast",
            vec![
                result("a", Outcome::Passed, 1, Some(1)),
                result("b", Outcome::Failed, 1, Some(1)),
                result("c", Outcome::Passed, 1, Some(1)),
            ],
        )]);
        let cmp = compare(&a, &b);
        assert_eq!(cmp.cells.len(), 1);
        assert_eq!(cmp.cells[0].pass_rate, (1.0, 2.0 / 3.0));
        let changed: Vec<&str> = cmp.cases.iter().map(|c| c.case.as_str()).collect();
        assert_eq!(changed, ["b", "c"]);
        assert!(cmp.cases[0].is_regression());
        assert_eq!(cmp.cases[0].cell, "p@1 fast -> p@2 fast");
        assert_eq!(cmp.cases[1].before, None);
    }
}
