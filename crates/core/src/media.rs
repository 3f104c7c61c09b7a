//! Images and documents in a conversation: the formats Bedrock's Converse takes, its limits,
//! and the checks made before a call so a bad part gets a 400 naming it rather than
//! Bedrock's ValidationException after a round trip (or, worse, a fallback model's).
//!
//! Limits are Converse's: 3.75 MB per image, 4.5 MB per document, 20 images and 5 documents
//! per request, document names of letters, digits, single spaces, hyphens, parentheses and
//! square brackets.

use serde::{Deserialize, Serialize};

/// Largest image Converse takes, in bytes (3.75 MB).
pub const MAX_IMAGE_BYTES: usize = 3_932_160;
/// Largest document Converse takes, in bytes (4.5 MB).
pub const MAX_DOCUMENT_BYTES: usize = 4_718_592;
/// Most images in one request.
pub const MAX_IMAGES: usize = 20;
/// Most documents in one request.
pub const MAX_DOCUMENTS: usize = 5;
/// Longest document name.
pub const MAX_DOCUMENT_NAME: usize = 200;
/// Tokens an image is estimated at before the call (Claude's largest tile set is about
/// 1,600; the estimate errs high, as budgets should).
pub const IMAGE_TOKENS: u32 = 1_600;
/// Tokens per PDF page, estimated (text and the page's image).
pub const PDF_PAGE_TOKENS: u32 = 1_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    pub fn from_mime(mime: &str) -> Option<Self> {
        Some(match mime.to_ascii_lowercase().as_str() {
            "image/png" => Self::Png,
            "image/jpeg" | "image/jpg" => Self::Jpeg,
            "image/gif" => Self::Gif,
            "image/webp" => Self::Webp,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "png" => Self::Png,
            "jpeg" | "jpg" => Self::Jpeg,
            "gif" => Self::Gif,
            "webp" => Self::Webp,
            _ => return None,
        })
    }

    /// The format the bytes are, by their signature.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    Pdf,
    Csv,
    Doc,
    Docx,
    Xls,
    Xlsx,
    Html,
    Txt,
    Md,
}

impl DocumentFormat {
    pub fn from_mime(mime: &str) -> Option<Self> {
        Some(match mime.to_ascii_lowercase().as_str() {
            "application/pdf" => Self::Pdf,
            "text/csv" => Self::Csv,
            "application/msword" => Self::Doc,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Self::Docx,
            "application/vnd.ms-excel" => Self::Xls,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Self::Xlsx,
            "text/html" => Self::Html,
            "text/plain" => Self::Txt,
            "text/markdown" | "text/x-markdown" => Self::Md,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pdf" => Self::Pdf,
            "csv" => Self::Csv,
            "doc" => Self::Doc,
            "docx" => Self::Docx,
            "xls" => Self::Xls,
            "xlsx" => Self::Xlsx,
            "html" | "htm" => Self::Html,
            "txt" | "text" => Self::Txt,
            "md" | "markdown" => Self::Md,
            _ => return None,
        })
    }

    /// Formats whose bytes are text (UTF-8): guardrails and token estimates read them.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Csv | Self::Html | Self::Txt | Self::Md)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "csv",
            Self::Doc => "doc",
            Self::Docx => "docx",
            Self::Xls => "xls",
            Self::Xlsx => "xlsx",
            Self::Html => "html",
            Self::Txt => "txt",
            Self::Md => "md",
        }
    }
}

