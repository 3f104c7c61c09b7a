//! The model port on Bedrock Runtime's Converse and ConverseStream.
//!
//! The SDK's own retries are disabled: the core's invoker is the one retry policy, so
//! retries never stack. Each call carries its own operation timeout (the attempt's share of
//! the deadline). Stalled-stream protection is off for the same reason: a model's time to
//! first token may legitimately be long, and the deadline bounds it.
//!
//! Each call carries `X-Amzn-Trace-Id` naming the span it is made in (the model attempt's,
//! the guardrail check's), so Bedrock's side of the call joins the request's trace.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::StalledStreamProtectionConfig;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types as bt;
use quarry_core::model::{ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream};
use quarry_core::ports::ModelClient;

mod embed;
mod grounding;
pub mod native;
mod request;
mod response;

pub use self::request::{Parts, parts};
pub use self::response::model_response;
use self::response::stream_event;
use crate::sdk::describe;

/// Bedrock Runtime: the client of the deployment's region, and one per other region a
/// route names, each built once (no I/O: a client is configuration) on its first call.
#[derive(Clone, Debug)]
pub struct BedrockModels {
    client: Client,
    config: aws_sdk_bedrockruntime::Config,
    regional: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Client>>>,
}

impl BedrockModels {
    pub fn new(sdk: &SdkConfig) -> Self {
        let config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config.clone()),
            config,
            regional: Default::default(),
        }
    }

    /// The client for `region` (`None`: the deployment's). The endpoint stays the
    /// configured one when one is set (the SDK's endpoint variables); requests are signed
    /// for the region.
    pub fn client_in(&self, region: Option<&str>) -> Client {
        let Some(region) = region.filter(|r| Some(*r) != self.config.region().map(|d| d.as_ref()))
        else {
            return self.client.clone();
        };
        if let Some(c) = self
            .regional
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(region)
        {
            return c.clone();
        }
        let client = Client::from_conf(
            self.config
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
        );
        self.regional
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(region.to_owned())
            .or_insert(client)
            .clone()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn timeout_override(timeout: Duration) -> aws_sdk_bedrockruntime::config::Builder {
    aws_sdk_bedrockruntime::config::Builder::default()
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
}

/// Bedrock's error code -> our kind. Codes are the same for every operation and for
/// exceptions inside a stream (whose member names the SDK maps back to these codes).
fn kind_of(code: Option<&str>) -> ModelErrorKind {
    match code.unwrap_or("") {
        "ThrottlingException" | "throttlingException" => ModelErrorKind::Throttled,
        "ServiceUnavailableException" | "serviceUnavailableException" => {
            ModelErrorKind::ServiceUnavailable
        }
        "ModelNotReadyException" => ModelErrorKind::ModelNotReady,
        "ModelTimeoutException" | "modelTimeoutException" => ModelErrorKind::ModelTimeout,
        "InternalServerException" | "internalServerException" => ModelErrorKind::InternalServer,
        "ModelErrorException" => ModelErrorKind::ModelFailed,
        "ModelStreamErrorException" | "modelStreamErrorException" => ModelErrorKind::StreamError,
        "ValidationException" | "validationException" => ModelErrorKind::Validation,
        "AccessDeniedException" => ModelErrorKind::AccessDenied,
        "ResourceNotFoundException" => ModelErrorKind::NotFound,
        "ServiceQuotaExceededException" => ModelErrorKind::QuotaExceeded,
        _ => ModelErrorKind::InternalServer,
    }
}

fn map_sdk_error<E, R>(e: SdkError<E, R>) -> ModelError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            ModelError::new(
                kind_of(err.code()),
                err.message()
                    .unwrap_or("Bedrock returned an error")
                    .to_owned(),
            )
        }
        SdkError::TimeoutError(_) => {
            ModelError::new(ModelErrorKind::Timeout, "the model call timed out")
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            ModelError::new(ModelErrorKind::Timeout, describe(&e))
        }
        SdkError::DispatchFailure(_) => ModelError::new(ModelErrorKind::Network, describe(&e)),
        SdkError::ResponseError(_) => ModelError::new(ModelErrorKind::InternalServer, describe(&e)),
        // Building the request failed: a request we cannot send is our validation problem.
        _ => ModelError::new(ModelErrorKind::Validation, describe(&e)),
    }
}

/// Exceptions inside a stream: the SDK gives them typed, not always with a code.
fn map_stream_error<R>(e: SdkError<bt::error::ConverseStreamOutputError, R>) -> ModelError
where
    R: std::fmt::Debug + 'static,
{
    use bt::error::ConverseStreamOutputError as E;
    if let Some(s) = e.as_service_error() {
        let kind = match s {
            E::ModelStreamErrorException(_) => ModelErrorKind::StreamError,
            E::ThrottlingException(_) => ModelErrorKind::Throttled,
            E::ServiceUnavailableException(_) => ModelErrorKind::ServiceUnavailable,
            E::ValidationException(_) => ModelErrorKind::Validation,
            E::InternalServerException(_) => ModelErrorKind::InternalServer,
            other => kind_of(other.code()),
        };
        return ModelError::new(
            kind,
            s.message().unwrap_or("the model stream failed").to_owned(),
        );
    }
    map_sdk_error(e)
}

