//! Image and document content blocks: Bedrock's checks of them (model capability, format,
//! bytes, sizes, counts, document names) and what the rest of the emulator needs from them
//! (token counts, and a document's text for guardrails and citations).

use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::config::ModelSpec;
use crate::converse::Role;
use crate::error::BedrockError;

/// Bedrock's limits for images and documents in one request.
pub const MAX_IMAGES: usize = 20;
pub const MAX_IMAGE_BYTES: usize = 3_932_160; // 3.75 MB
pub const MAX_DOCUMENTS: usize = 5;
pub const MAX_DOCUMENT_BYTES: usize = 4_718_592; // 4.5 MB
pub const MAX_DOCUMENT_NAME_CHARS: usize = 200;

/// What an image costs in input tokens (a ~1.2 megapixel picture on Claude's formula).
pub const IMAGE_TOKENS: u32 = 1600;
/// What a binary document (pdf, doc, ...) costs per started KB; text documents are counted
/// by their text.
pub const DOCUMENT_TOKENS_PER_KB: u32 = 50;

const IMAGE_FORMATS: [&str; 4] = ["png", "jpeg", "gif", "webp"];
const DOCUMENT_FORMATS: [&str; 9] = [
    "pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md",
];
const TEXT_FORMATS: [&str; 4] = ["txt", "md", "csv", "html"];

/// Where a block is, in the two spellings Bedrock's messages use: `messages.1.content.0`
/// (model errors) and `messages.1.member.content.0.member` (request validation).
#[derive(Debug, Clone)]
pub struct At {
    pub dotted: String,
    pub coral: String,
}

impl At {
    pub fn block(message: usize, block: usize) -> Self {
        Self {
            dotted: format!("messages.{message}.content.{block}"),
            coral: format!("messages.{message}.member.content.{block}.member"),
        }
    }

    /// A part of a tool result's content.
    pub fn tool_result_part(&self, part: usize) -> Self {
        Self {
            dotted: format!("{}.toolResult.content.{part}", self.dotted),
            coral: format!("{}.toolResult.content.{part}.member", self.coral),
        }
    }
}

/// A document's text, as far as the emulator can read it.
#[derive(Debug, Clone)]
pub enum DocumentText {
    /// A text format, or the `text` source.
    Plain(String),
    /// The `content` source: its chunks, in order.
    Chunks(Vec<String>),
    /// A PDF, with the text its uncompressed content streams show (may be empty).
    Pdf(String),
    /// doc, docx, xls, xlsx: nothing the emulator can read.
    Binary,
}

/// A document of the request.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its position among the request's documents: a citation's `documentIndex`.
    pub index: usize,
    pub name: String,
    pub text: DocumentText,
    pub citations: bool,
    /// The decoded size, for the token count of binary formats.
    pub bytes: usize,
}

impl Document {
    /// The text guardrails inspect, when the document has text.
    pub fn readable_text(&self) -> Option<String> {
        match &self.text {
            DocumentText::Plain(t) => Some(t.clone()),
            DocumentText::Chunks(chunks) => Some(chunks.join("\n")),
            DocumentText::Pdf(_) | DocumentText::Binary => None,
        }
    }

