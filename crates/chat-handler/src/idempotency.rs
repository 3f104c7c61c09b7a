//! `Idempotency-Key`: a retried non-streaming request with the same key and body gets the
//! first response, without a second model call or a second charge.
//!
//! ## Overview
//!
//! The key is [`claim`]ed (per tenant, with the SHA-256 of the body) before the answer is
//! computed, and the [`Ticket`] the claim hands out is settled after it: an answer or a
//! definitive error becomes what every retry within the window gets; a transient failure
//! frees the key so the retry runs. A retry while the first request still runs is told to
//! wait (409); the same key with another body is a client error (422). Without the store,
//! a retry could be charged twice, so the request is refused (503) rather than guessed at.
//!
//! A stream cannot be replayed: a streaming request with a key is refused.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use quarry_core::Error;
use quarry_core::cache::Claim as StoreClaim;
use quarry_http::ApiError;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::state::AppState;

const HEADER: &str = "idempotency-key";

/// How a request with (or without) a key goes on.
pub enum Claim {
    /// Answer it; settle the ticket, if there is one, with the outcome.
    Run(Option<Ticket>),
    /// A retry: this is the first request's response.
    Replay(Response),
}

/// A claimed key, to settle once the request has its outcome.
#[must_use = "a claimed key stays in progress until it is settled"]
pub struct Ticket {
    key: String,
}

/// Streams are not replayable: a key on a streaming request is a client error.
pub fn refuse_on_stream(headers: &HeaderMap) -> Result<(), Error> {
    if headers.contains_key(HEADER) {
        return Err(Error::bad_request(
            "Idempotency-Key",
            "Idempotency-Key applies to non-streaming requests; retry a stream without it",
        ));
    }
    Ok(())
}

/// The request's key: 1 to 255 visible ASCII characters. One that cannot be read is refused,
/// not ignored: the client believes its retries are safe.
fn key(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key)),
        _ => Err(Error::bad_request(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// Claims the request's key, if it has one, for `body`.
pub async fn claim(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Claim, Error> {
    let Some(key) = key(headers)? else {
        return Ok(Claim::Run(None));
    };
    let body_hash = hex::encode(Sha256::digest(body));
    let claimed = state
        .idempotency
        .claim(tenant, key, &body_hash, state.options.idempotency_window)
        .await;
    match claimed {
        Ok(StoreClaim::Fresh) => Ok(Claim::Run(Some(Ticket {
            key: key.to_owned(),
        }))),
        Ok(StoreClaim::Replay { status, body }) => Ok(Claim::Replay(replay(status, body))),
        Ok(StoreClaim::InProgress) => Err(Error::InProgress(
            "a request with this Idempotency-Key is still running; retry shortly".into(),
        )),
        Ok(StoreClaim::Mismatch) => Err(Error::IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body".into(),
        )),
        Err(e) => {
            tracing::error!(error = %e, "idempotency store unavailable");
            Err(Error::Dependency(e))
        }
    }
}

fn replay(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

impl Ticket {
    /// Records the outcome for the retries: the response body of an answer, or the error.
    pub async fn settle(
        self,
        state: &AppState,
        tenant: &str,
        outcome: Result<&Value, &Error>,
        request_id: &str,
    ) {
        let store = &state.idempotency;
        let window = state.options.idempotency_window;
        let stored = match outcome {
            Ok(body) => store.complete(tenant, &self.key, 200, body, window).await,
            // A transient failure frees the key for a retry; a definitive one is the answer.
            Err(e) if e.is_retryable() => store.abandon(tenant, &self.key).await,
            Err(e) => match serde_json::to_value(ApiError::new(e.clone(), request_id).body()) {
                Ok(body) => {
                    store
                        .complete(tenant, &self.key, e.status_code(), &body, window)
                        .await
                }
                Err(_) => store.abandon(tenant, &self.key).await,
            },
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "idempotency record not settled; a retry may run again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert_eq!(key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(key(&headers(b"order-42")).unwrap(), Some("order-42"));
        assert!(key(&headers(b"")).is_err());
        assert!(key(&headers("x".repeat(256).as_bytes())).is_err());
        assert!(key(&headers("café".as_bytes())).is_err());
    }

    #[test]
    fn streams_take_no_key() {
        assert!(refuse_on_stream(&HeaderMap::new()).is_ok());
        assert_eq!(
            refuse_on_stream(&headers(b"k")).unwrap_err().field(),
            Some("Idempotency-Key")
        );
    }
}
