//! Prompts as versioned configuration.
//!
//! `infra/prompts/*.yaml` is the source of truth; each prompt is stored as JSON at
//! `/quarry/{stage}/prompts/{name}`. Parameter versions are prompt versions; labels (`prod`,
//! `canary`, ...) are release channels. A request picks a prompt by name and version or
//! label (default: label `prod`, else the latest version); an optional experiment splits
//! traffic between labels by a stable hash of a caller-supplied key.
//!
//! Templates render with minijinja in strict mode: every variable a template uses must be
//! given (or have a default), with the declared type; a request that misses one gets a 400
//! listing all of them, not the first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::model::InferenceParams;
use crate::params::{CachedParams, ParamError, Parameter, ParameterStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

impl VarType {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Number => v.is_number(),
            Self::Boolean => v.is_boolean(),
            Self::Array => v.is_array(),
            Self::Object => v.is_object(),
            Self::Any => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
            Self::Any => "any",
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    #[serde(rename = "type")]
    pub kind: VarType,
    /// Required unless it has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl VariableSpec {
    fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// Response caching for a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// A prompt marked cacheable may be cached with `cache: auto` at any temperature.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    3600
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_seconds: default_ttl(),
        }
    }
}

/// One prompt, as written in `infra/prompts/NAME.yaml` and stored in SSM as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub parameters: InferenceParams,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableSpec>,
    /// JSON Schema the output must validate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub cache: CacheSettings,
    /// Insert a Bedrock prompt-cache checkpoint after the system prompt (models that support
    /// it, when the system prompt is long enough to be cached).
    #[serde(default)]
    pub prompt_caching: bool,
    /// Guardrail settings for this prompt (see the chat handler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<crate::guardrails::GuardrailConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("prompt name '{0}' is invalid: use letters, digits, '-', '_' and '.' (at most 128)")]
    InvalidName(String),
    #[error("prompt '{0}' is invalid: {1}")]
    InvalidSpec(String, String),
    #[error("{0}")]
    Variables(String),
    #[error("template rendering failed: {0}")]
    Render(String),
}

impl From<PromptError> for Error {
    fn from(e: PromptError) -> Self {
        match e {
            PromptError::InvalidName(_) => Error::bad_request("prompt", e.to_string()),
            PromptError::Variables(_) => Error::bad_request("variables", e.to_string()),
            PromptError::Render(_) => Error::bad_request("variables", e.to_string()),
            PromptError::InvalidSpec(..) => Error::Config(ParamError::Invalid {
                name: "prompt".into(),
                message: e.to_string(),
            }),
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), PromptError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PromptError::InvalidName(name.to_owned()))
    }
}

/// A prompt version ready to render: the spec with its templates compiled once.
pub struct CompiledPrompt {
    pub spec: PromptSpec,
    env: Environment<'static>,
    /// Variables the templates use that are not declared.
    template_vars: BTreeSet<String>,
}

impl std::fmt::Debug for CompiledPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPrompt")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// The rendered prompt: what goes to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub system: Option<String>,
    pub user: String,
}

