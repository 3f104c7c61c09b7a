//! Admission: the budget and rate-limit decision taken before the cache and the model.
//!
//! The policy lives here, over the [`BudgetStore`] port, so it is unit-tested without a
//! database: a blocked tenant (or feature) is refused with 402, a degraded one is switched to
//! a cheaper tier, and per-minute request and token limits refuse with 429. Budget state is
//! cached per tenant in the warm process for `max_age`, so the request path reads it at
//! most once per tenant per `max_age`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::budget::{BudgetLevel, BudgetState};
use crate::error::Error;
use crate::ports::AdmissionControl;
use crate::ports::{BudgetStore, Clock};
use crate::rate_limit::{Kind, Slices};
use crate::routing::Route;
use crate::tenancy::Caller;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Proceed,
    /// Over budget with the `degrade` action: use this tier instead.
    Degrade {
        tier: String,
        reason: String,
    },
}

/// Admits everything.
pub struct AdmitAll;

#[async_trait]
impl AdmissionControl for AdmitAll {
    async fn admit(&self, _: &Caller, _: Option<&str>, _: &Route) -> Result<Admission, Error> {
        Ok(Admission::Proceed)
    }
}

/// The month a budget state applies to (`2026-11`, UTC).
pub fn month_of(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m")
        .to_string()
}

/// Budgets and rate limits, enforced.
pub struct BudgetAdmission {
    store: Arc<dyn BudgetStore>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    /// Tenant -> (state, read at ms). Keyed by tenants that passed authentication only.
    states: Mutex<HashMap<String, (Option<BudgetState>, i64)>>,
    /// The rate allowances this process holds.
    slices: Slices,
}

impl BudgetAdmission {
    /// `max_age`: how long a tenant's budget state is cached in the warm process.
    pub fn new(store: Arc<dyn BudgetStore>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self {
            store,
            clock,
            max_age,
            states: Mutex::new(HashMap::new()),
            slices: Slices::default(),
        }
    }

    fn cached(&self, tenant: &str, now_ms: i64) -> Option<Option<BudgetState>> {
        let max_age = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        let states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states
            .get(tenant)
            .filter(|(_, at)| now_ms.saturating_sub(*at) < max_age)
            .map(|(s, _)| s.clone())
    }

    /// The tenant's state for this month (a state of an earlier month no longer applies).
    /// When the store cannot be read, the last state read is used (for another `max_age`);
    /// with none, a `strict` tenant is refused (503) and any other admitted.
    async fn state(&self, caller: &Caller) -> Result<Option<BudgetState>, Error> {
        let tenant = caller.tenant.as_str();
        let now = self.clock.now_ms();
        let state = match self.cached(tenant, now) {
            Some(s) => s,
            None => match self.store.state(tenant).await {
                Ok(s) => {
                    self.keep(tenant, s.clone(), now);
                    s
                }
                Err(e) => {
                    metrics::counter!("BudgetStateErrors").increment(1);
                    let last = self.last(tenant);
                    match (&last, caller.policy.strict_budget) {
                        (Some(_), _) => {
                            tracing::warn!(error = %e, %tenant, "budget state unavailable; using the last one read");
                        }
                        (None, true) => {
                            tracing::error!(error = %e, %tenant, "budget state unavailable; strict tenant refused");
                            return Err(Error::Dependency(e));
                        }
                        (None, false) => {
                            tracing::warn!(error = %e, %tenant, "budget state unavailable; admitting");
                        }
                    }
                    // Remembered for `max_age`: an outage is not a read per request.
                    let state = last.flatten();
                    self.keep(tenant, state.clone(), now);
                    state
                }
            },
        };
        Ok(state.filter(|s| s.month == month_of(now)))
    }

