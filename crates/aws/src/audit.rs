//! The audit trail on Amazon Data Firehose, with a durable spill.
//!
//! Each record is one PutRecord of one JSON line; Firehose buffers them into the audit
//! bucket (Object Lock, SSE-KMS) under `audit/tenant=T/date=D/`, so a request never waits on
//! S3. A record Firehose refuses or cannot take goes to the spill queue (SQS), which
//! cost-alarm's schedule replays with PutRecordBatch ([`FirehoseAudit::replay_spill`]);
//! its depth is the `AuditSpillWaiting` metric.
//!
//! Size limits: Firehose takes records up to 1,000 KiB and SQS messages up to 256 KiB. A
//! `full` record over the limit keeps every field but its `input` and `output`, which are
//! cut to fit and marked `truncated` (their SHA-256 still names the whole text).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use quarry_core::audit::AuditRecord;
use quarry_core::ports::{AuditTrail, Dependency, StoreError};

use crate::sdk::describe;

const WHAT: &str = "audit trail";
const SPILL: &str = "audit spill";
/// Firehose's record limit (1,000 KiB), less room for the JSON around the texts.
const FIREHOSE_MAX: usize = 1_000 * 1024 - 1024;
/// SQS's message limit (256 KiB), less room for the JSON around the texts.
const SQS_MAX: usize = 256 * 1024 - 1024;

#[derive(Clone, Debug)]
pub struct FirehoseAudit {
    firehose: Client,
    stream: String,
    sqs: aws_sdk_sqs::Client,
    spill_queue: String,
}

/// The record as one JSON line of at most `max` bytes: `input` and `output` are cut (at a
/// character boundary, the longer first) when the whole would not fit.
pub fn line_within(record: &AuditRecord, max: usize) -> Vec<u8> {
    let line = record.to_line();
    if line.len() <= max {
        return line;
    }
    let mut cut = record.clone();
    cut.truncated = true;
    let over = line.len() - max;
    let mut texts: Vec<&mut Option<String>> = vec![&mut cut.input, &mut cut.output];
    texts.sort_by_key(|t| std::cmp::Reverse(t.as_ref().map_or(0, String::len)));
    let mut left = over;
    for text in texts {
        let Some(t) = text.as_mut() else { continue };
        if left == 0 {
            break;
        }
        // JSON escaping can make a character longer than its bytes: cut generously.
        let keep = t.len().saturating_sub(left * 2);
        let mut at = keep;
        while !t.is_char_boundary(at) {
            at -= 1;
        }
        left = left.saturating_sub(t.len() - at);
        t.truncate(at);
    }
    let mut value = serde_json::to_value(&cut).unwrap_or_default();
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    if line.len() + 1 > max {
        // Still too long (texts of escapes): keep the metadata only.
        value["input"] = serde_json::Value::Null;
        value["output"] = serde_json::Value::Null;
        line = serde_json::to_vec(&value).unwrap_or_default();
    }
    line.push(b'\n');
    line
}

impl FirehoseAudit {
    /// `stream`: the delivery stream's name; `spill_queue`: the spill queue's name or URL.
    pub fn new(sdk: &SdkConfig, stream: &str, spill_queue: &str) -> Self {
        Self {
            firehose: Client::new(sdk),
            stream: stream.to_owned(),
            sqs: aws_sdk_sqs::Client::new(sdk),
            spill_queue: spill_queue.to_owned(),
        }
    }