    pub fn binary_tokens(&self) -> u32 {
        (self.bytes.div_ceil(1024) as u32).max(1) * DOCUMENT_TOKENS_PER_KB
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageWire {
    format: String,
    source: MediaSource,
    #[serde(default)]
    #[allow(dead_code)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum MediaSource {
    Bytes(String),
    S3Location(#[allow(dead_code)] Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentWire {
    #[serde(default)]
    format: Option<String>,
    name: String,
    source: DocumentSource,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    citations: Option<CitationsConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum DocumentSource {
    Bytes(String),
    S3Location(#[allow(dead_code)] Value),
    Text(String),
    Content(Vec<DocumentContentBlock>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum DocumentContentBlock {
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CitationsConfig {
    enabled: bool,
}

fn malformed(at: &At, kind: &str, e: serde_json::Error) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {}.{kind}: {e}, please reformat your input and try again.",
        at.dotted
    ))
}

fn no_s3(at: &At, kind: &str) -> BedrockError {
    BedrockError::validation(format!(
        "The emulator cannot read from Amazon S3: {}.{kind}.source.s3Location is not supported here. Send the {kind} as bytes.",
        at.dotted
    ))
}

fn enum_error(value: &str, at: &str, allowed: &[&str]) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    ))
}

fn decode(bytes: &str, at: &At, kind: &str) -> Result<Vec<u8>, BedrockError> {
    base64::engine::general_purpose::STANDARD
        .decode(bytes)
        .map_err(|_| {
            BedrockError::validation(format!(
                "Malformed input request: {}.{kind}.source.bytes is not valid base64, please reformat your input and try again.",
                at.dotted
            ))
        })
}

/// The image format the bytes are, from their magic numbers.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpeg")
    } else if bytes.starts_with(b"GIF8") {
        Some("gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    }
}

/// The text a PDF shows with `Tj`, when its content streams are not compressed: enough to
/// quote from the small PDFs tests build by hand.
fn pdf_text(bytes: &[u8]) -> String {
    static SHOWN: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(shown) = SHOWN
        .get_or_init(|| Regex::new(r"\(((?:[^()\\]|\\.)*)\)\s*Tj").ok())
        .as_ref()
    else {
        return String::new();
    };
    let text = String::from_utf8_lossy(bytes);
    shown
        .captures_iter(&text)
        .filter_map(|c| c.get(1))
        .map(|m| {
            m.as_str()
                .replace("\\(", "(")
                .replace("\\)", ")")
                .replace("\\\\", "\\")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bedrock's rule for document names.
fn valid_document_name(name: &str) -> bool {
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "-()[]".contains(c));
    let chars: Vec<char> = name.chars().collect();
    let doubled = chars
        .windows(2)
        .any(|w| w[0].is_whitespace() && w[1].is_whitespace());
    allowed && !doubled
}

/// Checks the images and documents of one request, counting them against its limits.
pub struct MediaCheck<'a> {
    spec: &'a ModelSpec,
    images: usize,
    pub documents: Vec<Document>,
}

impl<'a> MediaCheck<'a> {
    pub fn new(spec: &'a ModelSpec) -> Self {
        Self {
            spec,
            images: 0,
            documents: Vec::new(),
        }
    }

    fn only_in_user_messages(at: &At, role: Role, kind: &str) -> Result<(), BedrockError> {
        if role == Role::User {
            return Ok(());
        }
        Err(BedrockError::validation(format!(
            "The {kind} content block at {} is in an assistant message. Only user messages can contain {kind} content blocks.",
            at.dotted
        )))
    }

    /// An `image` block: `{format, source: {bytes} | {s3Location}}`.
    pub fn image(&mut self, block: &Value, at: &At, role: Role) -> Result<(), BedrockError> {
        let image: ImageWire =
            serde_json::from_value(block.clone()).map_err(|e| malformed(at, "image", e))?;
        Self::only_in_user_messages(at, role, "image")?;
        if !self.spec.vision {
            return Err(BedrockError::validation(
                "This model doesn't support the image content block that you provided. Try again with a supported content block.",
            ));
        }
        if !IMAGE_FORMATS.contains(&image.format.as_str()) {
            return Err(enum_error(
                &image.format,
                &format!("{}.image.format", at.coral),
                &IMAGE_FORMATS,
            ));
        }
        self.images += 1;
        if self.images > MAX_IMAGES {
            return Err(BedrockError::validation(format!(
                "Too many images in the request: {} is more than the maximum of {MAX_IMAGES}. Remove images and try again.",
                self.images
            )));
        }
        let bytes = match &image.source {
            MediaSource::Bytes(b) => decode(b, at, "image")?,
            MediaSource::S3Location(_) => return Err(no_s3(at, "image")),
        };
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(BedrockError::validation(format!(
                "The image at {} is {} bytes, which exceeds the maximum image size of 3.75 MB ({MAX_IMAGE_BYTES} bytes).",
                at.dotted,
                bytes.len()
            )));
        }
        match sniff_image(&bytes) {
            Some(actual) if actual == image.format => Ok(()),
            Some(actual) => Err(BedrockError::validation(format!(
                "Unable to process the image at {}: the image bytes are {actual}, which does not match the format {} that you specified.",
                at.dotted, image.format
            ))),
            None => Err(BedrockError::validation(format!(
                "Unable to process the image at {}: the image bytes are not a valid {} image.",
                at.dotted, image.format
            ))),
        }
    }

    /// A `document` block: `{format, name, source: {bytes} | {text} | {content} |
    /// {s3Location}, context?, citations?}`. Returns the document and its context text.
    pub fn document(
        &mut self,
        block: &Value,
        at: &At,
        role: Role,
    ) -> Result<(Document, Option<String>), BedrockError> {
        let doc: DocumentWire =
            serde_json::from_value(block.clone()).map_err(|e| malformed(at, "document", e))?;
        Self::only_in_user_messages(at, role, "document")?;
        if !self.spec.documents {
            return Err(BedrockError::validation(
                "This model doesn't support the document content block that you provided. Try again with a supported content block.",
            ));
        }
        let name_at = format!("{}.document.name", at.coral);
        let name_len = doc.name.chars().count();
        if name_len == 0 {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '' at '{name_at}' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )));
        }
        if name_len > MAX_DOCUMENT_NAME_CHARS {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{}' at '{name_at}' failed to satisfy constraint: Member must have length less than or equal to {MAX_DOCUMENT_NAME_CHARS}",
                doc.name
            )));
        }
        if !valid_document_name(&doc.name) {
            return Err(BedrockError::validation(
                "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character.",
            ));
        }
        let format = match (&doc.format, &doc.source) {
            (Some(f), _) if DOCUMENT_FORMATS.contains(&f.as_str()) => f.clone(),
            (Some(f), _) => {
                return Err(enum_error(
                    f,
                    &format!("{}.document.format", at.coral),
                    &DOCUMENT_FORMATS,
                ));
            }
            // A text source is its own format; bytes need to say what they are.
            (None, DocumentSource::Text(_) | DocumentSource::Content(_)) => "txt".to_owned(),
            (None, _) => {
                return Err(BedrockError::validation(format!(
                    "1 validation error detected: Value null at '{}.document.format' failed to satisfy constraint: Member must not be null",
                    at.coral
                )));
            }
        };
        if self.documents.len() >= MAX_DOCUMENTS {
            return Err(BedrockError::validation(format!(
                "Too many documents in the request: {} is more than the maximum of {MAX_DOCUMENTS}. Remove documents and try again.",
                self.documents.len() + 1
            )));
        }
        let citations = doc.citations.is_some_and(|c| c.enabled);
        if citations && !self.spec.citations {
            return Err(BedrockError::validation(
                "This model doesn't support citations. Remove citations from the document content block and try again.",
            ));
        }
        let (text, bytes) = match doc.source {
            DocumentSource::S3Location(_) => return Err(no_s3(at, "document")),
            DocumentSource::Text(t) => {
                let n = t.len();
                (DocumentText::Plain(t), n)
            }
            DocumentSource::Content(blocks) => {
                let chunks: Vec<String> = blocks
                    .into_iter()
                    .map(|DocumentContentBlock::Text(t)| t)
                    .collect();
                let n = chunks.iter().map(String::len).sum();
                (DocumentText::Chunks(chunks), n)
            }
            DocumentSource::Bytes(b) => {
                let raw = decode(&b, at, "document")?;
                let n = raw.len();
                let text = if format == "pdf" {
                    if !raw.starts_with(b"%PDF") {
                        return Err(BedrockError::validation(format!(
                            "Unable to process the document {}: its bytes are not a PDF file.",
                            doc.name
                        )));
                    }
                    DocumentText::Pdf(pdf_text(&raw))
                } else if TEXT_FORMATS.contains(&format.as_str()) {
                    match String::from_utf8(raw) {
                        Ok(t) => DocumentText::Plain(t),
                        Err(_) => DocumentText::Binary,
                    }
                } else {
                    DocumentText::Binary
                };
                (text, n)
            }
        };
        if bytes > MAX_DOCUMENT_BYTES {
            return Err(BedrockError::validation(format!(
                "The document {} is {bytes} bytes, which exceeds the maximum document size of 4.5 MB ({MAX_DOCUMENT_BYTES} bytes).",
                doc.name
            )));
        }
        let document = Document {
            index: self.documents.len(),
            name: doc.name,
            text,
            citations,
            bytes,
        };
        self.documents.push(document.clone());
        Ok((document, doc.context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_bedrocks_rule() {
        assert!(valid_document_name("Q3 report (final) [v2]-a"));
        assert!(!valid_document_name("two  spaces"));
        assert!(!valid_document_name("report.pdf"));
        assert!(!valid_document_name("under_score"));
    }

    #[test]
    fn magic_bytes_name_the_format() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpeg"));
        assert_eq!(sniff_image(b"GIF89a"), Some("gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(sniff_image(b"hello"), None);
    }

    #[test]
    fn pdf_text_reads_shown_strings() {
        let pdf = b"%PDF-1.4\nBT /F1 12 Tf (Hello \\(PDF\\) world) Tj ET";
        assert_eq!(pdf_text(pdf), "Hello (PDF) world");
    }
}
