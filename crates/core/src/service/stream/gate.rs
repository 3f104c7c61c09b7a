//! What stands between the model's deltas and the client: text is released only once the
//! guardrails have seen it. Quarry's own checks release text up to a point no match can
//! straddle ([`StreamGuard`]); a Bedrock guardrail checks each chunk itself before sending it
//! (ConverseStream in sync mode); and while either is on, tool-call arguments and reasoning
//! are held whole, to be checked with the answer.

use serde_json::Value;

use crate::error::Error;
use crate::guardrails::{Findings, GuardrailConfig, StreamGuard, check};
use crate::service::guard;

pub(super) struct Gate {
    config: GuardrailConfig,
    text: Option<StreamGuard>,
    /// A Bedrock guardrail is on (it checks the text itself, in the call).
    bedrock: bool,
    /// Tool-call arguments held until the answer is checked, by block index.
    tools: Vec<(u32, String)>,
    /// Reasoning was held: it is sent whole, once the answer (reasoning included) passed.
    reasoning: bool,
    /// Every piece of the answer is held until the end (a check on the whole answer may
    /// still refuse it): the text released so far.
    whole: Option<String>,
}

/// What is still held when the model's stream ends; sent once the whole answer passed.
pub(super) struct Held {
    pub text: String,
    pub tools: Vec<(u32, String)>,
    pub reasoning: bool,
}

pub(super) fn refused(findings: &Findings) -> Error {
    Error::GuardrailBlocked(format!(
        "the answer was blocked by a guardrail: {}",
        findings.blocked.join(", ")
    ))
}

impl Gate {
    /// `whole`: hold the whole answer until it has been checked as a whole.
    pub(super) fn new(config: &GuardrailConfig, whole: bool) -> Self {
        Self {
            config: config.clone(),
            text: StreamGuard::new(config),
            bedrock: config.bedrock.is_some(),
            tools: Vec::new(),
            reasoning: false,
            whole: whole.then(String::new),
        }
    }

    fn holds(&self) -> bool {
        self.text.is_some() || self.bedrock || self.whole.is_some()
    }

    /// A text delta in; the text to send now (maybe empty), or the refusal.
    pub(super) fn text(&mut self, delta: String) -> Result<String, Error> {
        let released = match self.text.as_mut() {
            Some(g) => g.push(&delta).map_err(|f| refused(&f))?,
            None => delta,
        };
        match self.whole.as_mut() {
            Some(held) => {
                held.push_str(&released);
                Ok(String::new())
            }
            None => Ok(released),
        }
    }

    /// A reasoning delta in; `Some` to forward it now, `None` when it is held (guardrails
    /// check it with the whole answer, and it is sent then).
    pub(super) fn reasoning(&mut self, delta: String) -> Option<String> {
        if self.holds() {
            self.reasoning = true;
            return None;
        }
        Some(delta)
    }

    /// A tool-call delta in; `Some` to forward it now, `None` when it is held.
    pub(super) fn tool(&mut self, index: u32, json: String) -> Option<(u32, String)> {
        if !self.holds() {
            return Some((index, json));
        }
        match self.tools.iter_mut().find(|(i, _)| *i == index) {
            Some((_, held)) => held.push_str(&json),
            None => self.tools.push((index, json)),
        }
        None
    }

    /// The model's stream ended: what is still held, to send once the answer has passed the
    /// checks on the whole (Bedrock's included).
    pub(super) fn end(mut self) -> Result<Held, Error> {
        let mut rest = match self.text.as_mut() {
            Some(g) => g.finish().map_err(|f| refused(&f))?,
            None => String::new(),
        };
        if let Some(held) = self.whole.take() {
            rest = held + &rest;
        }
        let config = self.config;
        let tools = self
            .tools
            .into_iter()
            .map(|(index, json)| {
                // Arguments are JSON: their strings are masked as the answer's JSON is.
                let masked = match serde_json::from_str::<Value>(&json) {
                    Ok(mut v) => {
                        let found = guard::json_strings(&config, &mut v);
                        if !found.blocked.is_empty() {
                            return Err(refused(&found));
                        }
                        v.to_string()
                    }
                    Err(_) => {
                        let (masked, found) = check(&config, &json, false);
                        if !found.blocked.is_empty() {
                            return Err(refused(&found));
                        }
                        masked
                    }
                };
                Ok((index, masked))
            })
            .collect::<Result<_, _>>()?;
        Ok(Held {
            text: rest,
            tools,
            reasoning: self.reasoning,
        })
    }
}
