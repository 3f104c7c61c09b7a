//! A core [`ModelRequest`] onto the SDK's Converse types.

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types as bt;
use quarry_core::model::{
    ContentBlock, DocumentFormat, DocumentSource, ImageFormat, Message, ModelError, ModelErrorKind,
    ModelRequest, Role, ServiceTier, SystemBlock, ToolChoice, ToolResultContent,
};

use crate::document::to_document;

pub(super) fn invalid(e: impl std::fmt::Display) -> ModelError {
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

fn image_format(f: ImageFormat) -> bt::ImageFormat {
    match f {
        ImageFormat::Png => bt::ImageFormat::Png,
        ImageFormat::Jpeg => bt::ImageFormat::Jpeg,
        ImageFormat::Gif => bt::ImageFormat::Gif,
        ImageFormat::Webp => bt::ImageFormat::Webp,
    }
}

fn document_format(f: DocumentFormat) -> bt::DocumentFormat {
    match f {
        DocumentFormat::Pdf => bt::DocumentFormat::Pdf,
        DocumentFormat::Csv => bt::DocumentFormat::Csv,
        DocumentFormat::Doc => bt::DocumentFormat::Doc,
        DocumentFormat::Docx => bt::DocumentFormat::Docx,
        DocumentFormat::Xls => bt::DocumentFormat::Xls,
        DocumentFormat::Xlsx => bt::DocumentFormat::Xlsx,
        DocumentFormat::Html => bt::DocumentFormat::Html,
        DocumentFormat::Txt => bt::DocumentFormat::Txt,
        DocumentFormat::Md => bt::DocumentFormat::Md,
    }
}

/// One block; `None` for reasoning that cannot be sent back (it lost its signature to a
/// guardrail's mask, and Bedrock refuses unsigned reasoning).
fn to_block(block: &ContentBlock) -> Result<Option<bt::ContentBlock>, ModelError> {
    Ok(Some(match block {
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
        ContentBlock::Image(image) => bt::ContentBlock::Image(
            bt::ImageBlock::builder()
                .format(image_format(image.format))
                .source(bt::ImageSource::Bytes(Blob::new(image.bytes.clone())))
                .build()
                .map_err(invalid)?,
        ),
        ContentBlock::Document(doc) => {
            let source = match &doc.source {
                DocumentSource::Bytes(b) => bt::DocumentSource::Bytes(Blob::new(b.clone())),
                DocumentSource::Text(t) => bt::DocumentSource::Text(t.clone()),
            };
            let mut b = bt::DocumentBlock::builder()
                .format(document_format(doc.format))
                .name(&doc.name)
                .source(source);
            if doc.citations {
                b = b.citations(
                    bt::CitationsConfig::builder()
                        .enabled(true)
                        .build()
                        .map_err(invalid)?,
                );
            }
            bt::ContentBlock::Document(b.build().map_err(invalid)?)
        }
        ContentBlock::Reasoning { text, signature } => {
            let Some(signature) = signature else {
                return Ok(None);
            };
            bt::ContentBlock::ReasoningContent(bt::ReasoningContentBlock::ReasoningText(
                bt::ReasoningTextBlock::builder()
                    .text(text)
                    .signature(signature)
                    .build()
                    .map_err(invalid)?,
            ))
        }
        ContentBlock::RedactedReasoning(data) => bt::ContentBlock::ReasoningContent(
            bt::ReasoningContentBlock::RedactedContent(Blob::new(data.clone())),
        ),
    }))
}

fn to_message(m: &Message) -> Result<bt::Message, ModelError> {
    let role = match m.role {
        Role::User => bt::ConversationRole::User,
        Role::Assistant => bt::ConversationRole::Assistant,
    };
    let mut content = Vec::with_capacity(m.content.len());
    for block in &m.content {
        content.extend(to_block(block)?);
    }
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
    pub additional: Option<aws_smithy_types::Document>,
    pub service_tier: Option<bt::ServiceTier>,
    pub performance: Option<bt::PerformanceConfiguration>,
}

fn service_tier(t: ServiceTier) -> Result<bt::ServiceTier, ModelError> {
    bt::ServiceTier::builder()
        .r#type(match t {
            ServiceTier::Default => bt::ServiceTierType::Default,
            ServiceTier::Flex => bt::ServiceTierType::Flex,
            ServiceTier::Priority => bt::ServiceTierType::Priority,
            ServiceTier::Reserved => bt::ServiceTierType::Reserved,
        })
        .build()
        .map_err(invalid)
}

fn tool_config(r: &ModelRequest) -> Result<Option<bt::ToolConfiguration>, ModelError> {
    if r.tools.is_empty() {
        return Ok(None);
    }
    let mut b = bt::ToolConfiguration::builder();
    for t in &r.tools {
        b = b.tools(bt::Tool::ToolSpec(
            bt::ToolSpecification::builder()
                .name(&t.name)
                .set_description(t.description.clone())
                .input_schema(bt::ToolInputSchema::Json(to_document(&t.input_schema)))
                .set_strict(t.strict)
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
    Ok(Some(b.build().map_err(invalid)?))
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
    Ok(Parts {
        system,
        messages,
        inference,
        tools: tool_config(r)?,
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
        additional: r.additional_fields.as_ref().map(to_document),
        service_tier: r.service_tier.map(service_tier).transpose()?,
        performance: r.latency_optimized.then(|| {
            bt::PerformanceConfiguration::builder()
                .latency(bt::PerformanceConfigLatency::Optimized)
                .build()
        }),
    })
}
