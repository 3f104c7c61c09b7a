//! Batch inference jobs over the wire: the AWS SDK's `bedrock` client drives the emulator,
//! whose jobs read their records from and write their results to a moto S3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_bedrock::Client;
use aws_sdk_bedrock::config::retry::RetryConfig;
use aws_sdk_bedrock::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::operation::get_model_invocation_job::GetModelInvocationJobOutput;
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, SortOrder,
};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const NOVA: &str = "amazon.nova-lite-v1:0";
const LLAMA: &str = "meta.llama3-1-8b-instruct-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/bedrock-batch";

/// One moto per test binary; it exits when its stdin closes, that is with this process.
struct Moto {
    url: String,
    _child: Mutex<(Child, ChildStdin)>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn moto() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let python = std::env::var_os("QUARRY_PYTHON")
                .map_or_else(|| workspace_root().join(".venv/bin/python"), PathBuf::from);
            let mut child = Command::new(&python)
                .arg(workspace_root().join("infra/local/moto_server.py"))
                .arg("0")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", python.display()));
            let stdin = child.stdin.take().unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let url = line
                .trim()
                .strip_prefix("moto listening on ")
                .unwrap_or_else(|| panic!("moto did not start: {line:?}"))
                .to_owned();
            Moto {
                url,
                _child: Mutex::new((child, stdin)),
            }
        })
        .url
}

async fn emulator(extra: &str) -> RunningEmulator {
    let yaml = format!("batch:\n  step_ms: 20\n  s3_endpoint: {}\n{extra}", moto());
    let config = EmulatorConfig::from_yaml_over_builtin(&yaml).unwrap();
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap()
}

fn client(emulator: &RunningEmulator) -> Client {
    let config = aws_sdk_bedrock::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(emulator.url())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

async fn bucket(name: &str) {
    let status = reqwest::Client::new()
        .put(format!("{}/{name}", moto()))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "create bucket {name}: {status}");
}

async fn put(bucket: &str, key: &str, body: String) {
    let status = reqwest::Client::new()
        .put(format!("{}/{bucket}/{key}", moto()))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "put {key}: {status}");
}

async fn get(bucket: &str, key: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .get(format!("{}/{bucket}/{key}", moto()))
        // Without one moto treats the read as anonymous and refuses private objects.
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
        .send()
        .await
        .unwrap();
    if response.status().is_success() {
        Some(response.text().await.unwrap())
    } else {
        None
    }
}

fn claude(prompt: &str) -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
    })
}

fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect::<String>()
}

fn input_config(uri: &str) -> ModelInvocationJobInputDataConfig {
    ModelInvocationJobInputDataConfig::S3InputDataConfig(
        ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(uri)
            .build()
            .unwrap(),
    )
}

fn output_config(uri: &str) -> ModelInvocationJobOutputDataConfig {
    ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
        ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(uri)
            .build()
            .unwrap(),
    )
}

async fn create(client: &Client, name: &str, bucket: &str, input_key: &str) -> String {
    create_for(client, HAIKU, name, bucket, input_key).await
}

async fn create_for(
    client: &Client,
    model: &str,
    name: &str,
    bucket: &str,
    input_key: &str,
) -> String {
    client
        .create_model_invocation_job()
        .job_name(name)
        .role_arn(ROLE)
        .model_id(model)
        .input_data_config(input_config(&format!("s3://{bucket}/{input_key}")))
        .output_data_config(output_config(&format!("s3://{bucket}/out/")))
        .send()
        .await
        .unwrap()
        .job_arn
}

fn is_final(status: Option<&ModelInvocationJobStatus>) -> bool {
    matches!(
        status,
        Some(
            ModelInvocationJobStatus::Completed
                | ModelInvocationJobStatus::PartiallyCompleted
                | ModelInvocationJobStatus::Failed
                | ModelInvocationJobStatus::Stopped
                | ModelInvocationJobStatus::Expired
        )
    )
}

