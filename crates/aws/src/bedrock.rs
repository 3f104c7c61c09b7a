//! The model port on Bedrock Runtime's Converse and ConverseStream.
//!
//! The SDK's own retries are disabled: the core's invoker is the one retry policy, so
//! retries never stack. Each call carries its own operation timeout (the attempt's share of
//! the deadline). Stalled-stream protection is off for the same reason: a model's time to
//! first token may legitimately be long, and the deadline bounds it.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::StalledStreamProtectionConfig;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types as bt;
use quarry_core::model::{
    ContentBlock, Message, ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream,
    Role, StopReason, StreamEvent, SystemBlock, TokenUsage, ToolChoice, ToolResultContent,
};
use quarry_core::ports::ModelClient;

use crate::document::{to_document, to_json};
use crate::sdk::describe;

#[derive(Clone, Debug)]
pub struct BedrockModels {
    client: Client,
}

impl BedrockModels {
    pub fn new(sdk: &SdkConfig) -> Self {
        let config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
        }
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

fn invalid(e: impl std::fmt::Display) -> ModelError {
    ModelError::new(
        ModelErrorKind::Validation,
        format!("request cannot be built: {e}"),
    )
}

fn cache_point() -> Result<bt::CachePointBlock, ModelError> {
    bt::CachePointBlock::builder()
        .r#type(bt::CachePointType::Default)
        .build()
        .map_err(invalid)
}

fn to_block(block: &ContentBlock) -> Result<bt::ContentBlock, ModelError> {
    Ok(match block {
        ContentBlock::Text(t) => bt::ContentBlock::Text(t.clone()),
        ContentBlock::ToolUse { id, name, input } => bt::ContentBlock::ToolUse(
            bt::ToolUseBlock::builder()
                .tool_use_id(id)
                .name(name)
                .input(to_document(input))
                .build()
                .map_err(invalid)?,
        ),
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut b = bt::ToolResultBlock::builder().tool_use_id(tool_use_id);
            for part in content {
                b = b.content(match part {
                    ToolResultContent::Text(t) => bt::ToolResultContentBlock::Text(t.clone()),
                    ToolResultContent::Json(v) => bt::ToolResultContentBlock::Json(to_document(v)),
                });
            }
            if *is_error {
                b = b.status(bt::ToolResultStatus::Error);
            }
            bt::ContentBlock::ToolResult(b.build().map_err(invalid)?)
        }
        ContentBlock::CachePoint => bt::ContentBlock::CachePoint(cache_point()?),
    })
}

fn to_message(m: &Message) -> Result<bt::Message, ModelError> {
    let role = match m.role {
        Role::User => bt::ConversationRole::User,
        Role::Assistant => bt::ConversationRole::Assistant,
    };
    let content = m
        .content
        .iter()
        .map(to_block)
        .collect::<Result<Vec<_>, _>>()?;
    bt::Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .map_err(invalid)
}

/// Everything a Converse or ConverseStream call takes besides the model ID.
pub struct Parts {
    pub system: Vec<bt::SystemContentBlock>,
    pub messages: Vec<bt::Message>,
    pub inference: bt::InferenceConfiguration,
    pub tools: Option<bt::ToolConfiguration>,
    pub guardrail: Option<(String, String)>,
    pub metadata: Option<std::collections::HashMap<String, String>>,
}

