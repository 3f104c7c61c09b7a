//! Prompt release management on SSM: versions are parameter versions, channels are labels.
//!
//! SSM moves a label but keeps no record of where it was, so every promotion is also
//! appended to `/quarry/{stage}/prompt-labels/{name}` (`{"prod": [1, 3, 4], ...}`): that
//! history is what `rollback` walks back.

use std::collections::BTreeMap;

use quarry_aws::settings::Settings;
use quarry_aws::ssm::SsmParams;
use quarry_core::params::ParamError;
use quarry_core::ports::ParameterStore;
use quarry_core::prompts::{PromptSelector, PromptSpec, validate_name};

#[derive(Debug, thiserror::Error)]
pub enum PromptAdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] ParamError),
}

/// A prompt's versions and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSummary {
    pub name: String,
    pub latest: u64,
    /// Label -> version it points at now.
    pub labels: BTreeMap<String, u64>,
}

/// Label -> versions it pointed at, oldest first (the last is the current one).
pub type LabelHistory = BTreeMap<String, Vec<u64>>;

pub struct PromptAdmin<'a> {
    ssm: &'a SsmParams,
    settings: &'a Settings,
}

fn label_ok(label: &str) -> Result<(), PromptAdminError> {
    let ok = !label.is_empty()
        && label.len() <= 100
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !label.to_ascii_lowercase().starts_with("aws")
        && !label.to_ascii_lowercase().starts_with("ssm");
    if ok {
        Ok(())
    } else {
        Err(PromptAdminError::Invalid(format!(
            "'{label}' is not a valid label: letters, digits, '.', '-', '_'; not starting with a digit, 'aws' or 'ssm'"
        )))
    }
}

impl<'a> PromptAdmin<'a> {
    pub fn new(ssm: &'a SsmParams, settings: &'a Settings) -> Self {
        Self { ssm, settings }
    }

    fn history_name(&self, name: &str) -> String {
        self.settings.param(&format!("prompt-labels/{name}"))
    }