    async fn put(&self, line: Vec<u8>) -> Result<(), StoreError> {
        self.firehose
            .put_record()
            .delivery_stream_name(&self.stream)
            .record(
                Record::builder()
                    .data(Blob::new(line))
                    .build()
                    .map_err(|e| {
                        StoreError::unavailable(Dependency::Firehose, WHAT, e.to_string())
                    })?,
            )
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Firehose, WHAT, describe(&e)))?;
        Ok(())
    }

    async fn spill_url(&self) -> Result<String, StoreError> {
        crate::queues::queue_url(&self.sqs, &self.spill_queue)
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))
    }

    async fn spill(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let url = self.spill_url().await?;
        let mut line = line_within(record, SQS_MAX);
        line.pop();
        let body = String::from_utf8(line)
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, describe(&e)))?;
        Ok(())
    }

    /// Replays spilled records into Firehose (up to `max_batches` receives of 10); returns
    /// (delivered, left). Only delivered records are deleted from the queue; the rest come
    /// back after their visibility timeout (and an unreadable one reaches the queue's DLQ).
    pub async fn replay_spill(&self, max_batches: usize) -> Result<(usize, usize), StoreError> {
        let url = self.spill_url().await?;
        let (mut delivered, mut left) = (0, 0);
        for _ in 0..max_batches {
            let messages = crate::queues::receive_spilled(&self.sqs, &url)
                .await
                .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, e.to_string()))?;
            if messages.is_empty() {
                break;
            }
            // Each message with its record, so a record's outcome is its message's.
            let mut batch = Vec::new();
            for m in &messages {
                let record = m
                    .body()
                    .filter(|b| serde_json::from_str::<serde_json::Value>(b).is_ok())
                    .and_then(|body| {
                        Record::builder()
                            .data(Blob::new(format!("{body}\n")))
                            .build()
                            .ok()
                    });
                match record {
                    Some(record) => batch.push((m, record)),
                    None => {
                        tracing::error!(message_id = ?m.message_id(), "unreadable message in the audit spill");
                        left += 1;
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            let records = batch.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>();
            let result = match self
                .firehose
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(records))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "audit spill not replayed yet: Firehose refused the batch");
                    left += batch.len();
                    continue;
                }
            };
            // Each record's outcome is at its index: only the ones without an error are
            // delivered.
            let responses = result.request_responses();
            for (i, (m, _)) in batch.iter().enumerate() {
                let ok = responses.get(i).is_some_and(|r| r.error_code().is_none());
                if !ok {
                    left += 1;
                    continue;
                }
                delivered += 1;
                crate::queues::delete_replayed(&self.sqs, &url, m).await;
            }
        }
        Ok((delivered, left))
    }

    /// Records waiting in the spill queue (SQS's approximate count).
    pub async fn waiting(&self) -> Result<u64, StoreError> {
        let url = self.spill_url().await?;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Sqs, SPILL, describe(&e)))?;
        Ok(out
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

#[async_trait]
impl AuditTrail for FirehoseAudit {
    async fn record(&self, record: &AuditRecord) -> Result<(), StoreError> {
        match self.put(line_within(record, FIREHOSE_MAX)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, request_id = %record.request_id, "audit delivery failed; spilling the record");
                metrics::counter!("AuditSpills").increment(1);
                self.spill(record).await.map_err(|spill| {
                    StoreError::unavailable(
                        Dependency::Firehose,
                        WHAT,
                        format!("{e}; and the spill failed: {spill}"),
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_core::audit::AuditLevel;

    fn record(input: &str, output: &str) -> AuditRecord {
        AuditRecord {
            schema_version: 1,
            request_id: "r".into(),
            tenant: "t".into(),
            time: "2026-11-30T00:00:00.000Z".into(),
            level: AuditLevel::Full,
            key: None,
            prompt: None,
            model: "m".into(),
            base_model: "m".into(),
            region: None,
            params: "{}".into(),
            usage: Default::default(),
            cost_usd: None,
            cached: false,
            fallbacks: vec![],
            guardrails: "{}".into(),
            grounding: None,
            sources: vec![],
            input_sha256: "a".into(),
            output_sha256: "b".into(),
            input: Some(input.into()),
            output: Some(output.into()),
            variables: None,
            truncated: false,
        }
    }

    #[test]
    fn oversized_records_are_cut_to_fit_and_say_so() {
        let small = record("hi", "there");
        assert_eq!(line_within(&small, SQS_MAX), small.to_line());
        for text in [
            "é".repeat(300_000),
            "\"".repeat(300_000),
            "x".repeat(2_000_000),
        ] {
            let big = record(&text, "answer");
            let line = line_within(&big, SQS_MAX);
            assert!(line.len() <= SQS_MAX, "{}", line.len());
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["truncated"], true);
            assert_eq!(v["request_id"], "r");
            assert_eq!(v["input_sha256"], "a");
        }
    }
}