/// Maps a request onto the SDK's Converse types.
pub fn parts(r: &ModelRequest) -> Result<Parts, ModelError> {
    let system = r
        .system
        .iter()
        .map(|s| {
            Ok(match s {
                SystemBlock::Text(t) => bt::SystemContentBlock::Text(t.clone()),
                SystemBlock::CachePoint => bt::SystemContentBlock::CachePoint(cache_point()?),
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let messages = r
        .messages
        .iter()
        .map(to_message)
        .collect::<Result<Vec<_>, _>>()?;
    let p = &r.params;
    let inference = bt::InferenceConfiguration::builder()
        .set_max_tokens(p.max_tokens.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
        .set_temperature(p.temperature)
        .set_top_p(p.top_p)
        .set_stop_sequences((!p.stop.is_empty()).then(|| p.stop.clone()))
        .build();
    let tools = if r.tools.is_empty() {
        None
    } else {
        let mut b = bt::ToolConfiguration::builder();
        for t in &r.tools {
            b = b.tools(bt::Tool::ToolSpec(
                bt::ToolSpecification::builder()
                    .name(&t.name)
                    .set_description(t.description.clone())
                    .input_schema(bt::ToolInputSchema::Json(to_document(&t.input_schema)))
                    .build()
                    .map_err(invalid)?,
            ));
        }
        if let Some(choice) = &r.tool_choice {
            b = b.tool_choice(match choice {
                ToolChoice::Auto => bt::ToolChoice::Auto(bt::AutoToolChoice::builder().build()),
                ToolChoice::Any => bt::ToolChoice::Any(bt::AnyToolChoice::builder().build()),
                ToolChoice::Tool(name) => bt::ToolChoice::Tool(
                    bt::SpecificToolChoice::builder()
                        .name(name)
                        .build()
                        .map_err(invalid)?,
                ),
            });
        }
        Some(b.build().map_err(invalid)?)
    };
    Ok(Parts {
        system,
        messages,
        inference,
        tools,
        metadata: (!r.metadata.is_empty()).then(|| {
            r.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        guardrail: r
            .guardrail
            .as_ref()
            .map(|g| (g.id.clone(), g.version.clone())),
    })
}

fn as_u64(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn usage_of(u: Option<&bt::TokenUsage>) -> TokenUsage {
    u.map(|u| TokenUsage {
        input: as_u64(u.input_tokens()),
        output: as_u64(u.output_tokens()),
        cache_read: as_u64(u.cache_read_input_tokens().unwrap_or(0)),
        cache_write: as_u64(u.cache_write_input_tokens().unwrap_or(0)),
    })
    .unwrap_or_default()
}

fn from_block(b: &bt::ContentBlock) -> Option<ContentBlock> {
    match b {
        bt::ContentBlock::Text(t) => Some(ContentBlock::Text(t.clone())),
        bt::ContentBlock::ToolUse(t) => Some(ContentBlock::ToolUse {
            id: t.tool_use_id().to_owned(),
            name: t.name().to_owned(),
            input: to_json(t.input()),
        }),
        // Reasoning, citations and other blocks are not part of Quarry's answer.
        _ => None,
    }
}

fn stream_event(e: bt::ConverseStreamOutput) -> Option<StreamEvent> {
    let index = |i: i32| u32::try_from(i).unwrap_or(0);
    match e {
        bt::ConverseStreamOutput::ContentBlockStart(s) => match s.start() {
            Some(bt::ContentBlockStart::ToolUse(t)) => Some(StreamEvent::ToolUseStart {
                index: index(s.content_block_index()),
                id: t.tool_use_id().to_owned(),
                name: t.name().to_owned(),
            }),
            _ => None,
        },
        bt::ConverseStreamOutput::ContentBlockDelta(d) => match d.delta() {
            Some(bt::ContentBlockDelta::Text(t)) => Some(StreamEvent::TextDelta {
                index: index(d.content_block_index()),
                text: t.clone(),
            }),
            Some(bt::ContentBlockDelta::ToolUse(t)) => Some(StreamEvent::ToolUseDelta {
                index: index(d.content_block_index()),
                input_json: t.input().to_owned(),
            }),
            _ => None,
        },
        bt::ConverseStreamOutput::ContentBlockStop(s) => Some(StreamEvent::BlockStop {
            index: index(s.content_block_index()),
        }),
        bt::ConverseStreamOutput::MessageStop(s) => Some(StreamEvent::MessageStop {
            stop_reason: StopReason::from_bedrock(s.stop_reason().as_str()),
        }),
        bt::ConverseStreamOutput::Metadata(m) => Some(StreamEvent::Metadata {
            usage: usage_of(m.usage()),
            latency_ms: m
                .metrics()
                .map(|x| u64::try_from(x.latency_ms()).unwrap_or(0))
                .unwrap_or(0),
        }),
        _ => None,
    }
}

/// Maps a Converse answer back onto the core's types.
pub fn model_response(
    out: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput,
) -> ModelResponse {
    let content = match out.output() {
        Some(bt::ConverseOutput::Message(m)) => m.content().iter().filter_map(from_block).collect(),
        _ => Vec::new(),
    };
    ModelResponse {
        content,
        stop_reason: StopReason::from_bedrock(out.stop_reason().as_str()),
        usage: usage_of(out.usage()),
        latency_ms: out
            .metrics()
            .map(|m| u64::try_from(m.latency_ms()).unwrap_or(0))
            .unwrap_or(0),
    }
}

/// Fills and sends a Converse or ConverseStream call: their fluent builders are distinct
/// types with the same methods (and different guardrail configuration types).
macro_rules! converse_call {
    ($builder:expr, $model:expr, $parts:expr, $guardrail:ty, $timeout:expr) => {{
        let p = $parts;
        let mut call = $builder
            .model_id($model)
            .set_system((!p.system.is_empty()).then_some(p.system))
            .set_messages(Some(p.messages))
            .inference_config(p.inference)
            .set_tool_config(p.tools)
            .set_request_metadata(p.metadata);
        if let Some((id, version)) = p.guardrail {
            call = call.guardrail_config(
                <$guardrail>::builder()
                    .guardrail_identifier(id)
                    .guardrail_version(version)
                    .build(),
            );
        }
        call.customize()
            .config_override(timeout_override($timeout))
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
            self.client.converse(),
            model_id,
            p,
            bt::GuardrailConfiguration,
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
            self.client.converse_stream(),
            model_id,
            p,
            bt::GuardrailStreamConfiguration,
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
}

#[async_trait]
impl quarry_core::ports::GuardrailApplier for BedrockModels {
    async fn intervenes(
        &self,
        guardrail: &quarry_core::guardrails::BedrockGuardrail,
        output: &str,
    ) -> Result<bool, quarry_core::ports::StoreError> {
        self.apply(guardrail, output, bt::GuardrailContentSource::Output)
            .await
    }

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
    /// ApplyGuardrail on one text: true when the guardrail intervenes.
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
            .send()
            .await
            .map_err(|e| StoreError::unavailable(Dependency::Bedrock, "guardrail", describe(&e)))?;
        Ok(out.action() == &bt::GuardrailAction::GuardrailIntervened)
    }
}