/// Bytes, base64 in JSON (cache keys and stored records stay compact).
pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub format: ImageFormat,
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentSource {
    Bytes(#[serde(with = "b64")] Vec<u8>),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub format: DocumentFormat,
    pub name: String,
    pub source: DocumentSource,
    /// Ask the model to cite this document (models with `citations`).
    #[serde(default)]
    pub citations: bool,
}

impl Document {
    pub fn len(&self) -> usize {
        match &self.source {
            DocumentSource::Bytes(b) => b.len(),
            DocumentSource::Text(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The document's text, when it is text: guardrails read it.
    pub fn text(&self) -> Option<&str> {
        match &self.source {
            DocumentSource::Text(t) => Some(t),
            DocumentSource::Bytes(b) if self.format.is_text() => std::str::from_utf8(b).ok(),
            DocumentSource::Bytes(_) => None,
        }
    }

    /// Tokens the document is estimated at before the call.
    pub fn estimated_tokens(&self) -> u32 {
        if let Some(text) = self.text() {
            return crate::chat::estimate_tokens(text);
        }
        match (&self.source, self.format) {
            (DocumentSource::Bytes(b), DocumentFormat::Pdf) => {
                pdf_pages(b).saturating_mul(PDF_PAGE_TOKENS)
            }
            // Office formats are compressed: a few bytes of file per token.
            _ => u32::try_from(self.len() / 2).unwrap_or(u32::MAX),
        }
    }
}

/// Pages of a PDF, counted by its page objects; one at least.
fn pdf_pages(bytes: &[u8]) -> u32 {
    let needle = b"/Type";
    let mut pages = 0u32;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let rest = &bytes[i + at + needle.len()..];
        let rest = rest.trim_ascii_start();
        if rest.starts_with(b"/Page") && !rest.starts_with(b"/Pages") {
            pages = pages.saturating_add(1);
        }
        i += at + needle.len();
    }
    pages.max(1)
}

/// Checks an image against Converse's rules: the size, and bytes that are the format they
/// claim to be. The error says what to fix.
pub fn check_image(image: &Image) -> Result<(), String> {
    if image.bytes.is_empty() {
        return Err("the image is empty".into());
    }
    if image.bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "the image is {} bytes; Bedrock takes at most {MAX_IMAGE_BYTES} (3.75 MB)",
            image.bytes.len()
        ));
    }
    match ImageFormat::sniff(&image.bytes) {
        Some(f) if f == image.format => Ok(()),
        Some(f) => Err(format!(
            "the image says it is {} but its bytes are {}",
            image.format.as_str(),
            f.as_str()
        )),
        None => Err(format!(
            "the image's bytes are not {} (Bedrock takes png, jpeg, gif and webp)",
            image.format.as_str()
        )),
    }
}

/// Converse's rule for document names: letters, digits, hyphens, parentheses, square
/// brackets and single whitespace characters, 1 to 200 characters.
pub fn check_document_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c.is_whitespace() || "-()[]".contains(c);
    let doubled = name
        .chars()
        .zip(name.chars().skip(1))
        .any(|(a, b)| a.is_whitespace() && b.is_whitespace());
    if name.trim().is_empty() || name.chars().count() > MAX_DOCUMENT_NAME {
        return Err(format!(
            "a document name has 1 to {MAX_DOCUMENT_NAME} characters"
        ));
    }
    if !name.chars().all(ok_char) || doubled {
        return Err("a document name may contain only letters, digits, single spaces, hyphens, parentheses and square brackets".into());
    }
    Ok(())
}

/// A valid document name made from a file name (`Q3 report.final.pdf` -> `Q3 report-final`):
/// OpenAI clients send file names, which Converse would refuse.
pub fn document_name_from(filename: &str, index: usize) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(stem, _)| stem);
    let mut out = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else if c.is_whitespace() {
            ' '
        } else {
            '-'
        };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
        if out.chars().count() >= MAX_DOCUMENT_NAME {
            break;
        }
    }
    let out = out.trim().to_owned();
    if out.is_empty() {
        format!("document {}", index + 1)
    } else {
        out
    }
}

/// Checks a document against Converse's rules.
pub fn check_document(doc: &Document) -> Result<(), String> {
    check_document_name(&doc.name)?;
    if doc.is_empty() {
        return Err("the document is empty".into());
    }
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the document is {} bytes; Bedrock takes at most {MAX_DOCUMENT_BYTES} (4.5 MB)",
            doc.len()
        ));
    }
    if let DocumentSource::Bytes(b) = &doc.source {
        if doc.format == DocumentFormat::Pdf && !b.starts_with(b"%PDF") {
            return Err("the document says it is pdf but its bytes are not a PDF".into());
        }
        if doc.format.is_text() && std::str::from_utf8(b).is_err() {
            return Err(format!(
                "a {} document must be UTF-8 text",
                doc.format.as_str()
            ));
        }
    }
    Ok(())
}

