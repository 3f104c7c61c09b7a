//! The adapters of bulk jobs against moto (S3) and the emulator (Bedrock's batch inference
//! control plane), with the production SDK configuration: model-native records written to
//! the stack's batch bucket, a job started, tracked to its end and stopped, its output and
//! manifest read back into answers with their usage, and a failed record reported as such.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bedrock_emulator::EmulatorConfig;
use quarry_aws::bedrock::native;
use quarry_aws::bulk::{BedrockBulk, S3BatchFiles};
use quarry_core::bulk::{BulkState, BulkSubmission, Manifest, parse_output_line, record_line};
use quarry_core::model::{InferenceParams, Message, ModelRequest};
use quarry_core::ports::{BatchFiles, BulkInference, StoreErrorKind};
use quarry_testkit::{Moto, Stack, eventually};

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

fn request(text: &str) -> ModelRequest {
    ModelRequest {
        messages: vec![Message::user(text)],
        params: InferenceParams {
            max_tokens: Some(100),
            ..InferenceParams::default()
        },
        ..ModelRequest::default()
    }
}

fn submission(stack: &Stack, job: &str) -> BulkSubmission {
    let bucket = &stack.settings.batch_bucket;
    BulkSubmission {
        job_name: format!("quarry-{job}"),
        model_id: HAIKU.into(),
        role_arn: "arn:aws:iam::123456789012:role/quarry-batch".into(),
        input_uri: format!("s3://{bucket}/jobs/{job}/input/"),
        output_uri: format!("s3://{bucket}/jobs/{job}/output/"),
        client_token: format!("token-{job}"),
        timeout_hours: 24,
    }
}

#[tokio::test]
async fn a_bulk_job_runs_from_native_records_to_answers_with_usage() {
    let mut config = EmulatorConfig::builtin();
    config.batch.faults.fail_record_ids = vec!["r2".into()];
    let stack = Stack::start_with(Moto::shared().url(), config).await;
    let files = S3BatchFiles::new(&stack.sdk);
    let bulk = BedrockBulk::new(&stack.sdk);
    let job = submission(&stack, "j1");

    let lines: Vec<String> = ["Summarize: one", "Summarize: two", "Summarize: three"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            record_line(
                &format!("r{}", i + 1),
                &native::body(HAIKU, &request(text)).unwrap(),
            )
        })
        .collect();
    files
        .put(
            &format!("{}records.jsonl", job.input_uri),
            lines.join("\n").into_bytes(),
        )
        .await
        .unwrap();
    let arn = bulk.submit(&job).await.unwrap();
    // Idempotent: the same token is the same job.
    assert_eq!(bulk.submit(&job).await.unwrap(), arn);

    let done = eventually(Duration::from_secs(20), || async {
        let s = bulk.status(&arn).await.unwrap();
        s.state.is_final().then_some(s)
    })
    .await
    .expect("the job finishes");
    assert_eq!(done.state, BulkState::PartiallyCompleted, "{done:?}");
    assert!(
        done.output_prefix
            .ends_with(&format!("/{}/", quarry_core::bulk::job_id_of(&arn)))
    );

    let outputs = files.list(&done.output_prefix).await.unwrap();
    let out = outputs
        .iter()
        .find(|u| u.ends_with("records.jsonl.out"))
        .unwrap();
    let text = String::from_utf8(files.get(out).await.unwrap().unwrap()).unwrap();
    let records: Vec<_> = text
        .lines()
        .map(|l| parse_output_line(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    let mut input_tokens = 0;
    for r in &records {
        match (&r.record_id[..], &r.outcome) {
            ("r2", Err(e)) => assert_eq!(e.code, 400),
            (_, Ok(output)) => {
                let answer = native::answer(HAIKU, output).unwrap();
                assert!(!answer.text().is_empty());
                assert!(answer.usage.input > 0 && answer.usage.output > 0);
                input_tokens += answer.usage.input;
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    let manifest: Manifest = serde_json::from_slice(
        &files
            .get(&format!("{}manifest.json.out", done.output_prefix))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            manifest.total_record_count,
            manifest.success_record_count,
            manifest.error_record_count
        ),
        (3, 2, 1)
    );
    assert!(manifest.input_token_count >= input_tokens);

    // A finished job cannot be stopped; an unknown one is not found; an absent object is
    // `None`, not an error.
    assert_eq!(
        bulk.stop(&arn).await.unwrap_err().kind,
        StoreErrorKind::Invalid
    );
    assert_eq!(
        bulk.status("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/zzzzzzzzzzzz")
            .await
            .unwrap_err()
            .kind,
        StoreErrorKind::Invalid
    );
    assert!(
        files
            .get(&format!("{}missing.jsonl", job.input_uri))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_running_bulk_job_stops() {
    let mut config = EmulatorConfig::builtin();
    config.batch.step_ms = 1_000;
    let stack = Stack::start_with(Moto::shared().url(), config).await;
    let files = S3BatchFiles::new(&stack.sdk);
    let bulk = BedrockBulk::new(&stack.sdk);
    let job = submission(&stack, "j2");
    let line = record_line(
        "r1",
        &native::body(HAIKU, &request("Summarize: stop me")).unwrap(),
    );
    files
        .put(
            &format!("{}records.jsonl", job.input_uri),
            line.into_bytes(),
        )
        .await
        .unwrap();
    let arn = bulk.submit(&job).await.unwrap();
    assert!(!bulk.status(&arn).await.unwrap().state.is_final());
    bulk.stop(&arn).await.unwrap();
    let stopped = eventually(Duration::from_secs(20), || async {
        let s = bulk.status(&arn).await.unwrap();
        (s.state == BulkState::Stopped).then_some(s)
    })
    .await;
    assert!(stopped.is_some());
}

#[tokio::test]
async fn nova_and_llama_records_are_read_as_bedrock_reads_them() {
    let stack = Stack::start().await;
    let files = S3BatchFiles::new(&stack.sdk);
    let bulk = BedrockBulk::new(&stack.sdk);
    for (n, model) in ["amazon.nova-lite-v1:0", "meta.llama3-1-8b-instruct-v1:0"]
        .into_iter()
        .enumerate()
    {
        let mut job = submission(&stack, &format!("native{n}"));
        job.model_id = model.into();
        let mut with_system = request("Summarize: the cat sat on the mat.");
        with_system.system = vec![quarry_core::model::SystemBlock::Text("Be brief.".into())];
        let line = record_line("r1", &native::body(model, &with_system).unwrap());
        files
            .put(
                &format!("{}records.jsonl", job.input_uri),
                line.into_bytes(),
            )
            .await
            .unwrap();
        let arn = bulk.submit(&job).await.unwrap();
        let done = eventually(Duration::from_secs(20), || async {
            let s = bulk.status(&arn).await.unwrap();
            s.state.is_final().then_some(s)
        })
        .await
        .unwrap();
        assert_eq!(done.state, BulkState::Completed, "{model}: {done:?}");
        let out = format!("{}records.jsonl.out", done.output_prefix);
        let text = String::from_utf8(files.get(&out).await.unwrap().unwrap()).unwrap();
        let record = parse_output_line(text.lines().next().unwrap()).unwrap();
        let answer = native::answer(model, record.outcome.as_ref().unwrap()).unwrap();
        assert!(!answer.text().is_empty(), "{model}");
        assert!(answer.usage.input > 0 && answer.usage.output > 0, "{model}");
    }
}
