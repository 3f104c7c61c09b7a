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
        if let Some(chunks) = loaded.get(id) {
            return Ok(chunks.clone());
        }
        let spec = spec_of(config, id).ok_or_else(|| not_found(id))?;
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

/// Bedrock's answer for a knowledge base ID that names none.
pub fn not_found(id: &str) -> BedrockError {
    BedrockError::new(
        ErrorKind::ResourceNotFoundException,
        format!("Knowledge base with id {id} does not exist"),
    )
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