/// Polls the job until it ends; returns it and every status seen on the way.
async fn wait(client: &Client, arn: &str) -> (GetModelInvocationJobOutput, Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..400 {
        let job = client
            .get_model_invocation_job()
            .job_identifier(arn)
            .send()
            .await
            .unwrap();
        let status = job.status.as_ref().map(|s| s.as_str().to_owned()).unwrap();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if is_final(job.status.as_ref()) {
            return (job, seen);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {arn} did not end; saw {seen:?}");
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_job_answers_every_record_and_writes_a_manifest() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    bucket("batch-complete").await;
    let records = [
        json!({"recordId": "CALL0000001", "modelInput": claude("Name a colour.")}),
        json!({"recordId": "CALL0000002", "modelInput": claude("Name a fruit.")}),
        json!({"modelInput": claude("Name a river.")}),
    ];
    put("batch-complete", "in/records.jsonl", jsonl(&records)).await;
    let arn = create(&client, "nightly-1", "batch-complete", "in/records.jsonl").await;
    let id = job_id(&arn);
    assert_eq!(
        arn,
        format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{id}")
    );
    assert!(
        id.len() == 12
            && id
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );

    let (job, seen) = wait(&client, &arn).await;
    assert_eq!(
        job.status,
        Some(ModelInvocationJobStatus::Completed),
        "{seen:?}"
    );
    assert!(seen.contains(&"InProgress".to_owned()), "{seen:?}");
    assert_eq!(job.job_name.as_deref(), Some("nightly-1"));
    assert_eq!(job.model_id, HAIKU);
    assert_eq!(job.role_arn, ROLE);
    assert_eq!(job.timeout_duration_in_hours, Some(168));
    assert!(job.end_time.is_some() && job.job_expiration_time.is_some());
    assert_eq!(job.total_record_count, Some(3));
    assert_eq!(job.processed_record_count, Some(3));
    assert_eq!(job.success_record_count, Some(3));
    assert_eq!(job.error_record_count, Some(0));

    let out = get("batch-complete", &format!("out/{id}/records.jsonl.out"))
        .await
        .expect("output file");
    let out = lines(&out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["recordId"], "CALL0000001");
    assert_eq!(out[2]["recordId"], "RECORD00003");
    for (line, record) in out.iter().zip(&records) {
        assert_eq!(line["modelInput"], record["modelInput"]);
        assert_eq!(line["modelOutput"]["type"], "message");
        assert!(
            line["modelOutput"]["content"][0]["text"].is_string(),
            "{line}"
        );
        assert!(line.get("error").is_none());
    }
    let manifest: Value = serde_json::from_str(
        &get("batch-complete", &format!("out/{id}/manifest.json.out"))
            .await
            .expect("manifest"),
    )
    .unwrap();
    assert_eq!(manifest["totalRecordCount"], 3);
    assert_eq!(manifest["processedRecordCount"], 3);
    assert_eq!(manifest["successRecordCount"], 3);
    assert_eq!(manifest["errorRecordCount"], 0);
    assert!(manifest["inputTokenCount"].as_u64().unwrap() > 0);
    assert!(manifest["outputTokenCount"].as_u64().unwrap() > 0);

    let calls: Value = reqwest::get(format!("{}/_emulator/calls", emulator.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        calls["operations"]["CreateModelInvocationJob"][HAIKU]["calls"],
        1
    );
    assert!(
        calls["operations"]["GetModelInvocationJob"][id]["calls"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn nova_and_llama_records_are_answered_in_their_own_bodies() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    bucket("batch-native").await;

    let nova = |text: &str| {
        json!({
            "schemaVersion": "messages-v1",
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.2},
        })
    };
    let records = [
        json!({"recordId": "NOVA0000001", "modelInput": nova("Name a colour.")}),
        json!({"recordId": "NOVA0000002", "modelInput": nova("Name a fruit.")}),
        // Claude's body is not Nova's: that record fails as InvokeModel would refuse it.
        json!({"recordId": "NOVA0000003", "modelInput": claude("Name a river.")}),
    ];
    put("batch-native", "nova/records.jsonl", jsonl(&records)).await;
    let arn = create_for(
        &client,
        NOVA,
        "nova-1",
        "batch-native",
        "nova/records.jsonl",
    )
    .await;
    let (job, seen) = wait(&client, &arn).await;
    assert_eq!(
        job.status,
        Some(ModelInvocationJobStatus::PartiallyCompleted),
        "{seen:?}"
    );
    assert_eq!(job.success_record_count, Some(2));
    let out = get(
        "batch-native",
        &format!("out/{}/records.jsonl.out", job_id(&arn)),
    )
    .await
    .expect("output file");
    let out = lines(&out);
    for line in &out[..2] {
        let output = &line["modelOutput"];
        assert_eq!(output["output"]["message"]["role"], "assistant", "{line}");
        assert!(output["output"]["message"]["content"][0]["text"].is_string());
        assert_eq!(output["stopReason"], "end_turn");
        assert!(output["usage"]["inputTokens"].as_u64().unwrap() > 0);
        assert!(output["usage"]["totalTokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(out[2]["error"]["errorCode"], 400);
    let message = out[2]["error"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("extraneous key [anthropic_version] is not permitted"),
        "{message}"
    );

    let prompt = |text: &str| {
        format!(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    };
    let records = [
        json!({"modelInput": {"prompt": prompt("Repeat: Blue."), "max_gen_len": 32}}),
        json!({"modelInput": {"prompt": prompt("Tell me a story."), "max_gen_len": 2, "top_p": 0.9}}),
    ];
    put("batch-native", "llama/records.jsonl", jsonl(&records)).await;
    let arn = create_for(
        &client,
        LLAMA,
        "llama-1",
        "batch-native",
        "llama/records.jsonl",
    )
    .await;
    let (job, seen) = wait(&client, &arn).await;
    assert_eq!(
        job.status,
        Some(ModelInvocationJobStatus::Completed),
        "{seen:?}"
    );
    let out = get(
        "batch-native",
        &format!("out/{}/records.jsonl.out", job_id(&arn)),
    )
    .await
    .expect("output file");
    let out = lines(&out);
    assert_eq!(out[0]["modelOutput"]["generation"], "Blue.");
    assert_eq!(out[0]["modelOutput"]["stop_reason"], "stop");
    assert!(
        out[0]["modelOutput"]["prompt_token_count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(out[1]["modelOutput"]["generation_token_count"], 2);
    assert_eq!(out[1]["modelOutput"]["stop_reason"], "length");
}

#[tokio::test]
async fn failed_records_make_a_partially_completed_job() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    let faults: Value = reqwest::Client::new()
        .post(format!("{}/_emulator/batch/faults", emulator.url()))
        .json(&json!({"fail_record_ids": ["r2"], "record_error_code": 429, "record_error_message": "Too many requests"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["faults"]["fail_record_ids"], json!(["r2"]));
    bucket("batch-partial").await;
    let no_max_tokens = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "messages": [{"role": "user", "content": "Hi"}],
    });
    let records = [
        json!({"recordId": "r1", "modelInput": claude("One.")}),
        json!({"recordId": "r2", "modelInput": claude("Two.")}),
        json!({"recordId": "r3", "modelInput": no_max_tokens}),
    ];
    put("batch-partial", "in/a.jsonl", jsonl(&records)).await;
    // A prefix: every .jsonl under it is read.
    let arn = create(&client, "partial", "batch-partial", "in/").await;
    let (job, _) = wait(&client, &arn).await;
    assert_eq!(
        job.status,
        Some(ModelInvocationJobStatus::PartiallyCompleted)
    );
    assert_eq!(job.success_record_count, Some(1));
    assert_eq!(job.error_record_count, Some(2));

    let out = lines(
        &get(
            "batch-partial",
            &format!("out/{}/a.jsonl.out", job_id(&arn)),
        )
        .await
        .unwrap(),
    );
    assert!(out[0]["modelOutput"].is_object());
    assert_eq!(
        out[1]["error"],
        json!({"errorCode": 429, "errorMessage": "Too many requests"})
    );
    assert!(out[1].get("modelOutput").is_none());
    assert_eq!(out[2]["error"]["errorCode"], 400);
    assert!(
        out[2]["error"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("required key [max_tokens] not found"),
        "{}",
        out[2]
    );
}

#[tokio::test]
async fn requests_breaking_bedrocks_constraints_are_refused() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    let attempt = |name: &'static str, model: &'static str, hours: Option<i32>| {
        client
            .create_model_invocation_job()
            .job_name(name)
            .role_arn(ROLE)
            .model_id(model)
            .set_timeout_duration_in_hours(hours)
            .input_data_config(input_config("s3://anything/in.jsonl"))
            .output_data_config(output_config("s3://anything/out/"))
            .send()
    };
    let e = attempt("bad name!", HAIKU, None).await.unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(
        e.message().unwrap().starts_with(
            "1 validation error detected: Value 'bad name!' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern:"
        ),
        "{:?}",
        e.message()
    );
    let e = attempt("ok", "acme.nothing-v1", None).await.unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert_eq!(
        e.message(),
        Some("The provided model identifier is invalid.")
    );
    let e = attempt("ok", "cohere.embed-english-v3", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(
        e.message()
            .unwrap()
            .contains("does not support batch inference")
    );
    let e = attempt("ok", HAIKU, Some(12)).await.unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(
        e.message()
            .unwrap()
            .contains("at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value greater than or equal to 24"),
        "{:?}",
        e.message()
    );
    let e = attempt("ok", HAIKU, Some(169)).await.unwrap_err();
    assert!(e.message().unwrap().contains("less than or equal to 168"));
    let listed = client.list_model_invocation_jobs().send().await.unwrap();
    assert!(listed.invocation_job_summaries().is_empty());
}

#[tokio::test]
async fn a_client_request_token_names_one_job() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    bucket("batch-token").await;
    put(
        "batch-token",
        "in.jsonl",
        jsonl(&[json!({"modelInput": claude("Hi.")})]),
    )
    .await;
    let send = || {
        client
            .create_model_invocation_job()
            .job_name("once")
            .role_arn(ROLE)
            .model_id(HAIKU)
            .client_request_token("retry-token-1")
            .input_data_config(input_config("s3://batch-token/in.jsonl"))
            .output_data_config(output_config("s3://batch-token/out"))
            .send()
    };
    let first = send().await.unwrap().job_arn;
    let second = send().await.unwrap().job_arn;
    assert_eq!(first, second);
    let job = client
        .get_model_invocation_job()
        .job_identifier(job_id(&first))
        .send()
        .await
        .unwrap();
    assert_eq!(job.client_request_token.as_deref(), Some("retry-token-1"));
    let listed = client.list_model_invocation_jobs().send().await.unwrap();
    assert_eq!(listed.invocation_job_summaries().len(), 1);
}

#[tokio::test]
async fn jobs_are_listed_by_status_and_name() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    bucket("batch-list").await;
    put(
        "batch-list",
        "in.jsonl",
        jsonl(&[json!({"modelInput": claude("Hi.")})]),
    )
    .await;
    let done = create(&client, "list-done", "batch-list", "in.jsonl").await;
    // Submit times are in milliseconds: the later job must be later by one at least.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let failed = create(&client, "list-failed", "batch-list", "missing.jsonl").await;
    let (done_job, _) = wait(&client, &done).await;
    wait(&client, &failed).await;

    let completed = client
        .list_model_invocation_jobs()
        .status_equals(ModelInvocationJobStatus::Completed)
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = completed
        .invocation_job_summaries()
        .iter()
        .map(|j| j.job_arn.as_str())
        .collect();
    assert_eq!(arns, [done.as_str()]);
    let named = client
        .list_model_invocation_jobs()
        .name_contains("failed")
        .send()
        .await
        .unwrap();
    assert_eq!(named.invocation_job_summaries().len(), 1);
    assert_eq!(named.invocation_job_summaries()[0].job_arn, failed);

    let first_page = client
        .list_model_invocation_jobs()
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(first_page.invocation_job_summaries().len(), 1);
    // Newest first by default.
    assert_eq!(first_page.invocation_job_summaries()[0].job_arn, failed);
    let token = first_page.next_token().unwrap();
    let second_page = client
        .list_model_invocation_jobs()
        .max_results(1)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second_page.invocation_job_summaries()[0].job_arn, done);
    assert!(second_page.next_token().is_none());

    let ascending = client
        .list_model_invocation_jobs()
        .sort_order(SortOrder::Ascending)
        .send()
        .await
        .unwrap();
    assert_eq!(ascending.invocation_job_summaries()[0].job_arn, done);
    let later = client
        .list_model_invocation_jobs()
        .submit_time_after(done_job.submit_time)
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = later
        .invocation_job_summaries()
        .iter()
        .map(|j| j.job_arn.as_str())
        .collect();
    assert_eq!(arns, [failed.as_str()]);

    let e = client
        .list_model_invocation_jobs()
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
}

#[tokio::test]
async fn a_stopped_job_stops_and_stays_stopped() {
    let emulator = emulator("").await;
    emulator.state().config_mut().batch.step_ms = 300;
    let client = client(&emulator);
    bucket("batch-stop").await;
    put(
        "batch-stop",
        "in.jsonl",
        jsonl(&[json!({"modelInput": claude("Hi.")})]),
    )
    .await;
    let arn = create(&client, "to-stop", "batch-stop", "in.jsonl").await;
    client
        .stop_model_invocation_job()
        .job_identifier(&arn)
        .send()
        .await
        .unwrap();
    let job = client
        .get_model_invocation_job()
        .job_identifier(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Stopping));
    let (job, _) = wait(&client, &arn).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Stopped));
    assert!(job.end_time.is_some());
    assert!(
        get(
            "batch-stop",
            &format!("out/{}/manifest.json.out", job_id(&arn))
        )
        .await
        .is_none()
    );
    let e = client
        .stop_model_invocation_job()
        .job_identifier(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
    assert!(
        e.message().unwrap().contains("Stopped"),
        "{:?}",
        e.message()
    );
}

#[tokio::test]
async fn unknown_jobs_are_not_found() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    let e = client
        .get_model_invocation_job()
        .job_identifier("abcdef123456")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ResourceNotFoundException"));
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    let e = client
        .stop_model_invocation_job()
        .job_identifier("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ResourceNotFoundException"));
    let e = client
        .get_model_invocation_job()
        .job_identifier("Not-A-Job")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationException"));
}

#[tokio::test]
async fn an_unreadable_input_fails_the_job() {
    let emulator = emulator("").await;
    let client = client(&emulator);
    bucket("batch-bad").await;
    put(
        "batch-bad",
        "in/broken.jsonl",
        format!("{}\nnot json\n", json!({"modelInput": claude("Hi.")})),
    )
    .await;
    let arn = create(&client, "broken", "batch-bad", "in/broken.jsonl").await;
    let (job, seen) = wait(&client, &arn).await;
    assert_eq!(
        job.status,
        Some(ModelInvocationJobStatus::Failed),
        "{seen:?}"
    );
    assert_eq!(
        job.message.as_deref(),
        Some("Invalid JSON on line 2 of s3://batch-bad/in/broken.jsonl.")
    );
    assert!(seen.contains(&"Validating".to_owned()), "{seen:?}");

    let arn = create(&client, "empty", "batch-bad", "nothing-here/").await;
    let (job, _) = wait(&client, &arn).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Failed));
    assert!(job.message.unwrap().contains("No .jsonl input files"));
}

#[tokio::test]
async fn job_faults_fail_or_expire_jobs_and_reset_forgets_jobs() {
    let emulator = emulator("  faults:\n    fail_next_jobs: 1\n    job_failure_message: capacity gone\n    expire_next_jobs: 1\n").await;
    let client = client(&emulator);
    bucket("batch-faults").await;
    put(
        "batch-faults",
        "in.jsonl",
        jsonl(&[json!({"modelInput": claude("Hi.")})]),
    )
    .await;
    let failed = create(&client, "f1", "batch-faults", "in.jsonl").await;
    let (job, _) = wait(&client, &failed).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Failed));
    assert_eq!(job.message.as_deref(), Some("capacity gone"));
    let expired = create(&client, "f2", "batch-faults", "in.jsonl").await;
    let (job, _) = wait(&client, &expired).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Expired));

    reqwest::Client::new()
        .post(format!("{}/_emulator/reset", emulator.url()))
        .send()
        .await
        .unwrap();
    let listed = client.list_model_invocation_jobs().send().await.unwrap();
    assert!(listed.invocation_job_summaries().is_empty());
    // Reset brings the configured faults back: the next job fails again.
    let again = create(&client, "f3", "batch-faults", "in.jsonl").await;
    let (job, _) = wait(&client, &again).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Failed));
}

#[tokio::test]
async fn a_job_below_the_minimum_record_count_fails() {
    let emulator = emulator("  min_records: 2\n").await;
    let client = client(&emulator);
    bucket("batch-minimum").await;
    put(
        "batch-minimum",
        "in.jsonl",
        jsonl(&[json!({"modelInput": claude("Hi.")})]),
    )
    .await;
    let arn = create(&client, "too-small", "batch-minimum", "in.jsonl").await;
    let (job, _) = wait(&client, &arn).await;
    assert_eq!(job.status, Some(ModelInvocationJobStatus::Failed));
    assert_eq!(
        job.message.as_deref(),
        Some("The job has 1 records; a batch inference job needs at least 2.")
    );
}
