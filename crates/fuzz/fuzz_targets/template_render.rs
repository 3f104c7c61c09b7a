//! The prompt renderer: a prompt spec (minijinja template and system template, typed
//! variables with defaults) compiled by `CompiledPrompt::compile`, then rendered strictly
//! with request variables. The input is built by `quarry_fuzz::Reader` (see `seeds.py`).
//!
//! Properties: never a panic; compile fails exactly when the name is invalid, tier and model
//! are both given, a default has the wrong type or a template does not parse; rendering
//! refuses the variables (one `Variables` error) exactly when one is missing, mistyped or
//! unknown, and otherwise renders or fails with a `Render` error; a template with no tags
//! renders as itself; rendering is deterministic. Termination is checked by libFuzzer's
//! `-timeout` and memory by `-rss_limit_mb` (see run.sh).

#![no_main]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use minijinja::{Environment, UndefinedBehavior};
use quarry_core::model::InferenceParams;
use quarry_core::prompts::{
    CacheSettings, CompiledPrompt, PromptError, PromptSpec, Rendered, VarType, VariableSpec,
    validate_name,
};
use quarry_fuzz::Reader;
use serde_json::{Map, Value};

const KINDS: [VarType; 7] = [
    VarType::String,
    VarType::Integer,
    VarType::Number,
    VarType::Boolean,
    VarType::Array,
    VarType::Object,
    VarType::Any,
];

fn accepts(kind: VarType, v: &Value) -> bool {
    match kind {
        VarType::String => v.is_string(),
        VarType::Integer => v.is_i64() || v.is_u64(),
        VarType::Number => v.is_number(),
        VarType::Boolean => v.is_boolean(),
        VarType::Array => v.is_array(),
        VarType::Object => v.is_object(),
        VarType::Any => true,
    }
}

fn read(data: &[u8]) -> (PromptSpec, Map<String, Value>) {
    let mut r = Reader::new(data);
    let head = r.byte();
    let name = if head & 0x80 != 0 {
        r.string()
    } else {
        "fuzzed".to_owned()
    };
    let template = r.string();
    let system = (head & 1 == 1).then(|| r.string());
    let mut variables = BTreeMap::new();
    for _ in 0..r.byte() % 9 {
        let name = r.name();
        let kind = KINDS[usize::from(r.byte()) % KINDS.len()];
        let required = match r.byte() % 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        };
        let default = (r.byte() & 1 == 1).then(|| r.json());
        variables.insert(
            name,
            VariableSpec {
                kind,
                required,
                default,
                description: None,
            },
        );
    }
    let mut given = Map::new();
    for _ in 0..r.byte() % 9 {
        let name = r.name();
        let value = r.json();
        given.insert(name, value);
    }
    let spec = PromptSpec {
        name,
        description: String::new(),
        system,
        template,
        tier: (head & 2 != 0).then(|| "fast".to_owned()),
        model: (head & 4 != 0).then(|| "anthropic.claude-3-haiku".to_owned()),
        parameters: InferenceParams::default(),
        variables,
        output_schema: None,
        cache: CacheSettings::default(),
        prompt_caching: false,
        guardrails: None,
        service_tier: None,
        knowledge_base: None,
        grounding: None,
    };
    (spec, given)
}

/// A panic this target knows about and does not report as a crash (it is reported once, as
/// a known issue): minijinja 3.0.5 indexes out of bounds when it slices an empty string or
/// sequence with a negative step (`{{ text[::-1] }}` with `text = ""`, `{{ [][::-1] }}`), and
/// negates `i64::MIN` (`[::-9223372036854775808]`, with overflow checks), in `slice` in
/// src/value/ops.rs. Tolerated only for that file of that version: an upgrade ends it.
const KNOWN_PANIC_FILE: &str = "minijinja-3.0.5/src/value/ops.rs";

thread_local! {
    static TOLERATE: Cell<bool> = const { Cell::new(false) };
    static KNOWN_HIT: Cell<bool> = const { Cell::new(false) };
}

/// Wraps libfuzzer-sys's panic hook (which aborts): a known panic, while rendering, unwinds
/// instead; any other panic still aborts and is reported.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let known = info
                .location()
                .is_some_and(|l| l.file().replace('\\', "/").ends_with(KNOWN_PANIC_FILE));
            if known && TOLERATE.get() {
                KNOWN_HIT.set(true);
                return;
            }
            aborting(info);
        }));
    });
}

