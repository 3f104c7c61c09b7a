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
//!
//! Files: [`spec`] (what a prompt is), [`render`] (strict rendering within bounds),
//! [`store`] (versions, labels, experiments from the parameter store).

mod render;
mod spec;
mod store;
#[cfg(test)]
mod tests;

pub use self::render::{CompiledPrompt, Rendered};
pub use self::spec::*;
pub use self::store::*;