    fn keep(&self, tenant: &str, state: Option<BudgetState>, now_ms: i64) {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.to_owned(), (state, now_ms));
    }

    /// The last state read for a tenant, however old (`None`: never read).
    fn last(&self, tenant: &str) -> Option<Option<BudgetState>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .map(|(s, _)| s.clone())
    }

    fn decision(
        state: Option<BudgetState>,
        feature: Option<&str>,
        key: Option<&str>,
    ) -> Result<Admission, Error> {
        let Some(state) = state else {
            return Ok(Admission::Proceed);
        };
        if let Some(k) = key
            && state.blocked_keys.iter().any(|b| b == k)
        {
            return Err(Error::BudgetExceeded(format!(
                "the monthly budget of key '{k}' is spent; requests with it are refused until next month or a raise"
            )));
        }
        if state.level == BudgetLevel::Blocked {
            return Err(Error::BudgetExceeded(format!(
                "{}; requests are refused until the budget resets next month or is raised",
                state.reason
            )));
        }
        if let Some(f) = feature
            && state.blocked_features.iter().any(|b| b == f)
        {
            return Err(Error::BudgetExceeded(format!(
                "the monthly budget of feature '{f}' is spent"
            )));
        }
        let configured = feature.is_some_and(|f| state.configured_features.iter().any(|c| c == f));
        if state.other_features_blocked && !configured {
            return Err(Error::BudgetExceeded(format!(
                "the monthly budget left outside the configured features ({}) is spent; tag the request with one of them",
                state.configured_features.join(", ")
            )));
        }
        match (state.level, state.degrade_to) {
            (BudgetLevel::Degraded, Some(tier)) => Ok(Admission::Degrade {
                tier,
                reason: state.reason,
            }),
            _ => Ok(Admission::Proceed),
        }
    }
}

#[async_trait]
impl AdmissionControl for BudgetAdmission {
    async fn admit(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        _route: &Route,
    ) -> Result<Admission, Error> {
        let decision = Self::decision(
            self.state(caller).await?,
            feature,
            caller.key_label.as_deref(),
        )?;
        let Some(limits) = caller.policy.rate_limits else {
            return Ok(decision);
        };
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let retry_after = Duration::from_secs((60 - now.rem_euclid(60)).max(1) as u64);
        let refuse = |what: &str, limit: u64| Error::RateLimited {
            message: format!(
                "rate limit of {limit} {what} per minute reached for tenant '{}'",
                caller.tenant
            ),
            retry_after,
        };
        // Tokens first: a request refused for tokens does not spend a request.
        for (kind, limit, what) in [
            (Kind::Tokens, limits.tokens_per_minute, "tokens"),
            (Kind::Requests, limits.requests_per_minute, "requests"),
        ] {
            let Some(limit) = limit else { continue };
            let need = i64::from(kind == Kind::Requests);
            match self
                .slices
                .take(&*self.store, &caller.tenant, kind, limit, now_ms, need)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(refuse(what, limit)),
                Err(e) => tracing::warn!(error = %e, "rate allowance unavailable; admitting"),
            }
        }
        Ok(decision)
    }

    async fn used(&self, caller: &Caller, tokens: u64) {
        if caller
            .policy
            .rate_limits
            .and_then(|l| l.tokens_per_minute)
            .is_some()
        {
            self.slices
                .spend(&caller.tenant, Kind::Tokens, self.clock.now_ms(), tokens);
        }
    }

    async fn peek(&self, caller: &Caller, feature: Option<&str>, _route: &Route) -> Admission {
        match self.state(caller).await {
            Ok(state) => Self::decision(state, feature, caller.key_label.as_deref())
                .unwrap_or(Admission::Proceed),
            Err(_) => Admission::Proceed,
        }
    }
}

/// Budget state and counters in memory (unit tests, benchmarks).
#[derive(Default)]
pub struct MemoryBudgets {
    states: Mutex<HashMap<String, BudgetState>>,
    notices: Mutex<std::collections::HashSet<(String, String)>>,
    rates: Mutex<HashMap<(String, i64, String), u64>>,
    /// Reads of the budget state (to show the warm cache works).
    pub state_reads: std::sync::atomic::AtomicU64,
    /// While set, reading a state fails (an outage).
    pub down: std::sync::atomic::AtomicBool,
    /// Leases granted (to show slices keep writes rare).
    pub leases: std::sync::atomic::AtomicU64,
}

