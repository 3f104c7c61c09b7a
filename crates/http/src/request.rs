//! The first steps of every route: request facts, the caller, the body (bounded).

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use lambda_http::request::RequestContext;
use quarry_core::Error;
use quarry_core::config::Configs;
use quarry_core::tenancy::Caller;

use crate::{AuthMode, RequestMeta, authenticate};

/// How requests are accepted.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    pub max_body_bytes: usize,
    /// Budget of a request when there is no Lambda deadline (local runs).
    pub request_timeout: std::time::Duration,
    /// Kept back from the Lambda deadline for the answer to leave.
    pub deadline_margin: std::time::Duration,
    pub auth: AuthMode,
}

/// A request whose caller is known and whose body has been read.
pub struct Incoming {
    pub meta: RequestMeta,
    pub caller: Caller,
    pub parts: Parts,
    pub body: Bytes,
}

/// Authenticates the caller, then reads the body up to the limit (413 past it).
pub async fn accept(
    request: http::Request<Body>,
    options: &AcceptOptions,
    configs: &Configs,
) -> Result<Incoming, (Error, RequestMeta)> {
    let (parts, body) = request.into_parts();
    let meta = RequestMeta::from_parts(&parts, options.request_timeout, options.deadline_margin);
    if let Err(e) = json_content_type(&parts.headers) {
        return Err((e, meta));
    }
    let caller = match caller(&parts, &options.auth, configs).await {
        Ok(c) => c,
        Err(e) => return Err((e, meta)),
    };
    let limit = options.max_body_bytes;
    match axum::body::to_bytes(body, limit).await {
        Ok(body) => Ok(Incoming {
            meta,
            caller,
            parts,
            body,
        }),
        Err(_) => Err((
            Error::PayloadTooLarge(format!(
                "the request body exceeds the limit of {limit} bytes"
            )),
            meta,
        )),
    }
}

/// Bodies are JSON: a `Content-Type` that says otherwise (a form, plain text, XML) is refused
/// rather than guessed at. None at all is taken as JSON, as most clients mean it.
fn json_content_type(headers: &http::HeaderMap) -> Result<(), Error> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "the body must be JSON: send 'Content-Type: application/json' (got {:?})",
            value.to_str().unwrap_or("non-ASCII")
        )))
    }
}

/// Who is calling, from the tenant directory.
pub async fn caller(parts: &Parts, auth: &AuthMode, configs: &Configs) -> Result<Caller, Error> {
    let directory = configs.tenants().await?;
    authenticate(
        auth,
        &directory,
        &parts.headers,
        parts.extensions.get::<RequestContext>(),
    )
}