impl CompiledPrompt {
    pub fn compile(spec: PromptSpec) -> Result<Self, PromptError> {
        validate_name(&spec.name)?;
        let invalid = |m: String| PromptError::InvalidSpec(spec.name.clone(), m);
        if spec.tier.is_some() && spec.model.is_some() {
            return Err(invalid("give tier or model, not both".into()));
        }
        for (name, var) in &spec.variables {
            if let Some(d) = &var.default
                && !var.kind.accepts(d)
            {
                return Err(invalid(format!(
                    "default of variable '{name}' is {}, declared {}",
                    json_type(d),
                    var.kind.name()
                )));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A bound on the work of one render: a prompt that loops over what a request sends
        // cannot keep a Lambda busy until its timeout.
        env.set_fuel(Some(RENDER_FUEL));
        env.add_template_owned("template", spec.template.clone())
            .map_err(|e| invalid(format!("template: {e}")))?;
        if let Some(system) = &spec.system {
            env.add_template_owned("system", system.clone())
                .map_err(|e| invalid(format!("system: {e}")))?;
        }
        let mut template_vars = BTreeSet::new();
        for name in ["template", "system"] {
            if let Ok(t) = env.get_template(name) {
                template_vars.extend(t.undeclared_variables(false));
            }
        }
        // minijinja reports the global functions a template calls (`range`, `namespace`,
        // `dict`, ...) as undeclared: they are not variables the request must give.
        template_vars.retain(|v| env.globals().all(|(global, _)| global != v));
        Ok(Self {
            spec,
            env,
            template_vars,
        })
    }

    /// Checks variables against the declarations and the templates, then renders.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Rendered, PromptError> {
        let mut ctx = Map::new();
        let mut missing = Vec::new();
        let mut mistyped = Vec::new();
        for (name, spec) in &self.spec.variables {
            match vars.get(name) {
                Some(v) if !spec.kind.accepts(v) => mistyped.push(format!(
                    "'{name}' must be {}, got {}",
                    spec.kind.name(),
                    json_type(v)
                )),
                Some(v) => {
                    ctx.insert(name.clone(), v.clone());
                }
                None => match &spec.default {
                    Some(d) => {
                        ctx.insert(name.clone(), d.clone());
                    }
                    None if spec.is_required() => missing.push(name.clone()),
                    None => {}
                },
            }
        }
        let unknown: Vec<&String> = vars
            .keys()
            .filter(|k| !self.spec.variables.contains_key(*k) && !self.template_vars.contains(*k))
            .collect();
        for name in &self.template_vars {
            if self.spec.variables.contains_key(name) {
                continue;
            }
            match vars.get(name) {
                Some(v) => {
                    ctx.insert(name.clone(), v.clone());
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() || !mistyped.is_empty() || !unknown.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                missing.sort();
                missing.dedup();
                parts.push(format!("missing: {}", missing.join(", ")));
            }
            if !mistyped.is_empty() {
                parts.push(format!("wrong type: {}", mistyped.join("; ")));
            }
            if !unknown.is_empty() {
                let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
                parts.push(format!(
                    "not declared by prompt '{}': {}",
                    self.spec.name,
                    list.join(", ")
                ));
            }
            return Err(PromptError::Variables(format!(
                "variables of prompt '{}' do not fit: {}",
                self.spec.name,
                parts.join(" | ")
            )));
        }
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        let render = |name: &str| -> Result<String, PromptError> {
            // minijinja can panic on some inputs (see the release profile); a panic here is
            // this request's error, not the process's.
            let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.env.get_template(name).and_then(|t| t.render(&ctx))
            }))
            .map_err(|_| {
                PromptError::Render(format!(
                    "the {name} of prompt '{}' cannot be rendered with these variables",
                    self.spec.name
                ))
            })?
            .map_err(|e| PromptError::Render(e.to_string()))?;
            if rendered.len() > MAX_RENDERED_BYTES {
                return Err(PromptError::Render(format!(
                    "the {name} of prompt '{}' renders to {} bytes, over the limit of {MAX_RENDERED_BYTES}",
                    self.spec.name,
                    rendered.len()
                )));
            }
            Ok(rendered)
        };
        let system = if self.spec.system.is_some() {
            Some(render("system")?)
        } else {
            None
        };
        Ok(Rendered {
            system,
            user: render("template")?,
        })
    }
}

/// minijinja instructions one render may execute: ample for any prompt (a loop over a few
/// hundred items), far below what would hold a Lambda for seconds.
const RENDER_FUEL: u64 = 1_000_000;

/// The largest rendered system or user text: above any model's context window in characters.
const MAX_RENDERED_BYTES: usize = 4 * 1024 * 1024;

/// How a request picks a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSelector {
    /// Label `prod` when it exists, else the latest version.
    Default,
    Latest,
    Version(u64),
    Label(String),
}

impl PromptSelector {
    /// The SSM name suffix (`:3`, `:canary`), or none for the latest version.
    fn suffix(&self) -> String {
        match self {
            Self::Default => ":prod".into(),
            Self::Latest => String::new(),
            Self::Version(v) => format!(":{v}"),
            Self::Label(l) => format!(":{l}"),
        }
    }
}

/// `NAME`, `NAME@VERSION` or `NAME:LABEL`.
pub fn parse_reference(s: &str) -> Result<(String, PromptSelector), PromptError> {
    let (name, selector) = if let Some((n, v)) = s.split_once('@') {
        let v: u64 = v
            .parse()
            .map_err(|_| PromptError::InvalidName(s.to_owned()))?;
        (n, PromptSelector::Version(v))
    } else if let Some((n, l)) = s.split_once(':') {
        (n, PromptSelector::Label(l.to_owned()))
    } else {
        (s, PromptSelector::Latest)
    };
    validate_name(name)?;
    Ok((name.to_owned(), selector))
}

