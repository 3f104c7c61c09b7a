//! OpenAI message content: text, `image_url` parts (data URLs), `file` parts (PDF, CSV,
//! office documents, HTML, text, Markdown), and the reasoning an assistant turn carries back
//! (`thinking_blocks`, signed). Each becomes a Converse block; Bedrock's limits are checked
//! here, with a 400 naming the part.

use base64::Engine;
use quarry_core::Error;
use quarry_core::media::{self, Document, DocumentFormat, DocumentSource, Image, ImageFormat};
use quarry_core::model::ContentBlock;
use quarry_core::ports::ImageFetcher;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OaContent {
    Text(String),
    Parts(Vec<OaPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OaPart {
    Text { text: String },
    ImageUrl { image_url: OaImageUrl },
    InputAudio {},
    File { file: OaFile },
    Refusal { refusal: String },
}

#[derive(Debug, Deserialize)]
pub struct OaImageUrl {
    pub url: String,
    /// `auto`, `low`, `high`: Bedrock has no such setting; it does not change what the model
    /// is shown beyond resolution, so it is accepted.
    #[allow(dead_code)]
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OaFile {
    /// A data URL (`data:application/pdf;base64,...`) or bare base64.
    pub file_data: Option<String>,
    pub file_id: Option<String>,
    pub filename: Option<String>,
    /// Quarry's extension (Anthropic's shape): `{"enabled": true}` asks for citations.
    pub citations: Option<Citations>,
}

#[derive(Debug, Deserialize)]
pub struct Citations {
    #[serde(default)]
    pub enabled: bool,
}

/// A reasoning block of an earlier assistant turn, as answers carry it.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

impl OaContent {
    /// Characters of text, and bytes of media (as sent: base64 or URL).
    pub fn size(&self) -> (usize, usize) {
        match self {
            Self::Text(t) => (t.len(), 0),
            Self::Parts(parts) => parts.iter().fold((0, 0), |(c, m), p| match p {
                OaPart::Text { text } => (c + text.len(), m),
                OaPart::Refusal { refusal } => (c + refusal.len(), m),
                OaPart::ImageUrl { image_url } => (c, m + image_url.url.len()),
                OaPart::File { file } => (c, m + file.file_data.as_ref().map_or(0, String::len)),
                OaPart::InputAudio {} => (c, m),
            }),
        }
    }
}

/// The content as text only (system, developer and tool messages).
pub fn text_of(content: OaContent, at: &str) -> Result<String, Error> {
    match content {
        OaContent::Text(t) => Ok(t),
        OaContent::Parts(parts) => {
            let mut out = String::new();
            for (j, p) in parts.into_iter().enumerate() {
                match p {
                    OaPart::Text { text } => out.push_str(&text),
                    OaPart::Refusal { refusal } => out.push_str(&refusal),
                    OaPart::ImageUrl { .. } | OaPart::InputAudio {} | OaPart::File { .. } => {
                        return Err(Error::bad_request(
                            format!("{at}.content[{j}]"),
                            "only text parts are taken here; images and files go in user messages",
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// A user message's content: text, images and documents.
pub fn blocks_of(content: OaContent, at: &str) -> Result<Vec<ContentBlock>, Error> {
    let parts = match content {
        OaContent::Text(t) => return Ok(vec![ContentBlock::Text(t)]),
        OaContent::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    let mut documents = 0;
    for (j, p) in parts.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let bad = |m: String| Error::bad_request(at.clone(), m);
        match p {
            OaPart::Text { text } => blocks.push(ContentBlock::Text(text)),
            OaPart::Refusal { refusal } => blocks.push(ContentBlock::Text(refusal)),
            OaPart::InputAudio {} => {
                return Err(bad(
                    "audio input is not supported by Bedrock's Converse".into()
                ));
            }
            OaPart::ImageUrl { image_url } => {
                blocks.push(ContentBlock::Image(image(&image_url.url).map_err(bad)?))
            }
            OaPart::File { file } => {
                let doc = document(file, documents).map_err(bad)?;
                documents += 1;
                blocks.push(ContentBlock::Document(doc));
            }
        }
    }
    Ok(blocks)
}

fn image(url: &str) -> Result<Image, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err("this deployment does not fetch image URLs: send the image inline as a data URL (data:image/png;base64,...)".into());
    }
    let (mime, bytes) = media::parse_data_url(url)?;
    let format = ImageFormat::from_mime(&mime).ok_or_else(|| {
        format!("'{mime}' images are not supported: Bedrock takes png, jpeg, gif and webp")
    })?;
    let image = Image { format, bytes };
    media::check_image(&image)?;
    Ok(image)
}

fn document(file: OaFile, index: usize) -> Result<Document, String> {
    if file.file_id.is_some() && file.file_data.is_none() {
        return Err("file_id is not supported (this gateway has no Files API): send the file inline as file_data".into());
    }
    let data = file.file_data.ok_or(
        "a file part needs file_data (a data URL such as data:application/pdf;base64,...)",
    )?;
    let filename = file.filename.unwrap_or_default();
    let extension = filename.rsplit_once('.').map(|(_, e)| e);
    let (format, bytes) = if data.starts_with("data:") {
        let (mime, bytes) = media::parse_data_url(&data)?;
        let format = DocumentFormat::from_mime(&mime)
            .or_else(|| extension.and_then(DocumentFormat::from_name))
            .ok_or_else(|| format!("'{mime}' files are not supported: Bedrock takes pdf, csv, doc, docx, xls, xlsx, html, txt and md"))?;
        (format, bytes)
    } else {
        let format = extension
            .and_then(DocumentFormat::from_name)
            .ok_or("give file_data as a data URL, or a filename whose extension says the format")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("file_data is not valid base64: {e}"))?;
        (format, bytes)
    };
    let doc = Document {
        format,
        name: media::document_name_from(&filename, index),
        source: DocumentSource::Bytes(bytes),
        citations: file.citations.is_some_and(|c| c.enabled),
    };
    media::check_document(&doc)?;
    Ok(doc)
}

/// The reasoning an assistant turn carries back: signed blocks are sent to Bedrock as they
/// were; `reasoning_content` alone (no signature) cannot be verified by Bedrock and is left
/// out of the conversation.
pub fn reasoning_blocks(blocks: Vec<ThinkingBlock>, at: &str) -> Result<Vec<ContentBlock>, Error> {
    blocks
        .into_iter()
        .enumerate()
        .filter_map(|(j, b)| match b {
            ThinkingBlock::Thinking {
                thinking,
                signature: Some(signature),
            } => Some(Ok(ContentBlock::Reasoning {
                text: thinking,
                signature: Some(signature),
            })),
            ThinkingBlock::Thinking { .. } => None,
            ThinkingBlock::RedactedThinking { data } => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map(ContentBlock::RedactedReasoning)
                    .map_err(|e| {
                        Error::bad_request(
                            format!("{at}.thinking_blocks[{j}].data"),
                            format!("redacted thinking data must be base64: {e}"),
                        )
                    }),
            ),
        })
        .collect()
}

/// Replaces the `https` image URLs of a Chat Completions body with the images themselves
/// (as data URLs), fetched under the deployment's policy; `None` when there are none. Runs
/// before the body is parsed, so the images are then checked as inline ones are.
pub async fn inline_image_urls(
    body: &[u8],
    fetcher: &dyn ImageFetcher,
) -> Result<Option<Vec<u8>>, Error> {
    // Most bodies link no image: no second parse for them.
    if !body.windows(8).any(|w| w == b"https://") {
        return Ok(None);
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        // Not JSON: the parse proper says what is wrong.
        return Ok(None);
    };
    let mut changed = false;
    let messages = value
        .get_mut("messages")
        .and_then(serde_json::Value::as_array_mut);
    for (i, message) in messages.into_iter().flatten().enumerate() {
        let parts = message
            .get_mut("content")
            .and_then(serde_json::Value::as_array_mut);
        for (j, part) in parts.into_iter().flatten().enumerate() {
            let Some(url) = part
                .pointer_mut("/image_url/url")
                .filter(|u| u.as_str().is_some_and(|u| u.starts_with("https://")))
            else {
                continue;
            };
            let at = format!("messages[{i}].content[{j}]");
            let link = url.as_str().unwrap_or_default().to_owned();
            let bytes = fetcher
                .fetch(&link)
                .await
                .map_err(|m| Error::bad_request(at.clone(), m))?;
            let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
                Error::bad_request(at, "the linked file is not a png, jpeg, gif or webp image")
            })?;
            *url = serde_json::Value::String(format!(
                "data:image/{};base64,{}",
                format.as_str(),
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            ));
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| Error::Internal(format!("the request could not be rewritten: {e}")))
}
