//! A local SQS event source mapping, for `quarry dev` and tests: it receives from the batch
//! queue, hands batches to the worker as Lambda would (an `SqsEvent`), deletes what the
//! worker acknowledged and leaves the reported failures on the queue, where they return after
//! the visibility timeout and move to the DLQ after maxReceiveCount, as in AWS.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use quarry_aws::sdk::describe;
use tokio::time::Instant;

use crate::Worker;

#[derive(Debug, Clone)]
pub struct MappingOptions {
    /// Messages per batch (SQS allows at most 10 per receive).
    pub batch_size: i32,
    /// Visibility timeout of received messages, in seconds.
    pub visibility_timeout: i32,
    /// The function timeout: each batch's deadline.
    pub function_timeout: Duration,
    /// Long-poll wait of each receive, in seconds.
    pub wait_seconds: i32,
}

impl Default for MappingOptions {
    fn default() -> Self {
        Self {
            batch_size: 10,
            visibility_timeout: 30,
            function_timeout: Duration::from_secs(60),
            wait_seconds: 1,
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub acknowledged: usize,
    pub failed: usize,
}

pub struct EventSourceMapping {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    worker: Arc<Worker>,
    options: MappingOptions,
}

impl EventSourceMapping {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        queue_arn: String,
        worker: Arc<Worker>,
        options: MappingOptions,
    ) -> Self {
        Self {
            sqs,
            queue_url,
            queue_arn,
            worker,
            options,
        }
    }

    /// One receive, one invocation, one delete.
    pub async fn poll_once(&self) -> Result<PollOutcome, String> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.options.batch_size.clamp(1, 10))
            .visibility_timeout(self.options.visibility_timeout)
            .wait_time_seconds(self.options.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let mut event = SqsEvent::default();
        for m in messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(self.queue_arn.clone());
            record.aws_region = Some("us-east-1".into());
            if let Some(attrs) = m.attributes() {
                record.attributes = attrs
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect();
            }
            event.records.push(record);
        }
        let handles: Vec<(String, String)> = messages
            .iter()
            .filter_map(|m| Some((m.message_id()?.to_owned(), m.receipt_handle()?.to_owned())))
            .collect();
        let deadline = Instant::now() + self.options.function_timeout;
        let response = self.worker.handle(event, deadline).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = handles
            .iter()
            .filter(|(id, _)| !failed.contains(&id.as_str()))
            .enumerate()
            .filter_map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let acknowledged = entries.len();
        if !entries.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| describe(&e))?;
        }
        Ok(PollOutcome {
            received: handles.len(),
            acknowledged,
            failed: failed.len(),
        })
    }

    /// Polls until the task is dropped.
    pub async fn run(self) {
        loop {
            match self.poll_once().await {
                Ok(o) if o.received > 0 => {
                    tracing::info!(
                        received = o.received,
                        acknowledged = o.acknowledged,
                        failed = o.failed,
                        "batch processed"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "batch queue poll failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
}
