//! The admission port, consulted before the cache and the model: budgets (a blocked tenant
//! is refused, a degraded one switched to a cheaper tier) and rate limits.

use async_trait::async_trait;

use crate::error::Error;
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

#[async_trait]
pub trait AdmissionControl: Send + Sync {
    /// `Err(Error::BudgetExceeded)` (402) or `Err(Error::RateLimited)` (429) to refuse.
    async fn admit(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        route: &Route,
    ) -> Result<Admission, Error>;

    /// Tokens actually used, for tokens-per-minute limits.
    async fn used(&self, _caller: &Caller, _tokens: u64) {}

    /// The decision `admit` would take on routing (degrade or not), without counting the
    /// request against any limit or refusing it: for cache lookups, which cost nothing.
    async fn peek(&self, _caller: &Caller, _feature: Option<&str>, _route: &Route) -> Admission {
        Admission::Proceed
    }
}

/// Admits everything.
pub struct AdmitAll;

#[async_trait]
impl AdmissionControl for AdmitAll {
    async fn admit(&self, _: &Caller, _: Option<&str>, _: &Route) -> Result<Admission, Error> {
        Ok(Admission::Proceed)
    }
}
