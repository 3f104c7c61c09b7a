//! Emulator configuration: the model catalog, the latency model, guardrails and faults.
//!
//! Loaded from a YAML (or JSON) file with `--config`, or the built-in default catalog
//! (`default-config.yaml`, compiled in). Everything has a default, so a config file only
//! states what it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::BatchConfig;
use crate::faults::FaultSpec;
use crate::grounding::GroundingSpec;
use crate::knowledge::corpus::KnowledgeBaseSpec;

const DEFAULT_CONFIG: &str = include_str!("../default-config.yaml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    /// Base models that exist, by model ID.
    pub models: BTreeMap<String, ModelSpec>,
    /// Application inference profiles: profile ARN (or its trailing ID) -> base model ID.
    pub application_inference_profiles: BTreeMap<String, String>,
    /// Provisioned Throughput: provisioned model ARN (or its trailing ID) -> the base model
    /// it serves and its capacity.
    pub provisioned_models: BTreeMap<String, crate::provisioned::ProvisionedSpec>,
    /// Prompt routers by ID (`anthropic.claude:1`, or a router's trailing ARN ID) -> the base
    /// models they route between, the one for short prompts first.
    pub prompt_routers: BTreeMap<String, Vec<String>>,
    /// Region prefixes accepted on cross-region inference-profile IDs (`us.`, `eu.`, ...).
    pub inference_profile_prefixes: Vec<String>,
    /// Latency applied to models without their own.
    pub latency: Latency,
    /// Guardrails by identifier, for ApplyGuardrail and `guardrailConfig`.
    pub guardrails: BTreeMap<String, GuardrailSpec>,
    /// Faults active at start, by base model ID or `*`.
    pub faults: BTreeMap<String, FaultSpec>,
    /// Faults active at start that only calls signed for one region meet: region -> base
    /// model ID or `*` -> faults.
    pub region_faults: BTreeMap<String, BTreeMap<String, FaultSpec>>,
    /// The region of requests whose `Authorization` header names none (unsigned calls,
    /// batch records), and of application inference profile ARNs created by such calls.
    pub region: String,
    /// The account of application inference profile ARNs.
    pub account_id: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How many recent requests `/_emulator/requests` keeps.
    pub recorded_requests: usize,
    /// Seed of the pseudo-random choices (probabilistic faults); output never depends on it.
    pub seed: u64,
    /// Lifetime of an emulated prompt-cache entry, in seconds.
    pub prompt_cache_ttl_secs: u64,
    /// Knowledge Bases by ID, each a local folder of documents.
    pub knowledge_bases: BTreeMap<String, KnowledgeBaseSpec>,
    /// A folder whose every subfolder `{id}/` is a knowledge base with default chunking.
    pub knowledge_bases_dir: Option<PathBuf>,
    /// Batch inference jobs: phase length, S3 endpoint and faults.
    pub batch: BatchConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
            application_inference_profiles: BTreeMap::new(),
            provisioned_models: BTreeMap::new(),
            prompt_routers: BTreeMap::new(),
            inference_profile_prefixes: ["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            latency: Latency::default(),
            guardrails: BTreeMap::new(),
            faults: BTreeMap::new(),
            region_faults: BTreeMap::new(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            max_body_bytes: 20 * 1024 * 1024,
            recorded_requests: 200,
            seed: 0x5eed,
            prompt_cache_ttl_secs: 300,
            knowledge_bases: BTreeMap::new(),
            knowledge_bases_dir: None,
            batch: BatchConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read emulator config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid emulator config {path}: {message}")]
    Parse { path: String, message: String },
}

impl EmulatorConfig {
    /// The built-in catalog of common Bedrock models.
    pub fn builtin() -> Self {
        // The embedded file is tested below, so a parse failure here is a build defect;
        // still, fall back to an empty catalog rather than abort.
        serde_yaml_ng::from_str(DEFAULT_CONFIG).unwrap_or_default()
    }

    /// The built-in catalog with the file's settings on top (its models are added to the
    /// built-in ones, or replace them by ID).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml_over_builtin(&text).map_err(|message| ConfigError::Parse {
            path: shown,
            message,
        })
    }

    pub fn from_yaml_over_builtin(text: &str) -> Result<Self, String> {
        let overlay: EmulatorConfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut config = Self::builtin();
        config.models.extend(overlay.models);
        config
            .application_inference_profiles
            .extend(overlay.application_inference_profiles);
        config.prompt_routers.extend(overlay.prompt_routers);
        config.provisioned_models.extend(overlay.provisioned_models);
        config.guardrails.extend(overlay.guardrails);
        config.faults.extend(overlay.faults);
        config.region_faults.extend(overlay.region_faults);
        config.region = overlay.region;
        config.account_id = overlay.account_id;
        config.inference_profile_prefixes = overlay.inference_profile_prefixes;
        config.latency = overlay.latency;
        config.max_body_bytes = overlay.max_body_bytes;
        config.recorded_requests = overlay.recorded_requests;
        config.seed = overlay.seed;
        config.prompt_cache_ttl_secs = overlay.prompt_cache_ttl_secs;
        config.knowledge_bases.extend(overlay.knowledge_bases);
        config.knowledge_bases_dir = overlay.knowledge_bases_dir;
        config.batch = overlay.batch;
        config.check()?;
        Ok(config)
    }

    /// Settings that would make a model unable to answer are refused at load time rather
    /// than at the first request.
    pub fn check(&self) -> Result<(), String> {
        self.models.iter().try_for_each(|(id, spec)| spec.check(id))
    }
}

