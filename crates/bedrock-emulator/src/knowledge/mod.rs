//! Knowledge Bases served from a local corpus: [`corpus`] loads and chunks a folder,
//! [`filter`] applies Bedrock's RetrievalFilter, [`retrieve`] answers Retrieve and
//! [`generate`] answers RetrieveAndGenerate from the retrieved passages.

pub mod corpus;
pub mod filter;
pub mod generate;
pub mod retrieve;
pub mod serve;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::EmulatorConfig;
use crate::error::{BedrockError, ErrorKind};
use corpus::{Chunk, KnowledgeBaseSpec};

/// Corpora are read and embedded once, at their first query, then served from memory.
#[derive(Default)]
pub struct KnowledgeCache {
    loaded: Mutex<HashMap<String, Arc<Vec<Chunk>>>>,
}

impl KnowledgeCache {
    /// The chunks of knowledge base `id`, loading them on first use.
    pub fn get(&self, config: &EmulatorConfig, id: &str) -> Result<Arc<Vec<Chunk>>, BedrockError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = id_of(id);
        if let Some(chunks) = loaded.get(id) {
            return Ok(chunks.clone());
        }
        let spec = spec_of(config, id).ok_or_else(|| unknown(id))?;
        let chunks =
            Arc::new(corpus::load(id, &spec).map_err(|message| {
                BedrockError::new(ErrorKind::InternalServerException, message)
            })?);
        loaded.insert(id.to_owned(), chunks.clone());
        Ok(chunks)
    }

    pub fn clear(&self) {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// The ID in a knowledge base ARN (`arn:aws:bedrock:REGION:ACCOUNT:knowledge-base/ID`),
/// or the identifier itself.
fn id_of(identifier: &str) -> &str {
    identifier
        .strip_prefix("arn:")
        .and_then(|arn| arn.split_once(":knowledge-base/"))
        .map_or(identifier, |(_, id)| id)
}

/// Bedrock's ID shape: ten letters or digits.
fn is_bedrock_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An ID no knowledge base answers to: a well-formed one is not found; any other is
/// refused by the identifier's pattern, as Bedrock refuses it. Local names that break the
/// pattern (a folder called `quarry-docs`) are still served when they exist.
fn unknown(id: &str) -> BedrockError {
    if is_bedrock_id(id) {
        BedrockError::new(
            ErrorKind::ResourceNotFoundException,
            format!("Knowledge base with id {id} does not exist"),
        )
    } else {
        BedrockError::validation(format!(
            "1 validation error detected: Value '{id}' at 'knowledgeBaseId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9a-zA-Z]{{10}}$|^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{{1,20}}:[0-9]{{12}}:knowledge-base/[0-9a-zA-Z]{{10}}$"
        ))
    }
}

/// A configured knowledge base, or a subfolder of `knowledge_bases_dir` with the default
/// chunking. IDs with anything but letters, digits, `-` and `_` never reach the file
/// system, so a crafted ID cannot name a folder outside the corpus directory.
fn spec_of(config: &EmulatorConfig, id: &str) -> Option<KnowledgeBaseSpec> {
    if let Some(spec) = config.knowledge_bases.get(id) {
        return Some(spec.clone());
    }
    let safe = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let dir: PathBuf = config.knowledge_bases_dir.as_ref()?.join(id);
    (safe && dir.is_dir()).then(|| KnowledgeBaseSpec {
        path: dir,
        chunking: Default::default(),
    })
}
