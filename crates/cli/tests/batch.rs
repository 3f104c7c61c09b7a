//! `quarry batch` as a producer and an operator use it, against moto and the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions};
use quarry_testkit::{Stack, eventually};

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &["batch"], args)
}

async fn queue_depth(stack: &Stack) -> u64 {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let out = sqs
        .get_queue_attributes()
        .queue_url(&stack.provisioned.batch_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    out.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

#[tokio::test]
async fn submit_validates_everything_first_then_status_and_results() {
    let stack = Stack::start().await;
    let dir = std::env::temp_dir().join(format!("quarry-batch-{}", stack.settings.stage));
    std::fs::create_dir_all(&dir).unwrap();

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}\n{not json}\n{\"prompt\":\"summarize\",\"tier\":\"a\",\"model\":\"b\"}\n").unwrap();
    let (ok, out) = quarry(
        &stack,
        &[
            "submit",
            bad.to_str().unwrap(),
            "--tenant",
            "acme",
            "--job-id",
            "bad-job",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("line 2: not JSON") && out.contains("line 3: give 'tier' or 'model'"),
        "{out}"
    );
    assert_eq!(
        queue_depth(&stack).await,
        0,
        "nothing is sent when a line is invalid"
    );

    // Prompts are checked before anything is sent: one that does not exist, variables that
    // do not fit.
    let unknown = dir.join("unknown.jsonl");
    std::fs::write(&unknown, "{\"item_id\":\"a\",\"prompt\":\"nope\"}\n{\"item_id\":\"b\",\"prompt\":\"summarize\",\"variables\":{\"txt\":\"typo\"}}\n").unwrap();
    let (ok, out) = quarry(
        &stack,
        &[
            "submit",
            unknown.to_str().unwrap(),
            "--tenant",
            "acme",
            "--job-id",
            "unknown-job",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("item a: ") && out.contains("unknown prompt 'nope'"),
        "{out}"
    );
    assert!(out.contains("item b: ") && out.contains("text"), "{out}");
    assert_eq!(queue_depth(&stack).await, 0);

    let good = dir.join("good.jsonl");
    // The last item passes every check the CLI can make and fails at Bedrock (over the
    // model's output limit): a failure reported by the job.
    let lines: Vec<String> = (1..=12)
        .map(|i| format!("{{\"item_id\":\"doc-{i}\",\"prompt\":\"summarize\",\"variables\":{{\"text\":\"Document number {i}.\"}},\"tags\":{{\"feature\":\"digest\"}}}}"))
        .chain(std::iter::once("{\"item_id\":\"broken\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"anthropic.claude-3-5-haiku-20241022-v1:0\",\"max_tokens\":9000}".to_owned()))
        .collect();
    std::fs::write(&good, lines.join("\n")).unwrap();
    let (ok, out) = quarry(
        &stack,
        &[
            "submit",
            good.to_str().unwrap(),
            "--tenant",
            "acme",
            "--job-id",
            "digest-1",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("job digest-1: 13 items submitted for tenant acme"),
        "{out}"
    );
    assert_eq!(queue_depth(&stack).await, 13);

    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let arn = quarry_aws::queues::queue_arn(&sqs, &stack.provisioned.batch_queue_url)
        .await
        .unwrap();
    let worker = Arc::new(Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions::default(),
    ));
    let mapping = EventSourceMapping::new(
        sqs,
        stack.provisioned.batch_queue_url.clone(),
        arn,
        worker,
        MappingOptions {
            wait_seconds: 0,
            ..MappingOptions::default()
        },
    );
    eventually(Duration::from_secs(30), || async {
        (mapping.poll_once().await.ok()?.received == 0).then_some(())
    })
    .await
    .unwrap();

    // `--watch` follows until done (here at once), then prints the status.
    let (ok, out) = quarry(
        &stack,
        &["status", "digest-1", "--tenant", "acme", "--watch"],
    );
    assert!(ok, "{out}");
    for expected in [
        "state      done",
        "expected   13",
        "started    13",
        "succeeded  12",
        "failed     1",
        "in flight  0",
        "broken: model_validation_error",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Resubmitting to the job warns and keeps its announced count; finished items do not
    // run again.
    let one = dir.join("one.jsonl");
    std::fs::write(&one, "{\"item_id\":\"doc-1\",\"prompt\":\"summarize\",\"variables\":{\"text\":\"Document number 1.\"}}").unwrap();
    let (ok, out) = quarry(
        &stack,
        &[
            "submit",
            one.to_str().unwrap(),
            "--tenant",
            "acme",
            "--job-id",
            "digest-1",
        ],
    );
    assert!(
        ok && out.contains("exists already (13 items announced)"),
        "{out}"
    );
    let (ok, out) = quarry(&stack, &["status", "digest-1", "--tenant", "acme"]);
    assert!(ok && out.contains("expected   13"), "{out}");
    let results = dir.join("results.jsonl");
    let (ok, out) = quarry(
        &stack,
        &[
            "results",
            "digest-1",
            "--tenant",
            "acme",
            "--out",
            results.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 13);
    let done: Vec<_> = written
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .collect();
    assert_eq!(done.len(), 12);
    assert!(done.iter().all(
        |r| r["output"].as_str().is_some_and(|o| !o.is_empty()) && r["prompt"] == "summarize@1"
    ));
    // Rows use a chat answer's names.
    for r in &done {
        let u = &r["usage"];
        assert!(
            u["input_tokens"].as_u64().unwrap() > 0 && u["output_tokens"].as_u64().unwrap() > 0,
            "{r}"
        );
        assert_eq!(r["cached"], false, "{r}");
    }

    let (ok, out) = quarry(&stack, &["status", "digest-1", "--tenant", "globex"]);
    assert!(
        !ok && out.contains("no job digest-1 for tenant globex"),
        "{out}"
    );
}

/// Items failed for a reason their cause can fix (a budget, since raised) run again with
/// `quarry batch retry`; items failed for good are not retried.
#[tokio::test]
async fn retry_reruns_budget_blocked_items_once_the_budget_allows() {
    let stack = Stack::start().await;
    let dir = std::env::temp_dir().join(format!("quarry-retry-{}", stack.settings.stage));
    std::fs::create_dir_all(&dir).unwrap();
    let cli =
        |command: &str, args: &[&str]| stack.cli(env!("CARGO_BIN_EXE_quarry"), &[command], args);
    let set_budget = |usd: &str| {
        let value =
            format!(r#"{{"tenants": {{"acme": {{"monthly_usd": "{usd}", "action": "block"}}}}}}"#);
        let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
        let name = stack.settings.param("budgets");
        async move { ssm.put(&name, &value, false).await.unwrap() }
    };
    // acme spends past a tiny budget, and cost-alarm blocks it.
    set_budget("0.000001").await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let arn = quarry_aws::queues::queue_arn(&sqs, &stack.provisioned.batch_queue_url)
        .await
        .unwrap();
    let worker = Arc::new(Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            budget_max_age: Duration::ZERO,
            ..WorkerOptions::default()
        },
    ));
    let mapping = EventSourceMapping::new(
        sqs,
        stack.provisioned.batch_queue_url.clone(),
        arn,
        worker,
        MappingOptions {
            wait_seconds: 0,
            ..MappingOptions::default()
        },
    );
    let drain = || async {
        eventually(Duration::from_secs(30), || async {
            (mapping.poll_once().await.ok()?.received == 0).then_some(())
        })
        .await
        .unwrap();
    };
    let file = |name: &str, lines: &[&str]| {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let first = file(
        "first.jsonl",
        &[r#"{"item_id":"spend","messages":[{"role":"user","content":"spend"}]}"#],
    );
    let (ok, out) = cli(
        "batch",
        &[
            "submit",
            &first,
            "--tenant",
            "acme",
            "--job-id",
            "spend-job",
        ],
    );
    assert!(ok, "{out}");
    drain().await;
    stack.settle().await;
    let (ok, out) = cli("budgets", &["evaluate"]);
    assert!(ok && out.contains("acme: ok -> blocked"), "{out}");

    // Blocked: both items fail, kept for a retry.
    let job = file(
        "job.jsonl",
        &[
            r#"{"item_id":"later","messages":[{"role":"user","content":"later"}]}"#,
            r#"{"item_id":"also-later","messages":[{"role":"user","content":"also later"}]}"#,
        ],
    );
    let (ok, out) = cli(
        "batch",
        &["submit", &job, "--tenant", "acme", "--job-id", "retry-job"],
    );
    assert!(ok, "{out}");
    drain().await;
    let (ok, out) = cli("batch", &["status", "retry-job", "--tenant", "acme"]);
    assert!(
        ok && out.contains("failed     2") && out.contains("budget_blocked"),
        "{out}"
    );
    // Still blocked: a retry runs them, and they fail again (and stay retryable).
    let (ok, out) = cli("batch", &["retry", "retry-job", "--tenant", "acme"]);
    assert!(ok && out.contains("2 item(s) sent again"), "{out}");
    drain().await;
    let (ok, out) = cli("batch", &["status", "retry-job", "--tenant", "acme"]);
    assert!(ok && out.contains("failed     2"), "{out}");

    // The budget is raised: a retry runs both, once each.
    set_budget("1000").await;
    stack.settle().await;
    let (ok, out) = cli("budgets", &["evaluate"]);
    assert!(ok && out.contains("acme: blocked -> ok"), "{out}");
    let (ok, out) = cli("batch", &["retry", "retry-job", "--tenant", "acme"]);
    assert!(
        ok && out.contains("2 item(s) sent again; 0 failed for good"),
        "{out}"
    );
    drain().await;
    let (ok, out) = cli("batch", &["status", "retry-job", "--tenant", "acme"]);
    assert!(ok, "{out}");
    for line in ["state      done", "succeeded  2", "failed     0"] {
        assert!(out.contains(line), "{line} in {out}");
    }
    let (ok, out) = cli("batch", &["retry", "retry-job", "--tenant", "acme"]);
    assert!(ok && out.contains("0 item(s) sent again"), "{out}");
}

fn write_items(dir: &std::path::Path, name: &str, n: usize) -> String {
    let path = dir.join(name);
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"messages": [{"role": "user", "content": format!("Summarize {i}")}], "tier": "batch"})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn modes_deadlines_bulk_status_and_cancel() {
    let stack = Stack::start().await;
    let dir = std::env::temp_dir().join(format!("quarry-bulk-{}", stack.settings.stage));
    std::fs::create_dir_all(&dir).unwrap();
    let ten = write_items(&dir, "ten.jsonl", 10);
    let hundred = write_items(&dir, "hundred.jsonl", 100);
    let submit = |file: &str, job: &str, extra: &[&str]| {
        let mut args = vec!["submit", file, "--tenant", "acme", "--job-id", job];
        args.extend_from_slice(extra);
        args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        quarry(&stack, &refs)
    };

    // Bulk asked for, below Bedrock's minimum: refused before anything is sent.
    let (ok, out) = run(submit(&ten, "too-small", &["--mode", "bulk"]));
    assert!(!ok && out.contains("cannot run in bulk"), "{out}");
    assert_eq!(queue_depth(&stack).await, 0);
    // Large enough, but due sooner than bulk's turnaround: auto runs it online.
    let (ok, out) = run(submit(&hundred, "due-soon", &["--deadline", "2h"]));
    assert!(
        ok && out.contains("due-soon: online (the deadline is less than 24 h away"),
        "{out}"
    );
    let (ok, out) = run(submit(&hundred, "bad-deadline", &["--deadline", "soon"]));
    assert!(!ok && out.contains("RFC 3339"), "{out}");

    // A bulk job: its status says so; cancelled before submission, its items fail so.
    let (ok, out) = run(submit(
        &hundred,
        "nightly",
        &["--mode", "auto", "--deadline", "3d"],
    ));
    assert!(ok && out.contains("nightly: bulk"), "{out}");
    let worker = Arc::new(Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions::default(),
    ));
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let arn = quarry_aws::queues::queue_arn(&sqs, &stack.provisioned.batch_queue_url)
        .await
        .unwrap();
    let mapping = EventSourceMapping::new(
        sqs,
        stack.provisioned.batch_queue_url.clone(),
        arn,
        worker,
        MappingOptions {
            wait_seconds: 0,
            ..MappingOptions::default()
        },
    );
    eventually(Duration::from_secs(60), || async {
        mapping.poll_once().await.ok()?;
        let (_, out) = quarry(&stack, &["status", "nightly", "--tenant", "acme"]);
        (out.contains("started    100") && out.contains("bulk       collecting")).then_some(())
    })
    .await
    .expect("the items are kept for the bulk job");
    let (ok, out) = quarry(&stack, &["status", "nightly", "--tenant", "acme"]);
    assert!(ok && out.contains("mode       bulk"), "{out}");
    let (ok, out) = quarry(&stack, &["cancel", "nightly", "--tenant", "acme"]);
    assert!(ok && out.contains("cancelled before submission"), "{out}");
    let (ok, out) = quarry(&stack, &["cancel", "due-soon", "--tenant", "acme"]);
    assert!(!ok && out.contains("cannot be cancelled"), "{out}");
    let tracker = batch_worker::bulk::Tracker::from_sdk(
        &stack.sdk,
        &stack.settings,
        batch_worker::bulk::TrackerOptions {
            bucket: stack.settings.batch_bucket.clone(),
            role_arn: Some("arn:aws:iam::123456789012:role/quarry-test-batch".into()),
            ..Default::default()
        },
        None,
    );
    tracker
        .run(tokio::time::Instant::now() + Duration::from_secs(60))
        .await;
    let (ok, out) = quarry(&stack, &["status", "nightly", "--tenant", "acme"]);
    assert!(
        ok && out.contains("bulk       cancelled") && out.contains("failed     100"),
        "{out}"
    );
    assert!(out.contains("cancelled before submission"), "{out}");
}