impl MemoryBudgets {
    /// What was leased of a tenant's allowance in a minute, over every shard.
    pub fn leased(&self, tenant: &str, minute: i64, kind: &str) -> u64 {
        let prefix = format!("{kind}#");
        lock(&self.rates)
            .iter()
            .filter(|((t, m, k), _)| t == tenant && *m == minute && k.starts_with(&prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

#[async_trait]
impl BudgetStore for MemoryBudgets {
    async fn state(&self, tenant: &str) -> Result<Option<BudgetState>, crate::ports::StoreError> {
        self.state_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::ports::StoreError::unavailable(
                crate::ports::Dependency::DynamoDb,
                "budget state",
                "down",
            ));
        }
        Ok(lock(&self.states).get(tenant).cloned())
    }

    async fn set_state(
        &self,
        tenant: &str,
        state: &BudgetState,
    ) -> Result<(), crate::ports::StoreError> {
        lock(&self.states).insert(tenant.to_owned(), state.clone());
        Ok(())
    }

    async fn first_notice(
        &self,
        tenant: &str,
        key: &str,
        _keep: Duration,
    ) -> Result<bool, crate::ports::StoreError> {
        Ok(lock(&self.notices).insert((tenant.to_owned(), key.to_owned())))
    }

    async fn forget_notice(&self, tenant: &str, key: &str) -> Result<(), crate::ports::StoreError> {
        lock(&self.notices).remove(&(tenant.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn lease(
        &self,
        tenant: &str,
        minute: i64,
        kind: &str,
        shard: u32,
        want: u64,
        cap: u64,
    ) -> Result<u64, crate::ports::StoreError> {
        let mut rates = lock(&self.rates);
        let v = rates
            .entry((tenant.to_owned(), minute, format!("{kind}#{shard}")))
            .or_default();
        let granted = want.min(cap.saturating_sub(*v));
        *v += granted;
        if granted > 0 {
            self.leases
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(granted)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use crate::tenancy::{RateLimits, TenantPolicy};

    fn caller(limits: Option<RateLimits>) -> Caller {
        Caller {
            tenant: "acme".into(),
            admin: false,
            operator: false,
            key_label: None,
            policy: TenantPolicy {
                rate_limits: limits,
                ..Default::default()
            },
        }
    }

    fn state(level: BudgetLevel, month: &str) -> BudgetState {
        BudgetState {
            level,
            degrade_to: Some("cheap".into()),
            reason: "over budget".into(),
            ..BudgetState::ok(month)
        }
    }

    fn route() -> Route {
        Route {
            tier: None,
            chain: vec![],
        }
    }

    #[tokio::test]
    async fn blocked_refuses_degraded_switches_and_an_old_month_no_longer_applies() {
        let clock = Arc::new(ManualClock::new());
        let month = month_of(clock.now_ms());
        let store = Arc::new(MemoryBudgets::default());
        let admission = BudgetAdmission::new(store.clone(), clock.clone(), Duration::ZERO);
        let c = caller(None);
        store
            .set_state("acme", &state(BudgetLevel::Blocked, &month))
            .await
            .unwrap();
        let e = admission.admit(&c, None, &route()).await.unwrap_err();
        assert_eq!(e.status_code(), 402);
        store
            .set_state("acme", &state(BudgetLevel::Degraded, &month))
            .await
            .unwrap();
        assert!(matches!(
            admission.admit(&c, None, &route()).await.unwrap(),
            Admission::Degrade { tier, .. } if tier == "cheap"
        ));
        store
            .set_state("acme", &state(BudgetLevel::Blocked, "2001-01"))
            .await
            .unwrap();
        assert_eq!(
            admission.admit(&c, None, &route()).await.unwrap(),
            Admission::Proceed
        );
    }

    #[tokio::test]
    async fn an_outage_keeps_the_last_state_and_strict_tenants_fail_closed() {
        use std::sync::atomic::Ordering::SeqCst;
        let clock = Arc::new(ManualClock::new());
        let month = month_of(clock.now_ms());
        let store = Arc::new(MemoryBudgets::default());
        let admission = BudgetAdmission::new(store.clone(), clock.clone(), Duration::from_secs(30));
        let c = caller(None);
        store
            .set_state("acme", &state(BudgetLevel::Blocked, &month))
            .await
            .unwrap();
        assert_eq!(
            admission
                .admit(&c, None, &route())
                .await
                .unwrap_err()
                .status_code(),
            402
        );
        // The store goes down and the cached state ages out: still blocked, not admitted.
        store.down.store(true, SeqCst);
        clock.advance(Duration::from_secs(31));
        assert_eq!(
            admission
                .admit(&c, None, &route())
                .await
                .unwrap_err()
                .status_code(),
            402
        );
        let reads = store.state_reads.load(SeqCst);
        admission.admit(&c, None, &route()).await.unwrap_err();
        assert_eq!(
            store.state_reads.load(SeqCst),
            reads,
            "an outage is not a read per request"
        );

        // A tenant never read before: admitted, unless strict.
        let mut other = caller(None);
        other.tenant = "globex".into();
        assert_eq!(
            admission.admit(&other, None, &route()).await.unwrap(),
            Admission::Proceed
        );
        let mut strict = caller(None);
        strict.tenant = "initech".into();
        strict.policy.strict_budget = true;
        let e = admission.admit(&strict, None, &route()).await.unwrap_err();
        assert_eq!(e.status_code(), 503, "{e}");
    }

    #[tokio::test]
    async fn renaming_or_dropping_the_feature_does_not_dodge_its_limit() {
        let clock = Arc::new(ManualClock::new());
        let month = month_of(clock.now_ms());
        let store = Arc::new(MemoryBudgets::default());
        let admission = BudgetAdmission::new(store.clone(), clock.clone(), Duration::ZERO);
        let c = caller(None);
        let mut s = BudgetState::ok(&month);
        s.configured_features = vec!["chat".into(), "search".into()];
        s.blocked_features = vec!["chat".into()];
        s.other_features_blocked = true;
        store.set_state("acme", &s).await.unwrap();
        for feature in [Some("chat"), Some("Chat"), Some("renamed"), None] {
            let e = admission.admit(&c, feature, &route()).await.unwrap_err();
            assert_eq!(e.status_code(), 402, "{feature:?}");
        }
        assert_eq!(
            admission.admit(&c, Some("search"), &route()).await.unwrap(),
            Admission::Proceed
        );
    }

    #[tokio::test]
    async fn budget_state_is_read_once_per_max_age() {
        let clock = Arc::new(ManualClock::new());
        let store = Arc::new(MemoryBudgets::default());
        let admission = BudgetAdmission::new(store.clone(), clock.clone(), Duration::from_secs(30));
        let c = caller(None);
        for _ in 0..5 {
            admission.admit(&c, None, &route()).await.unwrap();
        }
        assert_eq!(
            store.state_reads.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        clock.advance(Duration::from_secs(31));
        admission.admit(&c, None, &route()).await.unwrap();
        assert_eq!(
            store.state_reads.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn rate_limits_refuse_within_the_minute_and_reset_with_the_next() {
        let clock = Arc::new(ManualClock::at(60_000 * 1_000));
        let store = Arc::new(MemoryBudgets::default());
        let admission = BudgetAdmission::new(store, clock.clone(), Duration::from_secs(30));
        let c = caller(Some(RateLimits {
            requests_per_minute: Some(2),
            tokens_per_minute: Some(100),
        }));
        admission.admit(&c, None, &route()).await.unwrap();
        admission.admit(&c, None, &route()).await.unwrap();
        let e = admission.admit(&c, None, &route()).await.unwrap_err();
        assert_eq!(e.status_code(), 429);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(60));
        admission.admit(&c, None, &route()).await.unwrap();
        admission.used(&c, 100).await;
        let e = admission.admit(&c, None, &route()).await.unwrap_err();
        assert!(e.to_string().contains("tokens"), "{e}");
    }
}