/// A resolved prompt version.
#[derive(Debug, Clone)]
pub struct PromptVersion {
    pub name: String,
    pub version: u64,
    /// The label it was reached through, if any.
    pub label: Option<String>,
    pub prompt: Arc<CompiledPrompt>,
}

fn parse_prompt(p: &Parameter) -> Result<CompiledPrompt, ParamError> {
    let spec: PromptSpec = serde_json::from_str(&p.value).map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })?;
    CompiledPrompt::compile(spec).map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })
}

/// Label weights per prompt for A/B between channels: `{"summarize": {"prod": 90, "canary": 10}}`.
pub type Experiments = BTreeMap<String, BTreeMap<String, u32>>;

/// Picks a label by a stable hash of (prompt, key): the same key always lands on the same
/// channel while the weights stay the same.
pub fn choose_label(prompt: &str, key: &str, weights: &BTreeMap<String, u32>) -> Option<String> {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let digest = Sha256::digest(format!("{prompt}\u{0}{key}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let mut point = u64::from_be_bytes(head) % total;
    for (label, w) in weights {
        let w = u64::from(*w);
        if point < w {
            return Some(label.clone());
        }
        point -= w;
    }
    None
}

/// Prompts from the parameter store, cached in the warm process with a max age, serving the
/// last-known-good version when the store fails.
pub struct PromptStore {
    prefix: String,
    cache: CachedParams<CompiledPrompt>,
    /// Prompts last seen without a `prod` label: while the store is down, their default is
    /// the (last-known-good) latest version; for the others it is never a guess.
    unlabelled: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PromptStore {
    /// `prefix` is the stage's parameter prefix (`/quarry/dev`).
    pub fn new(store: Arc<dyn ParameterStore>, prefix: &str, max_age: Duration) -> Self {
        Self {
            prefix: format!("{}/prompts", prefix.trim_end_matches('/')),
            cache: CachedParams::new(store, max_age, false, parse_prompt),
            unlabelled: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn unlabelled_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unlabelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn parameter_name(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, name)
    }

    pub async fn get(&self, name: &str, selector: &PromptSelector) -> Result<PromptVersion, Error> {
        validate_name(name)?;
        let base = self.parameter_name(name);
        let fetch = |sel: PromptSelector| {
            let key = format!("{base}{}", sel.suffix());
            async move { (sel, self.cache.get(&key).await) }
        };
        let (sel, result) = fetch(selector.clone()).await;
        let (sel, result) = match (selector, result) {
            // No `prod` label yet: the latest version is the default.
            (PromptSelector::Default, Err(ParamError::NotFound(_))) => {
                self.unlabelled_set().insert(name.to_owned());
                fetch(PromptSelector::Latest).await
            }
            // The store is down and this prompt had no `prod` label when last read: its
            // default is the latest version, served last-known-good if cached.
            (PromptSelector::Default, Err(ParamError::Unavailable(reason)))
                if self.unlabelled_set().contains(name) =>
            {
                match fetch(PromptSelector::Latest).await {
                    (sel, Ok(found)) => (sel, Ok(found)),
                    (sel, Err(_)) => (sel, Err(ParamError::Unavailable(reason))),
                }
            }
            (PromptSelector::Default, Ok(found)) => {
                self.unlabelled_set().remove(name);
                (sel, Ok(found))
            }
            (_, r) => (sel, r),
        };
        match result {
            Ok((prompt, version)) => Ok(PromptVersion {
                name: name.to_owned(),
                version,
                label: match sel {
                    PromptSelector::Label(l) => Some(l),
                    PromptSelector::Default => Some("prod".into()),
                    _ => None,
                },
                prompt,
            }),
            Err(ParamError::NotFound(_)) => Err(Error::bad_request(
                "prompt",
                match selector {
                    PromptSelector::Version(v) => format!("prompt '{name}' has no version {v}"),
                    PromptSelector::Label(l) => format!("prompt '{name}' has no label '{l}'"),
                    _ => format!("unknown prompt '{name}'"),
                },
            )),
            Err(e) => Err(Error::Config(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::MemoryParams;
    use serde_json::json;

    fn spec() -> PromptSpec {
        serde_json::from_value(json!({
            "name": "summarize",
            "system": "You summarize in {{ language }}.",
            "template": "Summarize in {{ max_words }} words:\n{{ text }}",
            "variables": {
                "text": {"type": "string"},
                "max_words": {"type": "integer", "default": 50},
                "language": {"type": "string", "default": "English"}
            }
        }))
        .unwrap()
    }

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_with_defaults() {
        let p = CompiledPrompt::compile(spec()).unwrap();
        let r = p.render(&vars(json!({"text": "hello"}))).unwrap();
        assert_eq!(r.user, "Summarize in 50 words:\nhello");
        assert_eq!(r.system.as_deref(), Some("You summarize in English."));
    }

    #[test]
    fn lists_every_problem_at_once() {
        let p = CompiledPrompt::compile(spec()).unwrap();
        let e = p
            .render(&vars(json!({"max_words": "ten", "colour": 1})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing: text"), "{e}");
        assert!(e.contains("'max_words' must be integer, got string"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn undeclared_template_variables_are_required() {
        let mut s = spec();
        s.template = "{{ text }} {{ extra }}".into();
        let p = CompiledPrompt::compile(s).unwrap();
        let e = p
            .render(&vars(json!({"text": "x"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing: extra"), "{e}");
        assert_eq!(
            p.render(&vars(json!({"text": "x", "extra": "y"})))
                .unwrap()
                .user,
            "x y"
        );
    }

    #[test]
    fn hostile_renders_are_errors_not_panics_or_hangs() {
        let render = |template: &str, text: &str| {
            let mut s = spec();
            s.template = template.into();
            CompiledPrompt::compile(s)
                .unwrap()
                .render(&vars(json!({"text": text})))
        };
        // minijinja 3.0.5 panics here; the request gets an error.
        let e = render("{{ text[::-1] }}", "").unwrap_err().to_string();
        assert!(e.contains("cannot be rendered"), "{e}");
        assert_eq!(render("{{ text[::-1] }}", "ab").unwrap().user, "ba");
        // Out of fuel instead of running for minutes.
        let e = render(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fuel"), "{e}");
        let e = render("{{ text * 5000000 }}", "xy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("over the limit"), "{e}");
    }

    #[test]
    fn global_functions_are_not_required_variables() {
        let mut s = spec();
        s.template = "{% for i in range(2) %}{{ i }}{% endfor %}{% set ns = namespace(n=1) %}\
                      {{ ns.n }} {{ text }}"
            .into();
        let p = CompiledPrompt::compile(s).unwrap();
        assert_eq!(p.render(&vars(json!({"text": "x"}))).unwrap().user, "011 x");
        let e = p
            .render(&vars(json!({"text": "x", "range": 3})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not declared by prompt"), "{e}");
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut s = spec();
        s.template = "{{ unclosed".into();
        assert!(CompiledPrompt::compile(s).is_err());
        let mut s = spec();
        s.name = "../etc".into();
        assert!(CompiledPrompt::compile(s).is_err());
        let mut s = spec();
        s.variables.get_mut("max_words").unwrap().default = Some(json!("x"));
        assert!(CompiledPrompt::compile(s).is_err());
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            parse_reference("a@3").unwrap(),
            ("a".into(), PromptSelector::Version(3))
        );
        assert_eq!(
            parse_reference("a:prod").unwrap(),
            ("a".into(), PromptSelector::Label("prod".into()))
        );
        assert_eq!(
            parse_reference("a").unwrap(),
            ("a".into(), PromptSelector::Latest)
        );
        assert!(parse_reference("a@x").is_err());
    }

    #[test]
    fn ab_split_is_stable_and_weighted() {
        let weights: BTreeMap<String, u32> = [("prod".into(), 90), ("canary".into(), 10)].into();
        let first = choose_label("p", "user-1", &weights);
        assert_eq!(first, choose_label("p", "user-1", &weights));
        let canary = (0..2000)
            .filter(|i| choose_label("p", &format!("u{i}"), &weights).as_deref() == Some("canary"))
            .count();
        assert!(
            (120..=280).contains(&canary),
            "{canary} of 2000 on canary at 10%"
        );
    }

    #[tokio::test]
    async fn default_selector_falls_back_to_latest() {
        let params = Arc::new(MemoryParams::default());
        params.put(
            "/q/prompts/summarize",
            &serde_json::to_string(&spec()).unwrap(),
        );
        let store = PromptStore::new(params.clone(), "/q", Duration::from_secs(60));
        let v = store
            .get("summarize", &PromptSelector::Default)
            .await
            .unwrap();
        assert_eq!(v.version, 1);
        let e = store
            .get("nope", &PromptSelector::Default)
            .await
            .unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert!(e.to_string().contains("unknown prompt 'nope'"));
    }
}
