//! The first steps of every route: request facts, body (bounded), caller.

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use lambda_http::request::RequestContext;
use quarry_core::Error;
use quarry_core::tenancy::Caller;
use quarry_http::{RequestMeta, authenticate};

use crate::state::AppState;

/// A request whose caller is known and whose body has been read.
pub struct Incoming {
    pub meta: RequestMeta,
    pub caller: Caller,
    pub parts: Parts,
    pub body: Bytes,
}

/// Reads the body up to the limit (413 past it) and authenticates the caller.
pub async fn accept(
    state: &AppState,
    request: http::Request<Body>,
) -> Result<Incoming, (Error, RequestMeta)> {
    let (parts, body) = request.into_parts();
    let meta = RequestMeta::from_parts(
        &parts,
        state.options.request_timeout,
        state.options.deadline_margin,
    );
    let caller = match caller(state, &parts).await {
        Ok(c) => c,
        Err(e) => return Err((e, meta)),
    };
    let limit = state.options.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err((
                Error::PayloadTooLarge(format!(
                    "the request body exceeds the limit of {limit} bytes"
                )),
                meta,
            ));
        }
    };
    Ok(Incoming {
        meta,
        caller,
        parts,
        body,
    })
}

pub async fn caller(state: &AppState, parts: &Parts) -> Result<Caller, Error> {
    let directory = state.service.configs().tenants().await?;
    authenticate(
        &state.options.auth,
        &directory,
        &parts.headers,
        parts.extensions.get::<RequestContext>(),
    )
}