/// Converse's per-request counts: at most 20 images and 5 documents.
pub fn check_counts(messages: &[crate::model::Message]) -> Result<(), crate::error::Error> {
    use crate::model::ContentBlock;
    let blocks = messages.iter().flat_map(|m| m.content.iter());
    let (mut images, mut documents) = (0, 0);
    for b in blocks {
        match b {
            ContentBlock::Image(_) => images += 1,
            ContentBlock::Document(_) => documents += 1,
            _ => {}
        }
    }
    if images > MAX_IMAGES {
        return Err(crate::error::Error::bad_request(
            "messages",
            format!("{images} images in one request; Bedrock takes at most {MAX_IMAGES}"),
        ));
    }
    if documents > MAX_DOCUMENTS {
        return Err(crate::error::Error::bad_request(
            "messages",
            format!("{documents} documents in one request; Bedrock takes at most {MAX_DOCUMENTS}"),
        ));
    }
    Ok(())
}

/// Parses a `data:` URL: its media type and decoded bytes.
pub fn parse_data_url(url: &str) -> Result<(String, Vec<u8>), String> {
    use base64::Engine;
    let rest = url.strip_prefix("data:").ok_or("not a data: URL")?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or("a data: URL needs a ',' before its data")?;
    let mime = meta
        .strip_suffix(";base64")
        .ok_or("only base64 data: URLs are taken (data:MIME;base64,...)")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("the data is not valid base64: {e}"))?;
    Ok((mime.to_ascii_lowercase(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_what_their_bytes_say() {
        let png = Image {
            format: ImageFormat::Png,
            bytes: b"\x89PNG\r\n\x1a\n....".to_vec(),
        };
        assert!(check_image(&png).is_ok());
        let lying = Image {
            format: ImageFormat::Jpeg,
            bytes: png.bytes.clone(),
        };
        assert!(check_image(&lying).unwrap_err().contains("png"));
        let big = Image {
            format: ImageFormat::Png,
            bytes: [png.bytes.clone(), vec![0; MAX_IMAGE_BYTES]].concat(),
        };
        assert!(check_image(&big).unwrap_err().contains("3.75 MB"));
    }

    #[test]
    fn document_names_follow_converse() {
        assert!(check_document_name("Q3 report (final) [v2]").is_ok());
        assert!(check_document_name("report.pdf").is_err());
        assert!(check_document_name("two  spaces").is_err());
        assert!(check_document_name("").is_err());
        assert!(check_document_name(&"a".repeat(201)).is_err());
        assert_eq!(
            document_name_from("Q3  report.final.pdf", 0),
            "Q3 report-final"
        );
        assert_eq!(document_name_from(".", 2), "document 3");
        assert_eq!(document_name_from("日本語.txt", 0), "---");
        for name in ["x.pdf", "a\tb\n\nc.md", "😀😀", &"z".repeat(500)] {
            let n = document_name_from(name, 0);
            assert!(check_document_name(&n).is_ok(), "{name:?} -> {n:?}");
        }
    }

    #[test]
    fn data_urls_decode() {
        let (mime, bytes) = parse_data_url("data:image/png;base64,aGk=").unwrap();
        assert_eq!(
            (mime.as_str(), bytes.as_slice()),
            ("image/png", b"hi".as_slice())
        );
        assert!(parse_data_url("data:image/png,hi").is_err());
        assert!(parse_data_url("https://x/y.png").is_err());
        assert!(parse_data_url("data:image/png;base64,***").is_err());
    }

    #[test]
    fn pdf_pages_are_counted() {
        let pdf = b"%PDF-1.4 /Type /Pages /Type /Page x /Type/Page y";
        assert_eq!(pdf_pages(pdf), 2);
        assert_eq!(pdf_pages(b"%PDF"), 1);
    }
}