    pub async fn names(&self) -> Result<Vec<String>, PromptAdminError> {
        let prefix = self.settings.param("prompts/");
        Ok(self
            .ssm
            .list(&self.settings.param("prompts"))
            .await?
            .into_iter()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    pub async fn summary(&self, name: &str) -> Result<PromptSummary, PromptAdminError> {
        validate_name(name).map_err(|e| PromptAdminError::Invalid(e.to_string()))?;
        let history = self
            .ssm
            .history(&self.settings.prompt_param(name))
            .await
            .map_err(|e| match e {
                ParamError::NotFound(_) => {
                    PromptAdminError::NotFound(format!("unknown prompt '{name}'"))
                }
                other => other.into(),
            })?;
        let latest = history.last().map(|(v, _, _)| *v).unwrap_or(0);
        let mut labels = BTreeMap::new();
        for (version, _, ls) in &history {
            for l in ls {
                labels.insert(l.clone(), *version);
            }
        }
        Ok(PromptSummary {
            name: name.to_owned(),
            latest,
            labels,
        })
    }

    /// The spec at a version, a label or the latest, with its version.
    pub async fn spec(
        &self,
        name: &str,
        selector: &PromptSelector,
    ) -> Result<(PromptSpec, u64), PromptAdminError> {
        validate_name(name).map_err(|e| PromptAdminError::Invalid(e.to_string()))?;
        let suffix = match selector {
            PromptSelector::Latest | PromptSelector::Default => String::new(),
            PromptSelector::Version(v) => format!(":{v}"),
            PromptSelector::Label(l) => format!(":{l}"),
        };
        let full = format!("{}{suffix}", self.settings.prompt_param(name));
        let p = self.ssm.get(&full, false).await.map_err(|e| match e {
            ParamError::NotFound(_) => {
                PromptAdminError::NotFound(format!("prompt '{name}' has no {}", describe(selector)))
            }
            other => other.into(),
        })?;
        let spec: PromptSpec = serde_json::from_str(&p.value).map_err(|e| {
            PromptAdminError::Invalid(format!("stored prompt {full} is not a prompt: {e}"))
        })?;
        Ok((spec, p.version))
    }

    pub async fn label_history(&self, name: &str) -> Result<LabelHistory, PromptAdminError> {
        match self.ssm.get(&self.history_name(name), false).await {
            Ok(p) => serde_json::from_str(&p.value).map_err(|e| {
                PromptAdminError::Invalid(format!("label history of '{name}' is corrupt: {e}"))
            }),
            Err(ParamError::NotFound(_)) => Ok(LabelHistory::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn save_history(
        &self,
        name: &str,
        history: &LabelHistory,
    ) -> Result<(), PromptAdminError> {
        let value =
            serde_json::to_string(history).map_err(|e| PromptAdminError::Invalid(e.to_string()))?;
        self.ssm
            .put(&self.history_name(name), &value, false)
            .await?;
        Ok(())
    }

    /// Points `label` at `version`; returns the version it pointed at before, if any.
    pub async fn promote(
        &self,
        name: &str,
        version: u64,
        label: &str,
    ) -> Result<Option<u64>, PromptAdminError> {
        label_ok(label)?;
        let summary = self.summary(name).await?;
        if version == 0 || version > summary.latest {
            return Err(PromptAdminError::NotFound(format!(
                "prompt '{name}' has no version {version} (latest is {})",
                summary.latest
            )));
        }
        let before = summary.labels.get(label).copied();
        self.ssm
            .label(&self.settings.prompt_param(name), version, label)
            .await?;
        let mut history = self.label_history(name).await?;
        let entries = history.entry(label.to_owned()).or_default();
        // A label moved outside Quarry is still where rollback starts from.
        if let Some(b) = before
            && entries.last() != Some(&b)
        {
            entries.push(b);
        }
        entries.push(version);
        self.save_history(name, &history).await?;
        Ok(before)
    }

    /// Moves `label` back to the version it pointed at before its current one; returns
    /// (from, to).
    pub async fn rollback(&self, name: &str, label: &str) -> Result<(u64, u64), PromptAdminError> {
        label_ok(label)?;
        let summary = self.summary(name).await?;
        let current = *summary.labels.get(label).ok_or_else(|| {
            PromptAdminError::NotFound(format!("prompt '{name}' has no label '{label}'"))
        })?;
        let mut history = self.label_history(name).await?;
        let entries = history.entry(label.to_owned()).or_default();
        // Drop the current version (and any repeats of it) from the top of the history.
        while entries.last() == Some(&current) {
            entries.pop();
        }
        let previous = *entries.last().ok_or_else(|| {
            PromptAdminError::NotFound(format!(
                "label '{label}' of prompt '{name}' has no earlier version to roll back to"
            ))
        })?;
        self.ssm
            .label(&self.settings.prompt_param(name), previous, label)
            .await?;
        self.save_history(name, &history).await?;
        Ok((current, previous))
    }
}

fn describe(selector: &PromptSelector) -> String {
    match selector {
        PromptSelector::Latest | PromptSelector::Default => "versions".to_owned(),
        PromptSelector::Version(v) => format!("version {v}"),
        PromptSelector::Label(l) => format!("label '{l}'"),
    }
}

/// A prompt spec as the YAML it came from (for `show` and `diff`).
pub fn to_yaml(spec: &PromptSpec) -> String {
    serde_yaml_ng::to_string(spec).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// A unified diff of two prompt versions.
pub fn diff(a: &PromptSpec, a_name: &str, b: &PromptSpec, b_name: &str) -> String {
    let (ya, yb) = (to_yaml(a), to_yaml(b));
    similar::TextDiff::from_lines(&ya, &yb)
        .unified_diff()
        .context_radius(3)
        .header(a_name, b_name)
        .to_string()
}
