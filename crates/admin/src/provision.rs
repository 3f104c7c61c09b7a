//! Creates a stage's resources the way template.yaml declares them: the cache, usage and
//! jobs tables (on-demand, TTL on `expires_at`), the batch queue with its DLQ (redrive),
//! the results and ledger-spill queues, the alerts topic, and the audit trail (its bucket
//! under Object Lock, its Firehose stream, its spill queue). Used by `quarry dev` and the
//! tests against moto; idempotent, so it can run against a stack that already has them.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use quarry_aws::queues::{QueueError, queue_arn};
use quarry_aws::sdk::describe;
use quarry_aws::settings::{CACHE_TENANT_INDEX, Settings};

/// Receives before a batch message moves to the DLQ (the template's maxReceiveCount).
pub const MAX_RECEIVE_COUNT: u32 = 3;
/// The batch queue's visibility timeout: 6 x the worker's 60 s timeout, as AWS advises for
/// SQS event sources.
pub const BATCH_VISIBILITY_TIMEOUT_SECS: u32 = 360;

#[derive(Debug, thiserror::Error)]
#[error("cannot provision {resource}: {message}")]
pub struct ProvisionError {
    pub resource: String,
    pub message: String,
}

impl From<QueueError> for ProvisionError {
    fn from(e: QueueError) -> Self {
        Self {
            resource: e.queue,
            message: e.message,
        }
    }
}

fn fail(resource: &str, e: &(dyn std::error::Error + 'static)) -> ProvisionError {
    ProvisionError {
        resource: resource.to_owned(),
        message: describe(e),
    }
}

/// What was created, with the URLs and ARNs later steps need.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub batch_queue_url: String,
    pub batch_dlq_url: String,
    pub results_queue_url: String,
    pub spill_queue_url: String,
    pub alerts_topic_arn: String,
    pub alarms_topic_arn: String,
}

/// Tables: (name, has sort key, has the tenant index, streams new images).
fn tables(s: &Settings) -> [(&str, bool, bool, bool); 3] {
    [
        (&s.cache_table, false, true, false),
        // The ledger's markers reach the aggregation through the stream.
        (&s.usage_table, true, false, true),
        (&s.jobs_table, true, false, false),
    ]
}

pub async fn provision(
    sdk: &SdkConfig,
    settings: &Settings,
) -> Result<Provisioned, ProvisionError> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for (name, with_sort_key, tenant_index, streamed) in tables(settings) {
        create_table(&ddb, name, with_sort_key, tenant_index).await?;
        if streamed {
            stream_new_images(&ddb, name).await?;
        }
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq_url = create_queue(&sqs, &settings.batch_dlq, HashMap::new()).await?;
    let dlq_arn = queue_arn(&sqs, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
    });
    let batch_url = create_queue(
        &sqs,
        &settings.batch_queue,
        HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                BATCH_VISIBILITY_TIMEOUT_SECS.to_string(),
            ),
        ]),
    )
    .await?;
    let results_url = create_queue(&sqs, &settings.results_queue, HashMap::new()).await?;
    let spill_dlq_url = create_queue(
        &sqs,
        &format!("{}-dlq", settings.spill_queue),
        HashMap::new(),
    )
    .await?;
    let spill_dlq_arn = queue_arn(&sqs, &spill_dlq_url).await?;
    let spill_redrive = serde_json::json!({
        "deadLetterTargetArn": spill_dlq_arn,
        "maxReceiveCount": "10",
    });
    let spill_url = create_queue(
        &sqs,
        &settings.spill_queue,
        HashMap::from([(QueueAttributeName::RedrivePolicy, spill_redrive.to_string())]),
    )
    .await?;
    create_bucket(sdk, &settings.batch_bucket).await?;
    provision_audit(sdk, settings, &sqs).await?;
    let sns = aws_sdk_sns::Client::new(sdk);
    let mut topics = Vec::new();
    for name in [&settings.alerts_topic, &settings.alarms_topic] {
        let out = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .map_err(|e| fail(name, &e))?;
        topics.push(out.topic_arn().unwrap_or_default().to_owned());
    }
    Ok(Provisioned {
        batch_queue_url: batch_url,
        batch_dlq_url: dlq_url,
        results_queue_url: results_url,
        spill_queue_url: spill_url,
        alerts_topic_arn: topics.first().cloned().unwrap_or_default(),
        alarms_topic_arn: topics.get(1).cloned().unwrap_or_default(),
    })
}