/// Renders, or `None` after the known minijinja panic.
fn render(
    prompt: &CompiledPrompt,
    given: &Map<String, Value>,
) -> Option<Result<Rendered, PromptError>> {
    static WARNED: Once = Once::new();
    TOLERATE.set(true);
    let result = catch_unwind(AssertUnwindSafe(|| prompt.render(given)));
    TOLERATE.set(false);
    match result {
        Ok(r) => Some(r),
        Err(payload) if KNOWN_HIT.replace(false) => {
            WARNED.call_once(|| {
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                eprintln!(
                    "KNOWN ISSUE: minijinja 3.0.5 panicked in {KNOWN_PANIC_FILE} ({message}): \
                     slicing an empty value with a negative step; not counted as a crash"
                );
            });
            None
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The text a template without tags renders to: itself, less a trailing `\n`, then a
/// trailing `\r` (minijinja's lexer without `keep_trailing_newline`).
fn literal(source: &str) -> Option<&str> {
    if source.contains('{') {
        return None;
    }
    let source = source.strip_suffix('\n').unwrap_or(source);
    Some(source.strip_suffix('\r').unwrap_or(source))
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let (spec, given) = read(data);

    // What compile must say, worked out independently.
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let template_ok = env
        .add_template_owned("template", spec.template.clone())
        .is_ok();
    let system_ok = match &spec.system {
        Some(s) => env.add_template_owned("system", s.clone()).is_ok(),
        None => true,
    };
    let defaults_ok = spec
        .variables
        .values()
        .all(|v| v.default.as_ref().is_none_or(|d| accepts(v.kind, d)));
    let name_ok = validate_name(&spec.name).is_ok();

    let prompt = match CompiledPrompt::compile(spec.clone()) {
        Ok(p) => {
            assert!(name_ok && defaults_ok && template_ok && system_ok);
            assert!(!(spec.tier.is_some() && spec.model.is_some()));
            p
        }
        Err(PromptError::InvalidName(_)) => {
            assert!(!name_ok);
            return;
        }
        Err(PromptError::InvalidSpec(_, why)) => {
            assert!(name_ok);
            assert!(
                !defaults_ok
                    || !template_ok
                    || !system_ok
                    || (spec.tier.is_some() && spec.model.is_some()),
                "compile refused a valid spec: {why}"
            );
            return;
        }
        Err(other) => panic!("compile gave {other:?}"),
    };

    // Which variables rendering must refuse.
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut template_vars = BTreeSet::new();
    for name in ["template", "system"] {
        if let Ok(t) = env.get_template(name) {
            template_vars.extend(
                t.undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !globals.contains(v.as_str())),
            );
        }
    }
    let declared = &spec.variables;
    let mistyped = declared
        .iter()
        .any(|(n, v)| given.get(n).is_some_and(|g| !accepts(v.kind, g)));
    let missing_declared = declared
        .iter()
        .any(|(n, v)| !given.contains_key(n) && v.default.is_none() && v.required.unwrap_or(true));
    let missing_used = template_vars
        .iter()
        .any(|n| !declared.contains_key(n) && !given.contains_key(n));
    let unknown = given
        .keys()
        .any(|k| !declared.contains_key(k) && !template_vars.contains(k));
    let refused = mistyped || missing_declared || missing_used || unknown;

    let Some(first) = render(&prompt, &given) else {
        return;
    };
    match &first {
        Err(PromptError::Variables(why)) => {
            assert!(refused, "variables refused without cause: {why}");
        }
        Err(PromptError::Render(_)) => assert!(!refused),
        Err(other) => panic!("render gave {other:?}"),
        Ok(rendered) => {
            assert!(!refused, "rendered despite bad variables");
            assert_eq!(rendered.system.is_some(), spec.system.is_some());
            if let Some(expected) = literal(&spec.template) {
                assert_eq!(rendered.user, expected);
            }
            if let (Some(source), Some(out)) = (&spec.system, &rendered.system)
                && let Some(expected) = literal(source)
            {
                assert_eq!(out, expected);
            }
        }
    }
    assert_eq!(
        Some(first),
        render(&prompt, &given),
        "rendering is not deterministic"
    );
});