/// Sets the X-Ray header naming the current span as the caller. The SDK's own
/// recursion-detection interceptor sets it from the Lambda's `_X_AMZN_TRACE_ID` only when a
/// request has none; with traces off, this sets nothing and that one applies.
pub(crate) fn trace_header()
-> impl Fn(&mut aws_smithy_runtime_api::http::Request) + Send + Sync + 'static {
    let header = crate::traces::outbound_header();
    move |request| {
        if let Some(h) = &header {
            request.headers_mut().insert("x-amzn-trace-id", h.clone());
        }
    }
}

/// Fills and sends a Converse or ConverseStream call: their fluent builders are distinct
/// types with the same methods (and different guardrail configuration types).
macro_rules! converse_call {
    ($builder:expr, $model:expr, $parts:expr, $guardrail:expr, $timeout:expr) => {{
        let p = $parts;
        let mut call = $builder
            .model_id($model)
            .set_system((!p.system.is_empty()).then_some(p.system))
            .set_messages(Some(p.messages))
            .inference_config(p.inference)
            .set_tool_config(p.tools)
            .set_request_metadata(p.metadata)
            .set_additional_model_request_fields(p.additional)
            .set_service_tier(p.service_tier)
            .set_performance_config(p.performance);
        if let Some((id, version)) = p.guardrail {
            // The trace tells a mask (Bedrock's anonymised text is the answer) from a block.
            call = call.guardrail_config(
                $guardrail
                    .guardrail_identifier(id)
                    .guardrail_version(version)
                    .trace(bt::GuardrailTrace::Enabled)
                    .build(),
            );
        }
        call.customize()
            .config_override(timeout_override($timeout))
            .mutate_request(trace_header())
            .send()
            .await
            .map_err(map_sdk_error)?
    }};
}

#[async_trait]
impl ModelClient for BedrockModels {
    async fn converse(
        &self,
        model_id: &str,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<ModelResponse, ModelError> {
        let p = parts(request)?;
        let out = converse_call!(
            self.client_in(request.region.as_deref()).converse(),
            model_id,
            p,
            bt::GuardrailConfiguration::builder(),
            timeout
        );
        Ok(model_response(&out))
    }

    async fn converse_stream(
        &self,
        model_id: &str,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<ModelStream, ModelError> {
        let p = parts(request)?;
        let out = converse_call!(
            self.client_in(request.region.as_deref()).converse_stream(),
            model_id,
            p,
            // Sync: Bedrock checks each chunk before sending it, so nothing unchecked leaves.
            bt::GuardrailStreamConfiguration::builder()
                .stream_processing_mode(bt::GuardrailStreamProcessingMode::Sync),
            timeout
        );
        let receiver = out.stream;
        let stream = futures::stream::unfold(Some(receiver), |state| async move {
            let mut receiver = state?;
            loop {
                match receiver.recv().await {
                    Ok(Some(event)) => {
                        if let Some(e) = stream_event(event) {
                            return Some((Ok(e), Some(receiver)));
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => return Some((Err(map_stream_error(e)), None)),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn embed(
        &self,
        model_id: &str,
        request: &quarry_core::embeddings::EmbedRequest,
        timeout: Duration,
    ) -> Result<quarry_core::embeddings::EmbedResponse, ModelError> {
        self.embed_texts(model_id, request, timeout).await
    }
}

#[async_trait]
impl quarry_core::ports::GuardrailApplier for BedrockModels {
    async fn input_intervenes(
        &self,
        guardrail: &quarry_core::guardrails::BedrockGuardrail,
        input: &str,
    ) -> Result<bool, quarry_core::ports::StoreError> {
        self.apply(guardrail, input, bt::GuardrailContentSource::Input)
            .await
    }
}

impl BedrockModels {
    /// ApplyGuardrail on one text: true when the guardrail blocks it (an intervention that
    /// only masks is no block: Converse masks the text itself).
    async fn apply(
        &self,
        guardrail: &quarry_core::guardrails::BedrockGuardrail,
        text: &str,
        source: bt::GuardrailContentSource,
    ) -> Result<bool, quarry_core::ports::StoreError> {
        use quarry_core::ports::{Dependency, StoreError};
        let text = bt::GuardrailTextBlock::builder()
            .text(text)
            .build()
            .map_err(|e| StoreError::invalid(Dependency::Bedrock, "guardrail", e.to_string()))?;
        let out = self
            .client
            .apply_guardrail()
            .guardrail_identifier(&guardrail.id)
            .guardrail_version(&guardrail.version)
            .source(source)
            .content(bt::GuardrailContentBlock::Text(text))
            .customize()
            .mutate_request(trace_header())
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Bedrock, "guardrail", describe(&e)))?;
        Ok(out.action() == &bt::GuardrailAction::GuardrailIntervened
            && response::blocks(out.assessments()))
    }
}