/// The audit trail: the spill queue (with its DLQ), the bucket with Object Lock in
/// compliance mode (one day here; the template's retention is a parameter), and the
/// delivery stream into it. Locally the stream uses Firehose's default time layout
/// (`audit/YYYY/MM/DD/HH/`): moto does not apply dynamic partitioning, and `quarry audit`
/// reads both layouts.
async fn provision_audit(
    sdk: &SdkConfig,
    settings: &Settings,
    sqs: &aws_sdk_sqs::Client,
) -> Result<(), ProvisionError> {
    let dlq_url = create_queue(
        sqs,
        &format!("{}-dlq", settings.audit_spill_queue),
        HashMap::new(),
    )
    .await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": queue_arn(sqs, &dlq_url).await?,
        "maxReceiveCount": "10",
    });
    create_queue(
        sqs,
        &settings.audit_spill_queue,
        HashMap::from([(QueueAttributeName::RedrivePolicy, redrive.to_string())]),
    )
    .await?;
    let bucket = &settings.audit_bucket;
    let s3 = s3_client(sdk);
    match s3
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
        Err(e) => return Err(fail(bucket, &e)),
    }
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    s3.put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| fail(bucket, &e))?;
    let firehose = aws_sdk_firehose::Client::new(sdk);
    let destination = aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::123456789012:role/quarry-audit-delivery")
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .prefix("audit/")
        .build()
        .map_err(|e| fail(&settings.audit_stream, &e))?;
    match firehose
        .create_delivery_stream()
        .delivery_stream_name(&settings.audit_stream)
        .delivery_stream_type(aws_sdk_firehose::types::DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(destination)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(fail(&settings.audit_stream, &e)),
    }
}

/// S3 with path-style addressing (what a local endpoint needs; AWS takes it too).
fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// The bulk jobs' bucket (an existing one of ours is kept).
async fn create_bucket(sdk: &SdkConfig, name: &str) -> Result<(), ProvisionError> {
    let s3 = s3_client(sdk);
    match s3.create_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(e) => Err(fail(name, &e)),
    }
}

/// Turns on the table's stream of new images, unless it is on.
async fn stream_new_images(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), ProvisionError> {
    let table = ddb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| fail(name, &e))?;
    let on = table
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if on {
        return Ok(());
    }
    let spec = aws_sdk_dynamodb::types::StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewImage)
        .build()
        .map_err(|e| fail(name, &e))?;
    ddb.update_table()
        .table_name(name)
        .stream_specification(spec)
        .send()
        .await
        .map_err(|e| fail(name, &e))?;
    Ok(())
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    with_sort_key: bool,
    tenant_index: bool,
) -> Result<(), ProvisionError> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| fail(name, &e))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(|e| fail(name, &e))
    };
    let mut create = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .key_schema(key("pk", KeyType::Hash)?);
    if with_sort_key {
        create = create
            .attribute_definitions(attr("sk")?)
            .key_schema(key("sk", KeyType::Range)?);
    }
    if tenant_index {
        let index = GlobalSecondaryIndex::builder()
            .index_name(CACHE_TENANT_INDEX)
            .key_schema(key("tenant", KeyType::Hash)?)
            .key_schema(key("prompt", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(|e| fail(name, &e))?;
        create = create
            .attribute_definitions(attr("tenant")?)
            .attribute_definitions(attr("prompt")?)
            .global_secondary_indexes(index);
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(e) => return Err(fail(name, &e)),
    }
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| fail(name, &e))?,
        )
        .send()
        .await
        .map_err(|e| fail(name, &e))?;
    Ok(())
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, ProvisionError> {
    let out = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes((!attributes.is_empty()).then_some(attributes))
        .send()
        .await
        .map_err(|e| fail(name, &e))?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}
