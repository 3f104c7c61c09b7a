//! SQS queue lookups: a queue's URL from its name (settings hold names or URLs) and its ARN.
//! The ledger's spill path resolves its queue at runtime; the CLI and the tooling use the
//! same lookups. And the two steps every spill replay takes: receive a batch, delete what was
//! replayed.

use aws_sdk_sqs::types::QueueAttributeName;

use crate::sdk::describe;

#[derive(Debug, thiserror::Error)]
#[error("cannot look up queue {queue}: {message}")]
pub struct QueueError {
    pub queue: String,
    pub message: String,
}

/// A queue's URL: the value itself when it is one, else looked up by name.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<String, QueueError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_owned());
    }
    let out = sqs
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(|e| QueueError {
            queue: name_or_url.to_owned(),
            message: describe(&e),
        })?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}

/// A queue's ARN, from its URL.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, QueueError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| QueueError {
            queue: url.to_owned(),
            message: describe(&e),
        })?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| QueueError {
            queue: url.to_owned(),
            message: "queue has no ARN".into(),
        })
}

/// Up to 10 messages of a spill queue, hidden for a minute while they are replayed (what is
/// not deleted by then comes back).
pub async fn receive_spilled(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Vec<aws_sdk_sqs::types::Message>, QueueError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(60)
        .send()
        .await
        .map_err(|e| QueueError {
            queue: url.to_owned(),
            message: describe(&e),
        })?;
    Ok(out.messages.unwrap_or_default())
}

/// Deletes a replayed message. A failed delete only means it comes back, and its replay is
/// idempotent: ignored.
pub async fn delete_replayed(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    m: &aws_sdk_sqs::types::Message,
) {
    if let Some(handle) = m.receipt_handle() {
        let _ = sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(handle)
            .send()
            .await;
    }
}
