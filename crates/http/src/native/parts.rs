//! The native API's message content: text, cache points, images, documents, and the
//! reasoning of an earlier answer sent back.

use quarry_core::Error;
use quarry_core::media::{self, Document, DocumentFormat, DocumentSource, Image, ImageFormat};
use quarry_core::model::ContentBlock;
use serde::{Deserialize, Serialize};

/// Message content: a string, or a list of parts: `{"type": "text", "text": ...}` and
/// `{"type": "cache_point"}` (a Bedrock prompt-cache checkpoint, passed through).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// A content part. Besides text and cache points: `image` (`format`: png, jpeg, gif,
/// webp; `data`: base64), `document` (`format`: pdf, csv, doc, docx, xls, xlsx, html, txt,
/// md; `name`; `data` (base64) or `text`; `citations`), and an earlier answer's `reasoning`
/// (`text`, `signature`) or `redacted_reasoning` (`data`), sent back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Part {
    Text {
        text: String,
    },
    CachePoint {},
    Image {
        format: ImageFormat,
        data: String,
    },
    Document {
        format: DocumentFormat,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default)]
        citations: bool,
    },
    Reasoning {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedReasoning {
        data: String,
    },
}

fn decode(data: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("data must be base64: {e}"))
}

impl Part {
    /// A part of an answer, as the next turn sends it back.
    pub fn of_block(block: &ContentBlock) -> Option<Self> {
        use base64::Engine;
        match block {
            ContentBlock::Reasoning { text, signature } => Some(Self::Reasoning {
                text: text.clone(),
                signature: signature.clone(),
            }),
            ContentBlock::RedactedReasoning(data) => Some(Self::RedactedReasoning {
                data: base64::engine::general_purpose::STANDARD.encode(data),
            }),
            _ => None,
        }
    }

    /// The Converse block, checked against Bedrock's limits (`None`: left out).
    fn into_block(self) -> Result<Option<ContentBlock>, String> {
        Ok(Some(match self {
            Self::Text { text } => ContentBlock::Text(text),
            Self::CachePoint {} => ContentBlock::CachePoint,
            Self::Image { format, data } => {
                let image = Image {
                    format,
                    bytes: decode(&data)?,
                };
                media::check_image(&image)?;
                ContentBlock::Image(image)
            }
            Self::Document {
                format,
                name,
                data,
                text,
                citations,
            } => {
                let source = match (data, text) {
                    (Some(d), None) => DocumentSource::Bytes(decode(&d)?),
                    (None, Some(t)) => DocumentSource::Text(t),
                    _ => return Err("a document has 'data' (base64) or 'text', one of them".into()),
                };
                let doc = Document {
                    format,
                    name,
                    source,
                    citations,
                };
                media::check_document(&doc)?;
                ContentBlock::Document(doc)
            }
            // Unsigned reasoning cannot be verified by Bedrock: left out.
            Self::Reasoning {
                signature: None, ..
            } => return Ok(None),
            Self::Reasoning { text, signature } => ContentBlock::Reasoning { text, signature },
            Self::RedactedReasoning { data } => ContentBlock::RedactedReasoning(decode(&data)?),
        }))
    }
}

impl Content {
    pub fn chars(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Text { text } => text.len(),
                    Part::Document { text: Some(t), .. } => t.len(),
                    _ => 0,
                })
                .sum(),
        }
    }

    /// The Converse blocks; a 400 naming the part that breaks Bedrock's rules.
    pub fn into_blocks(self, at: &str) -> Result<Vec<ContentBlock>, Error> {
        match self {
            Self::Text(t) => Ok(vec![ContentBlock::Text(t)]),
            Self::Parts(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for (j, p) in parts.into_iter().enumerate() {
                    out.extend(
                        p.into_block()
                            .map_err(|m| Error::bad_request(format!("{at}.content[{j}]"), m))?,
                    );
                }
                Ok(out)
            }
        }
    }
}