/// What a base model is and can do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// `anthropic`, `amazon`, `meta`, ...: decides the InvokeModel body format.
    pub provider: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub tool_use: bool,
    pub streaming: bool,
    pub prompt_caching: bool,
    /// Fewest tokens a cache checkpoint must cover to be cached (1,024 for Claude).
    pub cache_min_tokens: u32,
    /// False: the account has no access to the model (AccessDeniedException).
    pub access: bool,
    /// Per-model latency; the global one when absent.
    pub latency: Option<Latency>,
    /// Accepts `image` content blocks.
    pub vision: bool,
    /// Accepts `document` content blocks.
    pub documents: bool,
    /// Answers with citations when a document asks for them.
    pub citations: bool,
    /// Anthropic extended thinking (`additionalModelRequestFields.thinking`).
    pub reasoning: bool,
    /// Accepts `toolChoice.any` and `toolChoice.tool` (models with tool use but without
    /// them only take `auto`).
    pub forced_tool_choice: bool,
    /// `serviceTier` types the model serves.
    pub service_tiers: Vec<String>,
    /// Serves `performanceConfig.latency: optimized`.
    pub latency_optimized: bool,
    /// Accepts cache checkpoints with a one-hour `ttl`.
    pub extended_cache_ttl: bool,
    /// `chat` (Converse and InvokeModel) or `embedding` (InvokeModel only).
    pub kind: ModelKind,
    /// Embedding models: the InvokeModel body they take.
    pub embedding_body: EmbeddingBody,
    /// Embedding models: the vector sizes a request may ask for.
    pub dimensions: Vec<u32>,
    /// Embedding models: the vector size when the request names none.
    pub default_dimension: u32,
    /// Embedding models: most texts one call embeds.
    pub max_texts: u32,
    /// Embedding models: most tokens of one text (longer texts are refused or truncated).
    pub max_input_tokens: u32,
    /// Embedding models: most characters of one text, a limit of the request's schema;
    /// 0 for none.
    pub max_input_chars: u32,
    /// Takes batch inference jobs (CreateModelInvocationJob).
    pub batch: bool,
}

/// What a model answers: conversations, or embedding vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

/// The InvokeModel body of an embedding model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingBody {
    /// Amazon Titan Text Embeddings V2: `{"inputText", "dimensions", "normalize",
    /// "embeddingTypes"}`.
    #[default]
    TitanV2,
    /// Cohere Embed v3: `{"texts", "input_type", "truncate", "embedding_types"}`.
    CohereV3,
    /// Cohere Embed v4: v3's body with `output_dimension` and `max_tokens`.
    CohereV4,
}

impl ModelSpec {
    /// An embedding model's settings must describe a model that can answer at all.
    fn check(&self, id: &str) -> Result<(), String> {
        if self.kind != ModelKind::Embedding {
            return Ok(());
        }
        if !self.dimensions.contains(&self.default_dimension) {
            return Err(format!(
                "model {id}: default_dimension {} is not one of dimensions {:?}",
                self.default_dimension, self.dimensions
            ));
        }
        if self.max_texts == 0 || self.max_input_tokens == 0 {
            return Err(format!(
                "model {id}: an embedding model needs max_texts and max_input_tokens above 0"
            ));
        }
        Ok(())
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            provider: "amazon".into(),
            context_window: 128_000,
            max_output_tokens: 4096,
            tool_use: true,
            streaming: true,
            prompt_caching: false,
            cache_min_tokens: 1024,
            access: true,
            latency: None,
            vision: false,
            documents: false,
            citations: false,
            reasoning: false,
            // Only matters when `tool_use` is on: a tool-using model takes forced choices
            // unless its card says otherwise.
            forced_tool_choice: true,
            service_tiers: vec!["default".into()],
            latency_optimized: false,
            extended_cache_ttl: false,
            kind: ModelKind::Chat,
            embedding_body: EmbeddingBody::TitanV2,
            dimensions: Vec::new(),
            default_dimension: 0,
            max_texts: 1,
            max_input_tokens: 8192,
            max_input_chars: 0,
            batch: true,
        }
    }
}

