//! A batch job's mode: `online` (the SQS worker, item by item), `bulk` (Bedrock batch
//! inference, about half the price, within a day) or `auto`. The mode is decided once, when
//! the job is opened (its item count announced), and kept: every item of a job follows the
//! same decision even if the policy changes while it runs.

use serde::{Deserialize, Serialize};

/// What a job asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    Online,
    Bulk,
    /// `bulk` when the job is large enough and its deadline allows, else `online`.
    #[default]
    Auto,
}

impl JobMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Bulk => "bulk",
            Self::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "online" => Self::Online,
            "bulk" => Self::Bulk,
            "auto" => Self::Auto,
            _ => return None,
        })
    }
}

/// `routing.yaml`'s `bulk:` section: when bulk is chosen and how bulk jobs are run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkPolicy {
    /// Fewest items for `auto` to choose bulk (Bedrock's minimum records per job is 100).
    #[serde(default = "default_min_items")]
    pub min_items: u64,
    /// How long a bulk job may take (Bedrock's completion window): `auto` chooses bulk only
    /// when the job's deadline is at least this far away.
    #[serde(default = "default_turnaround_hours")]
    pub turnaround_hours: u32,
    /// A bulk job whose item count was never announced is submitted once no item has
    /// arrived for this long.
    #[serde(default = "default_quiet_secs")]
    pub quiet_secs: u64,
    /// First wait between two status checks of a Bedrock job; doubled while nothing
    /// changes, up to `max_poll_secs`.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    #[serde(default = "default_max_poll_secs")]
    pub max_poll_secs: u64,
    /// Records Bedrock failed with a retryable error (throttling, 5xx) run online; with
    /// `false` every failed record is reported with Bedrock's error.
    #[serde(default = "yes")]
    pub retry_failed_online: bool,
}

fn default_min_items() -> u64 {
    100
}
fn default_turnaround_hours() -> u32 {
    24
}
fn default_quiet_secs() -> u64 {
    300
}
fn default_poll_secs() -> u64 {
    60
}
fn default_max_poll_secs() -> u64 {
    900
}
fn yes() -> bool {
    true
}

impl Default for BulkPolicy {
    fn default() -> Self {
        Self {
            min_items: default_min_items(),
            turnaround_hours: default_turnaround_hours(),
            quiet_secs: default_quiet_secs(),
            poll_secs: default_poll_secs(),
            max_poll_secs: default_max_poll_secs(),
            retry_failed_online: true,
        }
    }
}

/// A job's decided mode, kept in its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// What was asked for.
    pub requested: JobMode,
    /// What runs: `Online` or `Bulk`, never `Auto`.
    pub mode: JobMode,
    /// Why, in words for the status.
    pub reason: String,
    /// Items announced, when known.
    pub expected: Option<u64>,
    /// Unix milliseconds by which the job should be done.
    pub deadline_ms: Option<i64>,
}

const HOUR_MS: i64 = 3_600_000;

/// Decides the mode of a job of `expected` items due by `deadline_ms`.
pub fn resolve(
    requested: JobMode,
    expected: Option<u64>,
    deadline_ms: Option<i64>,
    now_ms: i64,
    policy: &BulkPolicy,
) -> JobPlan {
    let min = policy.min_items;
    let (mode, reason) = match (requested, expected) {
        (JobMode::Online, _) => (JobMode::Online, "online was asked for".to_owned()),
        (JobMode::Bulk | JobMode::Auto, Some(n)) if n < min => (
            JobMode::Online,
            format!(
                "{n} items: bulk needs at least {min} (Bedrock's minimum per batch inference job)"
            ),
        ),
        (JobMode::Bulk, _) => (JobMode::Bulk, "bulk was asked for".to_owned()),
        (JobMode::Auto, None) => (
            JobMode::Online,
            "the item count was not announced, so bulk cannot be chosen".to_owned(),
        ),
        (JobMode::Auto, Some(n)) => {
            let turnaround = i64::from(policy.turnaround_hours) * HOUR_MS;
            match deadline_ms {
                Some(d) if d < now_ms.saturating_add(turnaround) => (
                    JobMode::Online,
                    format!(
                        "the deadline is less than {} h away, bulk's turnaround",
                        policy.turnaround_hours
                    ),
                ),
                _ => (
                    JobMode::Bulk,
                    format!("{n} items and no deadline sooner than bulk's turnaround"),
                ),
            }
        }
    };
    JobPlan {
        requested,
        mode,
        reason,
        expected,
        deadline_ms,
    }
}

/// A deadline: an RFC 3339 time (`2026-12-01T09:00:00Z`), or a time from `now_ms` in
/// minutes, hours or days (`90m`, `36h`, `2d`). Unix milliseconds.
pub fn parse_deadline(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let unit_ms = match s.chars().last() {
        Some('m') => 60_000,
        Some('h') => HOUR_MS,
        Some('d') => 24 * HOUR_MS,
        _ => 0,
    };
    let count = s
        .get(..s.len().saturating_sub(1))
        .and_then(|n| n.parse::<u32>().ok());
    match count {
        Some(n) if unit_ms > 0 && n > 0 => Ok(now_ms.saturating_add(i64::from(n) * unit_ms)),
        _ => Err(format!(
            "deadline '{s}': give an RFC 3339 time (2026-12-01T09:00:00Z) or a duration (90m, 36h, 2d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn auto_goes_bulk_only_when_large_enough_and_the_deadline_allows() {
        let p = BulkPolicy::default();
        let r = |mode, n, deadline| resolve(mode, n, deadline, NOW, &p).mode;
        assert_eq!(r(JobMode::Auto, Some(120), None), JobMode::Bulk);
        assert_eq!(r(JobMode::Auto, Some(100), None), JobMode::Bulk);
        assert_eq!(r(JobMode::Auto, Some(99), None), JobMode::Online);
        assert_eq!(r(JobMode::Auto, Some(10), None), JobMode::Online);
        assert_eq!(r(JobMode::Auto, None, None), JobMode::Online);
        assert_eq!(
            r(JobMode::Auto, Some(500), Some(NOW + 2 * HOUR_MS)),
            JobMode::Online
        );
        assert_eq!(
            r(JobMode::Auto, Some(500), Some(NOW + 25 * HOUR_MS)),
            JobMode::Bulk
        );
        assert_eq!(r(JobMode::Online, Some(5000), None), JobMode::Online);
        // Asked for, bulk runs whatever the deadline, but never below Bedrock's minimum.
        assert_eq!(
            r(JobMode::Bulk, Some(200), Some(NOW + HOUR_MS)),
            JobMode::Bulk
        );
        assert_eq!(r(JobMode::Bulk, None, None), JobMode::Bulk);
        let small = resolve(JobMode::Bulk, Some(10), None, NOW, &p);
        assert_eq!(small.mode, JobMode::Online);
        assert!(small.reason.contains("at least 100"), "{}", small.reason);
    }

    #[test]
    fn deadlines_are_times_or_durations() {
        assert_eq!(parse_deadline("36h", NOW), Ok(NOW + 36 * HOUR_MS));
        assert_eq!(parse_deadline("2d", NOW), Ok(NOW + 48 * HOUR_MS));
        assert_eq!(parse_deadline("90m", NOW), Ok(NOW + 90 * 60_000));
        assert_eq!(
            parse_deadline("2027-01-15T08:00:00Z", 0),
            Ok(1_800_000_000_000)
        );
        for bad in ["", "h", "0h", "-3h", "soon", "3w", "١٢h"] {
            assert!(parse_deadline(bad, NOW).is_err(), "{bad}");
        }
    }
}
