//! Reading a knowledge base folder into chunks: `.md`, `.txt` and `.html` files (tags
//! stripped), each with its optional `FILE.metadata.json` sidecar, split by the configured
//! chunking strategy and embedded with the emulator's deterministic vectors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::embedding::vectors::unit_vector;
use crate::generate::count_tokens;

/// The vector space chunks and queries are compared in.
pub const SPACE: &str = "amazon.titan-embed-text-v2:0";
pub const DIMENSIONS: usize = 512;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBaseSpec {
    /// Folder holding the documents.
    pub path: PathBuf,
    #[serde(default)]
    pub chunking: Chunking,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chunking {
    pub strategy: ChunkStrategy,
    pub max_tokens: u32,
    pub overlap_percent: u32,
}

impl Default for Chunking {
    fn default() -> Self {
        Self {
            strategy: ChunkStrategy::Fixed,
            max_tokens: 300,
            overlap_percent: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkStrategy {
    /// Windows of `max_tokens` tokens, each sharing `overlap_percent` with the previous.
    #[default]
    Fixed,
    /// Sections starting at Markdown headings, long sections cut as `fixed`.
    Headings,
}

/// One retrievable passage.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub text: String,
    /// `s3://{kb-id}/{path relative to the knowledge base folder}`.
    pub uri: String,
    /// The sidecar's `metadataAttributes` plus Bedrock's `x-amz-bedrock-kb-*` keys.
    pub metadata: Map<String, Value>,
    pub vector: Vec<f64>,
    pub words: BTreeSet<String>,
}

/// Lower-cased alphanumeric words, the unit of keyword matching.
pub fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

pub fn load(id: &str, spec: &KnowledgeBaseSpec) -> Result<Vec<Chunk>, String> {
    let mut files = Vec::new();
    collect(&spec.path, &mut files).map_err(|e| {
        format!(
            "cannot read knowledge base {id} at {}: {e}",
            spec.path.display()
        )
    })?;
    files.sort();
    let mut chunks = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&spec.path)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let raw = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let is_html = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let text = if is_html { strip_tags(&raw) } else { raw };
        let attributes = sidecar(&file)?;
        let uri = format!("s3://{id}/{relative}");
        for (n, piece) in split(&text, &spec.chunking).into_iter().enumerate() {
            let mut metadata = attributes.clone();
            metadata.insert(
                "x-amz-bedrock-kb-source-uri".into(),
                Value::from(uri.clone()),
            );
            metadata.insert(
                "x-amz-bedrock-kb-chunk-id".into(),
                Value::from(format!("{relative}#{n}")),
            );
            metadata.insert("x-amz-bedrock-kb-data-source-id".into(), Value::from(id));
            chunks.push(Chunk {
                vector: unit_vector(SPACE, &piece, DIMENSIONS),
                words: words(&piece),
                text: piece,
                uri: uri.clone(),
                metadata,
            });
        }
    }
    Ok(chunks)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if is_document(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_document(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    !name.ends_with(".metadata.json")
        && [".md", ".txt", ".html", ".htm"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// `FILE.metadata.json`'s `metadataAttributes`, Bedrock's sidecar shape.
fn sidecar(file: &Path) -> Result<Map<String, Value>, String> {
    let mut name = file.as_os_str().to_owned();
    name.push(".metadata.json");
    let path = PathBuf::from(name);
    if !path.exists() {
        return Ok(Map::new());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("invalid metadata file {}: {e}", path.display()))?;
    match value.get("metadataAttributes") {
        Some(Value::Object(attributes)) => Ok(attributes.clone()),
        _ => Err(format!(
            "metadata file {} has no metadataAttributes object",
            path.display()
        )),
    }
}

/// Text of an HTML page: tags, scripts and styles removed, entities for the common
/// characters decoded.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let lower = after.get(..7).unwrap_or("").to_lowercase();
        let skip_to = if lower.starts_with("<script") {
            after.to_lowercase().find("</script>").map(|i| i + 9)
        } else if lower.starts_with("<style") {
            after.to_lowercase().find("</style>").map(|i| i + 8)
        } else {
            after.find('>').map(|i| i + 1)
        };
        out.push(' ');
        match skip_to {
            Some(end) => rest = &after[end..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn split(text: &str, chunking: &Chunking) -> Vec<String> {
    match chunking.strategy {
        ChunkStrategy::Fixed => fixed(text, chunking),
        ChunkStrategy::Headings => sections(text)
            .iter()
            .flat_map(|s| fixed(s, chunking))
            .collect(),
    }
}

/// Sections of Markdown, each starting at a heading line (the text before the first
/// heading is a section of its own).
fn sections(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') && !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Windows of whole words of at most `max_tokens` tokens (a single longer word is a
/// window of its own), each starting `overlap_percent` of the previous window's words
/// before its end.
fn fixed(text: &str, chunking: &Chunking) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let max = chunking.max_tokens.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < words.len() {
            let cost = count_tokens(words[end]) + u32::from(end > start);
            if end > start && tokens + cost > max {
                break;
            }
            tokens += cost;
            end += 1;
        }
        out.push(words[start..end].join(" "));
        if end >= words.len() {
            break;
        }
        let overlap = (end - start) * chunking.overlap_percent.min(99) as usize / 100;
        start = (end - overlap).max(start + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_overlap() {
        let text = (0..100)
            .map(|i| format!("w{i:03}"))
            .collect::<Vec<_>>()
            .join(" ");
        let c = Chunking {
            strategy: ChunkStrategy::Fixed,
            max_tokens: 20,
            overlap_percent: 20,
        };
        let parts = split(&text, &c);
        assert!(parts.len() > 5);
        assert!(parts.iter().all(|p| count_tokens(p) <= 20));
        let first: Vec<&str> = parts[0].split(' ').collect();
        let second: Vec<&str> = parts[1].split(' ').collect();
        assert_eq!(second[0], first[first.len() - 2]);
    }

    #[test]
    fn headings_split_sections() {
        let c = Chunking {
            strategy: ChunkStrategy::Headings,
            ..Chunking::default()
        };
        let parts = split("intro\n# One\nalpha\n## Two\nbeta\n", &c);
        assert_eq!(parts, vec!["intro", "# One alpha", "## Two beta"]);
    }

    #[test]
    fn html_is_stripped() {
        let text = strip_tags("<html><style>x{}</style><p>Hello &amp; <b>bye</b></p></html>");
        assert_eq!(text, "Hello & bye");
    }
}
