//! Bulk jobs on AWS: Bedrock's batch inference control plane (the [`BulkInference`] port,
//! aws-sdk-bedrock) and the batch bucket (the [`BatchFiles`] port, aws-sdk-s3). Endpoints
//! come from the SDK's standard variables (`AWS_ENDPOINT_URL_BEDROCK`, `..._S3`).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types as bt;
use aws_sdk_s3::primitives::ByteStream;
use quarry_core::bulk::{BulkState, BulkStatus, BulkSubmission, job_id_of, split_s3_uri};
use quarry_core::ports::{BatchFiles, BulkInference, Dependency, StoreError, StoreErrorKind};

use crate::sdk::describe;

/// Bedrock's batch inference jobs.
#[derive(Clone, Debug)]
pub struct BedrockBulk {
    client: aws_sdk_bedrock::Client,
}

impl BedrockBulk {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: aws_sdk_bedrock::Client::new(sdk),
        }
    }
}

fn bedrock_error(code: Option<&str>, detail: String) -> StoreError {
    let kind = match code.unwrap_or("") {
        "ValidationException"
        | "ResourceNotFoundException"
        | "AccessDeniedException"
        | "ServiceQuotaExceededException" => StoreErrorKind::Invalid,
        "ConflictException" => StoreErrorKind::Conflict,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, Dependency::Bedrock, "batch inference", detail)
}

fn invalid(detail: impl std::fmt::Display) -> StoreError {
    StoreError::invalid(Dependency::Bedrock, "batch inference", detail.to_string())
}

#[async_trait]
impl BulkInference for BedrockBulk {
    async fn submit(&self, job: &BulkSubmission) -> Result<String, StoreError> {
        let input = bt::ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(&job.input_uri)
            .s3_input_format(bt::S3InputFormat::Jsonl)
            .build()
            .map_err(invalid)?;
        let output = bt::ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(&job.output_uri)
            .build()
            .map_err(invalid)?;
        let out = self
            .client
            .create_model_invocation_job()
            .job_name(&job.job_name)
            .role_arn(&job.role_arn)
            .client_request_token(&job.client_token)
            .model_id(&job.model_id)
            .input_data_config(bt::ModelInvocationJobInputDataConfig::S3InputDataConfig(
                input,
            ))
            .output_data_config(bt::ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
                output,
            ))
            .timeout_duration_in_hours(i32::try_from(job.timeout_hours).unwrap_or(168))
            .send()
            .await
            .map_err(|e| bedrock_error(e.code(), describe(&e)))?;
        Ok(out.job_arn().to_owned())
    }

    async fn status(&self, job_arn: &str) -> Result<BulkStatus, StoreError> {
        let out = self
            .client
            .get_model_invocation_job()
            .job_identifier(job_arn)
            .send()
            .await
            .map_err(|e| bedrock_error(e.code(), describe(&e)))?;
        let raw = out.status().map(|s| s.as_str()).unwrap_or("Submitted");
        let state = BulkState::from_bedrock(raw)
            .ok_or_else(|| invalid(format!("unknown batch job status '{raw}'")))?;
        let output_uri = out
            .output_data_config()
            .and_then(|c| c.as_s3_output_data_config().ok())
            .map(|c| c.s3_uri().to_owned())
            .unwrap_or_default();
        let base = if output_uri.ends_with('/') {
            output_uri
        } else {
            format!("{output_uri}/")
        };
        Ok(BulkStatus {
            job_arn: out.job_arn().to_owned(),
            state,
            message: out.message().map(str::to_owned),
            output_prefix: format!("{base}{}/", job_id_of(out.job_arn())),
        })
    }

    async fn stop(&self, job_arn: &str) -> Result<(), StoreError> {
        self.client
            .stop_model_invocation_job()
            .job_identifier(job_arn)
            .send()
            .await
            .map_err(|e| bedrock_error(e.code(), describe(&e)))?;
        Ok(())
    }
}

/// The batch bucket.
#[derive(Clone, Debug)]
pub struct S3BatchFiles {
    client: aws_sdk_s3::Client,
}

impl S3BatchFiles {
    pub fn new(sdk: &SdkConfig) -> Self {
        // Path-style addressing: local S3 endpoints (moto) serve `host/bucket/key`.
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }
}

fn s3_error(detail: String) -> StoreError {
    StoreError::unavailable(Dependency::S3, "batch bucket", detail)
}

fn location(uri: &str) -> Result<(&str, &str), StoreError> {
    split_s3_uri(uri).ok_or_else(|| {
        StoreError::invalid(
            Dependency::S3,
            "batch bucket",
            format!("not an s3:// URI: {uri}"),
        )
    })
}

#[async_trait]
impl BatchFiles for S3BatchFiles {
    async fn put(&self, uri: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let (bucket, key) = location(uri)?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error(describe(&e)))?;
        Ok(())
    }

    async fn get(&self, uri: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (bucket, key) = location(uri)?;
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error(describe(&e))),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| s3_error(e.to_string()))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn list(&self, prefix_uri: &str) -> Result<Vec<String>, StoreError> {
        let (bucket, prefix) = location(prefix_uri)?;
        let mut uris = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error(describe(&e)))?;
            uris.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| format!("s3://{bucket}/{k}")),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(uris)
    }
}
