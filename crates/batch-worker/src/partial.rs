//! SQS partial batch responses (`ReportBatchItemFailures`) as a generic helper: each
//! message runs in its own span, concurrently up to a bound, and only the messages whose
//! processing says "retry" are reported, so only they return to the queue.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::Instrument;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (succeeded, or failed for good and recorded): delete it.
    Ack,
    /// Failed for now: leave it on the queue for redelivery.
    Retry(String),
}

/// Runs `process` over the batch with at most `concurrency` messages in flight.
pub async fn process_batch<F, Fut>(
    event: SqsEvent,
    concurrency: usize,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let results: Vec<(String, Disposition)> = futures::stream::iter(event.records)
        .map(|message| {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("sqs_message", message_id = %id);
            let fut = process(message);
            async move { (id, fut.await) }.instrument(span)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, disposition) in results {
        if let Disposition::Retry(reason) = disposition {
            tracing::info!(message_id = %id, %reason, "message returned to the queue");
            response.add_failure(id);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test]
    async fn only_retries_are_reported() {
        let mut event = SqsEvent::default();
        event.records = vec![
            message("a", "ok"),
            message("b", "retry"),
            message("c", "poison"),
        ];
        let response = process_batch(event, 2, |m| async move {
            match m.body.as_deref() {
                Some("retry") => Disposition::Retry("throttled".into()),
                _ => Disposition::Ack,
            }
        })
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(ids, ["b"]);
    }
}
