//! Feedback on answers (`POST /v1/feedback`): a caller rates one of its own requests, and
//! the rating is kept with the request's prompt version and model, so versions can be
//! compared by what users thought of them (`quarry feedback report`) and rated requests
//! can become golden cases (`quarry eval import-feedback`).
//!
//! Scores come on one of two scales: `-1..1` (thumbs: -1, 0, 1, or any value between) or
//! `1..5` (stars). A score is read on the scale named by `scale`; without one, a value above
//! 1 is stars and any other is thumbs (so `1` alone is a thumbs-up). Every score is also
//! kept normalised to `-1..1` (stars: `(s - 3) / 2`), which is what metrics and reports use.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The longest `label` and `comment`, in characters.
pub const MAX_LABEL: usize = 64;
pub const MAX_COMMENT: usize = 2000;
/// The longest request ID (the gateway's own are UUIDs or API Gateway's IDs).
pub const MAX_REQUEST_ID: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scale {
    #[serde(rename = "-1..1")]
    Thumbs,
    #[serde(rename = "1..5")]
    Stars,
}

/// A rating as the caller sent it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    pub request_id: String,
    pub score: f64,
    #[serde(default)]
    pub scale: Option<Scale>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// What a request was, as its ledger marker says: who made it, with which prompt version
/// and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub tenant: String,
    pub model: String,
    /// `name@version`, when a prompt was used.
    pub prompt: Option<String>,
}

/// A stored rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub tenant: String,
    pub request_id: String,
    /// The prompt's name and version (`-` and 0 without a prompt).
    pub prompt: String,
    pub version: u64,
    pub model: String,
    pub score: f64,
    pub scale: Scale,
    /// The score on `-1..1`.
    pub normalized: f64,
    pub label: Option<String>,
    /// After the tenant's guardrails (a comment is user text like any other).
    pub comment: Option<String>,
    /// RFC 3339.
    pub at: String,
}

impl FeedbackInput {
    /// Checks the rating and reads its scale: a clear error for anything out of range.
    pub fn checked(&self) -> Result<(Scale, f64), Error> {
        let id = &self.request_id;
        if id.is_empty() || id.len() > MAX_REQUEST_ID || id.chars().any(char::is_control) {
            return Err(Error::bad_request(
                "request_id",
                format!(
                    "give the request_id of an answer (1 to {MAX_REQUEST_ID} characters, as the response's request_id)"
                ),
            ));
        }
        let s = self.score;
        let scale = match self.scale {
            Some(scale) => scale,
            None if s > 1.0 => Scale::Stars,
            None => Scale::Thumbs,
        };
        let (low, high) = match scale {
            Scale::Thumbs => (-1.0, 1.0),
            Scale::Stars => (1.0, 5.0),
        };
        if !s.is_finite() || s < low || s > high {
            return Err(Error::bad_request(
                "score",
                format!(
                    "score {s} is out of range: give -1..1 (thumbs) or 1..5 (stars), with \"scale\": \"-1..1\" or \"1..5\" when 1 is meant as one star"
                ),
            ));
        }
        for (field, value, max) in [
            ("label", &self.label, MAX_LABEL),
            ("comment", &self.comment, MAX_COMMENT),
        ] {
            if value.as_ref().is_some_and(|v| v.chars().count() > max) {
                return Err(Error::bad_request(
                    field,
                    format!("{field} is longer than {max} characters"),
                ));
            }
        }
        let normalized = match scale {
            Scale::Thumbs => s,
            Scale::Stars => (s - 3.0) / 2.0,
        };
        Ok((scale, normalized))
    }
}

/// `name@version` split; `("-", 0)` for none or anything unreadable.
pub fn prompt_version(prompt: Option<&str>) -> (String, u64) {
    prompt
        .and_then(|p| p.rsplit_once('@'))
        .and_then(|(name, v)| v.parse().ok().map(|v| (name.to_owned(), v)))
        .unwrap_or_else(|| ("-".to_owned(), 0))
}

/// Records a caller's rating of one of its own requests: checked, matched to the request
/// (another tenant's request, or none, is `not_found`: the same answer either way, so no
/// caller can learn another's request IDs), the comment through the tenant's guardrails,
/// stored (a second rating of the request replaces the first) and counted in the metrics.
pub async fn rate(
    store: &dyn crate::ports::FeedbackStore,
    caller: &crate::tenancy::Caller,
    input: FeedbackInput,
) -> Result<Feedback, Error> {
    let (scale, normalized) = input.checked()?;
    let facts = store
        .request(&caller.tenant, &input.request_id)
        .await
        .map_err(Error::Dependency)?
        .filter(|f| f.tenant == caller.tenant)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no answered request {} of this tenant: feedback is taken for the tenant's own requests, by the request_id of the response, for 45 days",
                input.request_id.chars().take(MAX_REQUEST_ID).collect::<String>()
            ))
        })?;
    let comment = match (input.comment, &caller.policy.guardrails) {
        (Some(c), Some(config)) if config.is_active() => {
            let (checked, findings) = crate::guardrails::check(config, &c, true);
            if !findings.blocked.is_empty() {
                return Err(Error::GuardrailBlocked(format!(
                    "the comment was blocked by a guardrail: {}",
                    findings.blocked.join(", ")
                )));
            }
            Some(checked)
        }
        (c, _) => c,
    };
    let (prompt, version) = prompt_version(facts.prompt.as_deref());
    let feedback = Feedback {
        tenant: caller.tenant.clone(),
        request_id: input.request_id,
        prompt,
        version,
        model: facts.model,
        score: input.score,
        scale,
        normalized,
        label: input.label,
        comment,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    store.put(&feedback).await.map_err(Error::Dependency)?;
    crate::telemetry::feedback(
        normalized,
        &feedback.prompt,
        &feedback.version.to_string(),
        &feedback.model,
    );
    Ok(feedback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(score: f64, scale: Option<Scale>) -> FeedbackInput {
        FeedbackInput {
            request_id: "r-1".into(),
            score,
            scale,
            label: None,
            comment: None,
        }
    }

    #[test]
    fn scales_and_normalisation() {
        assert_eq!(input(1.0, None).checked().unwrap(), (Scale::Thumbs, 1.0));
        assert_eq!(input(-0.5, None).checked().unwrap(), (Scale::Thumbs, -0.5));
        assert_eq!(input(5.0, None).checked().unwrap(), (Scale::Stars, 1.0));
        assert_eq!(input(2.0, None).checked().unwrap(), (Scale::Stars, -0.5));
        assert_eq!(
            input(1.0, Some(Scale::Stars)).checked().unwrap(),
            (Scale::Stars, -1.0)
        );
        for bad in [
            input(6.0, None),
            input(-2.0, None),
            input(f64::NAN, None),
            input(0.0, Some(Scale::Stars)),
            input(3.0, Some(Scale::Thumbs)),
        ] {
            assert!(bad.checked().is_err(), "{bad:?}");
        }
        let mut long = input(1.0, None);
        long.comment = Some("x".repeat(MAX_COMMENT + 1));
        assert!(long.checked().is_err());
        long.comment = None;
        long.request_id = "a\nb".into();
        assert!(long.checked().is_err());
    }

    #[test]
    fn prompt_versions_are_read() {
        assert_eq!(prompt_version(Some("support@3")), ("support".into(), 3));
        assert_eq!(prompt_version(Some("a@b@12")), ("a@b".into(), 12));
        assert_eq!(prompt_version(Some("junk")), ("-".into(), 0));
        assert_eq!(prompt_version(None), ("-".into(), 0));
    }
}
