//! Compiling and rendering a prompt: strict minijinja, typed variables, and bounds on what
//! a render may cost (fuel, output size, panics caught).

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use super::spec::*;

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
    /// The retrieval query and filter, for a prompt with a `knowledge_base`.
    pub retrieval: Option<(String, Option<Value>)>,
}

/// The strings of a JSON value that are templates (`{{` or `{%`), in a fixed walk order.
fn template_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| template_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| template_strings(v, out)),
        _ => {}
    }
}

/// Replaces the template strings of `value`, in the same order, with `rendered`.
fn replace_templates(value: &mut Value, rendered: &mut impl Iterator<Item = String>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            if let Some(r) = rendered.next() {
                *s = r;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_templates(v, rendered)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| replace_templates(v, rendered)),
        _ => {}
    }
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
        if spec.grounding.is_some() && spec.knowledge_base.is_none() {
            return Err(invalid(
                "grounding checks answers against retrieved passages: declare a knowledge_base"
                    .into(),
            ));
        }
        if let Some(g) = &spec.grounding {
            g.check().map_err(invalid)?;
        }
        let mut names = vec!["template".to_owned(), "system".to_owned()];
        if let Some(kb) = &spec.knowledge_base {
            kb.check().map_err(invalid)?;
            if let Some(query) = &kb.query {
                env.add_template_owned("query", query.clone())
                    .map_err(|e| invalid(format!("knowledge_base.query: {e}")))?;
                names.push("query".into());
            }
            let mut filters = Vec::new();
            if let Some(f) = &kb.filter {
                template_strings(f, &mut filters);
            }
            for (i, f) in filters.into_iter().enumerate() {
                let name = format!("filter.{i}");
                env.add_template_owned(name.clone(), f)
                    .map_err(|e| invalid(format!("knowledge_base.filter: {e}")))?;
                names.push(name);
            }
        }
        let mut template_vars = BTreeSet::new();
        for name in &names {
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
        let user = render("template")?;
        let retrieval = match &self.spec.knowledge_base {
            None => None,
            Some(kb) => {
                let query = match (&kb.query, ctx.get_attr("question")) {
                    (Some(_), _) => render("query")?,
                    (None, Ok(q)) if !q.is_undefined() && !q.is_none() => q.to_string(),
                    (None, _) => user.clone(),
                };
                let filter = match &kb.filter {
                    None => None,
                    Some(f) => {
                        let mut count = Vec::new();
                        template_strings(f, &mut count);
                        let rendered = (0..count.len())
                            .map(|i| render(&format!("filter.{i}")))
                            .collect::<Result<Vec<_>, _>>()?;
                        let mut f = f.clone();
                        replace_templates(&mut f, &mut rendered.into_iter());
                        Some(f)
                    }
                };
                Some((query, filter))
            }
        };
        Ok(Rendered {
            system,
            user,
            retrieval,
        })
    }
}

/// minijinja instructions one render may execute: ample for any prompt (a loop over a few
/// hundred items), far below what would hold a Lambda for seconds.
const RENDER_FUEL: u64 = 1_000_000;

/// The largest rendered system or user text: above any model's context window in characters.
const MAX_RENDERED_BYTES: usize = 4 * 1024 * 1024;
