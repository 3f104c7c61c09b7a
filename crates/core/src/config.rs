//! Runtime configuration read from the parameter store: routing, pricing, tenants,
//! experiments (and budgets, read by the cost code). Each is cached in the warm process for
//! `max_age` and served last-known-good when the store fails.

use std::sync::Arc;
use std::time::Duration;

use crate::budget::Budgets;
use crate::error::Error;
use crate::params::{CachedParams, ParamError, parse_json};
use crate::ports::ParameterStore;
use crate::pricing::PricingTable;
use crate::prompts::Experiments;
use crate::routing::RoutingConfig;
use crate::tenancy::TenantDirectory;

pub struct Configs {
    prefix: String,
    routing: CachedParams<RoutingConfig>,
    pricing: CachedParams<PricingTable>,
    tenants: CachedParams<TenantDirectory>,
    experiments: CachedParams<Experiments>,
    budgets: CachedParams<Budgets>,
}

fn parse_routing(p: &crate::params::Parameter) -> Result<RoutingConfig, ParamError> {
    let routing: RoutingConfig = parse_json(p)?;
    routing.validate().map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })?;
    Ok(routing)
}

fn parse_tenants(p: &crate::params::Parameter) -> Result<TenantDirectory, ParamError> {
    let directory: TenantDirectory = parse_json(p)?;
    directory
        .validate()
        .map_err(|message| ParamError::Invalid {
            name: p.name.clone(),
            message,
        })?;
    Ok(directory)
}

impl Configs {
    /// `prefix` is the stage's parameter prefix (`/quarry/dev`).
    pub fn new(store: Arc<dyn ParameterStore>, prefix: &str, max_age: Duration) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            routing: CachedParams::new(store.clone(), max_age, false, parse_routing),
            pricing: CachedParams::new(store.clone(), max_age, false, parse_json),
            // The directory holds key hashes: a SecureString.
            tenants: CachedParams::new(store.clone(), max_age, true, parse_tenants),
            experiments: CachedParams::new(store.clone(), max_age, false, parse_json),
            budgets: CachedParams::new(store, max_age, false, parse_json),
        }
    }

    fn name(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.prefix)
    }

    pub async fn routing(&self) -> Result<Arc<RoutingConfig>, Error> {
        Ok(self.routing.get(&self.name("routing")).await?.0)
    }

    pub async fn pricing(&self) -> Result<Arc<PricingTable>, Error> {
        Ok(self.pricing.get(&self.name("pricing")).await?.0)
    }

    pub async fn tenants(&self) -> Result<Arc<TenantDirectory>, Error> {
        Ok(self.tenants.get(&self.name("tenants")).await?.0)
    }

    /// Budgets are optional: none configured means no limits.
    pub async fn budgets(&self) -> Result<Option<Arc<Budgets>>, Error> {
        match self.budgets.get(&self.name("budgets")).await {
            Ok((b, _)) => Ok(Some(b)),
            Err(ParamError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Experiments are optional: none configured means no A/B.
    pub async fn experiments(&self) -> Result<Arc<Experiments>, Error> {
        match self.experiments.get(&self.name("experiments")).await {
            Ok((x, _)) => Ok(x),
            Err(ParamError::NotFound(_)) => Ok(Arc::new(Experiments::new())),
            Err(e) => Err(e.into()),
        }
    }
}