/// Time to first token and time per further output token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    pub ttft_ms: u64,
    pub per_token_ms: u64,
}

/// What a guardrail does when it finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GuardrailAction {
    Block,
    Anonymize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiRule {
    /// Bedrock's PII entity type: EMAIL, PHONE, US_SOCIAL_SECURITY_NUMBER,
    /// CREDIT_DEBIT_CARD_NUMBER, AWS_ACCESS_KEY, IP_ADDRESS, or any name with a `pattern`.
    #[serde(rename = "type")]
    pub kind: String,
    pub action: GuardrailAction,
    /// A regular expression; built-in types have their own.
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailSpec {
    pub pii: Vec<PiiRule>,
    /// Words or phrases that block (case-insensitive, whole words).
    pub denied_words: Vec<String>,
    pub blocked_input_messaging: String,
    pub blocked_outputs_messaging: String,
    /// Contextual grounding checks of ApplyGuardrail (OUTPUT source only).
    pub contextual_grounding: Option<GroundingSpec>,
}

impl Default for GuardrailSpec {
    fn default() -> Self {
        Self {
            pii: Vec::new(),
            denied_words: Vec::new(),
            blocked_input_messaging: "Sorry, the model cannot answer this question.".into(),
            blocked_outputs_messaging: "Sorry, the model cannot answer this question.".into(),
            contextual_grounding: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_common_models() {
        let config: EmulatorConfig = serde_yaml_ng::from_str(DEFAULT_CONFIG).unwrap();
        assert!(
            config
                .models
                .contains_key("anthropic.claude-3-5-haiku-20241022-v1:0")
        );
        assert!(config.models.contains_key("amazon.nova-lite-v1:0"));
        assert!(config.guardrails.contains_key("quarrydefault"));
        config.check().unwrap();
        for models in config.prompt_routers.values() {
            for model in models {
                assert!(config.models.contains_key(model), "{model}");
            }
        }
    }

    #[test]
    fn capabilities_default_when_a_config_omits_them() {
        let config = EmulatorConfig::from_yaml_over_builtin(
            "models:\n  acme.old-v1:0:\n    provider: acme\n",
        )
        .unwrap();
        let spec = &config.models["acme.old-v1:0"];
        assert!(spec.forced_tool_choice && !spec.vision && !spec.reasoning);
        assert_eq!(spec.service_tiers, ["default"]);
    }

    #[test]
    fn overlay_adds_models_and_keeps_builtin() {
        let config = EmulatorConfig::from_yaml_over_builtin(
            "models:\n  acme.tiny-v1:0:\n    provider: acme\n    max_output_tokens: 16\nlatency:\n  ttft_ms: 5\n",
        )
        .unwrap();
        assert_eq!(config.models["acme.tiny-v1:0"].max_output_tokens, 16);
        assert!(config.models.contains_key("amazon.nova-lite-v1:0"));
        assert_eq!(config.latency.ttft_ms, 5);
    }

    #[test]
    fn embedding_models_need_a_default_dimension_they_serve() {
        let e = EmulatorConfig::from_yaml_over_builtin(
            "models:\n  acme.embed-v1:0:\n    kind: embedding\n    dimensions: [256]\n    default_dimension: 512\n",
        )
        .unwrap_err();
        assert!(e.contains("default_dimension"), "{e}");
        let config = EmulatorConfig::builtin();
        let titan = &config.models["amazon.titan-embed-text-v2:0"];
        assert_eq!(titan.kind, ModelKind::Embedding);
        assert_eq!(titan.default_dimension, 1024);
        assert_eq!(config.models["amazon.nova-lite-v1:0"].kind, ModelKind::Chat);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(EmulatorConfig::from_yaml_over_builtin("modles: {}\n").is_err());
    }
}
