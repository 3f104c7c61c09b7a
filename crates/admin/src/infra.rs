//! Configuration as code: the YAML sources in `infra/` (routing, pricing, budgets,
//! experiments, prompts) validated and pushed to SSM. Only changed values get a new
//! parameter version, so version history is prompt and config history.

use std::path::{Path, PathBuf};

use quarry_aws::settings::Settings;
use quarry_aws::ssm::SsmParams;
use quarry_core::params::ParamError;
use quarry_core::ports::ParameterStore;
use quarry_core::pricing::PricingTable;
use quarry_core::prompts::{CompiledPrompt, PromptSpec};
use quarry_core::routing::RoutingConfig;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is invalid: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Store(#[from] ParamError),
}

fn read_yaml(path: &Path) -> Result<Value, InfraError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InfraError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    serde_yaml_ng::from_str(&text).map_err(|e| InfraError::Invalid {
        path: shown,
        message: e.to_string(),
    })
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> InfraError {
    InfraError::Invalid {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Everything `infra/` holds, validated.
#[derive(Debug, Clone)]
pub struct InfraSources {
    pub routing: RoutingConfig,
    pub pricing: PricingTable,
    pub budgets: Option<Value>,
    pub experiments: Option<Value>,
    pub prompts: Vec<PromptSpec>,
}

impl InfraSources {
    pub fn load(dir: &Path) -> Result<Self, InfraError> {
        let path = dir.join("routing.yaml");
        let routing: RoutingConfig =
            serde_json::from_value(read_yaml(&path)?).map_err(|e| invalid(&path, e))?;
        routing.validate().map_err(|e| invalid(&path, e))?;
        let path = dir.join("pricing.yaml");
        let pricing: PricingTable =
            serde_json::from_value(read_yaml(&path)?).map_err(|e| invalid(&path, e))?;
        for base in routing.models.keys() {
            if pricing.price(base).is_none() {
                tracing::warn!(model = %base, "routing names a model that pricing.yaml does not price");
            }
        }
        let optional = |name: &str| -> Result<Option<Value>, InfraError> {
            let path = dir.join(name);
            if path.exists() {
                read_yaml(&path).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            routing,
            pricing,
            budgets: optional("budgets.yaml")?,
            experiments: optional("experiments.yaml")?,
            prompts: load_prompts(&dir.join("prompts"))?,
        })
    }
}

/// Every `*.yaml` of a directory as a prompt, compiled to prove it renders.
pub fn load_prompts(dir: &Path) -> Result<Vec<PromptSpec>, InfraError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(InfraError::Read {
                path: dir.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    files.sort();
    let mut prompts = Vec::with_capacity(files.len());
    for path in files {
        let spec: PromptSpec =
            serde_json::from_value(read_yaml(&path)?).map_err(|e| invalid(&path, e))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if spec.name != stem {
            return Err(invalid(
                &path,
                format!("name '{}' differs from the file name '{stem}'", spec.name),
            ));
        }
        CompiledPrompt::compile(spec.clone()).map_err(|e| invalid(&path, e))?;
        prompts.push(spec);
    }
    Ok(prompts)
}

/// What a push did to one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub name: String,
    /// The version before the push (None: new).
    pub previous: Option<u64>,
    /// The current version (a new one only when the value changed).
    pub version: u64,
    pub changed: bool,
}

/// Writes `value` unless the latest version already holds the same JSON.
pub async fn put_if_changed(
    ssm: &SsmParams,
    name: &str,
    value: &Value,
    secure: bool,
) -> Result<Pushed, InfraError> {
    let current = match ssm.get(name, secure).await {
        Ok(p) => Some(p),
        Err(ParamError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(p) = &current
        && serde_json::from_str::<Value>(&p.value).ok().as_ref() == Some(value)
    {
        return Ok(Pushed {
            name: name.to_owned(),
            previous: Some(p.version),
            version: p.version,
            changed: false,
        });
    }
    let version = ssm.put(name, &value.to_string(), secure).await?;
    Ok(Pushed {
        name: name.to_owned(),
        previous: current.map(|p| p.version),
        version,
        changed: true,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Pushes routing, pricing, budgets and experiments.
pub async fn push_config(
    ssm: &SsmParams,
    settings: &Settings,
    sources: &InfraSources,
) -> Result<Vec<Pushed>, InfraError> {
    let mut out = vec![
        put_if_changed(
            ssm,
            &settings.param("routing"),
            &to_json(&sources.routing),
            false,
        )
        .await?,
        put_if_changed(
            ssm,
            &settings.param("pricing"),
            &to_json(&sources.pricing),
            false,
        )
        .await?,
    ];
    if let Some(b) = &sources.budgets {
        out.push(put_if_changed(ssm, &settings.param("budgets"), b, false).await?);
    }
    if let Some(x) = &sources.experiments {
        out.push(put_if_changed(ssm, &settings.param("experiments"), x, false).await?);
    }
    Ok(out)
}

/// Pushes prompts; only changed ones get a new version.
pub async fn push_prompts(
    ssm: &SsmParams,
    settings: &Settings,
    prompts: &[PromptSpec],
) -> Result<Vec<Pushed>, InfraError> {
    let mut out = Vec::with_capacity(prompts.len());
    for spec in prompts {
        out.push(
            put_if_changed(
                ssm,
                &settings.prompt_param(&spec.name),
                &to_json(spec),
                false,
            )
            .await?,
        );
    }
    Ok(out)
}
