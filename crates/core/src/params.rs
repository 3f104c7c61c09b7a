//! The parameter-store port (SSM Parameter Store in AWS) and a warm-Lambda cache over it
//! that keeps serving the last-known-good value when the store fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ports::ParameterStore;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// One stored parameter value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0} does not exist")]
    NotFound(String),
    /// The store could not be reached or failed; the value may exist.
    #[error("parameter store unavailable: {0}")]
    Unavailable(String),
    #[error("parameter {name} is invalid: {message}")]
    Invalid { name: String, message: String },
}

/// Parses a parameter holding JSON.
pub fn parse_json<T: DeserializeOwned>(p: &Parameter) -> Result<T, ParamError> {
    serde_json::from_str(&p.value).map_err(|e| ParamError::Invalid {
        name: p.name.clone(),
        message: e.to_string(),
    })
}

struct Entry<T> {
    value: Arc<T>,
    version: u64,
    fetched: Instant,
}

/// Values read from the store, kept for `max_age`; when a refresh fails the last good value
/// is served (and a warning logged). Keyed by the full name with its selector.
pub struct CachedParams<T> {
    store: Arc<dyn ParameterStore>,
    max_age: Duration,
    decrypt: bool,
    entries: Mutex<HashMap<String, Entry<T>>>,
    parse: fn(&Parameter) -> Result<T, ParamError>,
}

impl<T: Send + Sync + 'static> CachedParams<T> {
    pub fn new(
        store: Arc<dyn ParameterStore>,
        max_age: Duration,
        decrypt: bool,
        parse: fn(&Parameter) -> Result<T, ParamError>,
    ) -> Self {
        Self {
            store,
            max_age,
            decrypt,
            entries: Mutex::new(HashMap::new()),
            parse,
        }
    }

    fn cached(&self, name: &str, fresh_only: bool) -> Option<(Arc<T>, u64)> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(name)
            .filter(|e| !fresh_only || e.fetched.elapsed() < self.max_age)
            .map(|e| (e.value.clone(), e.version))
    }

    /// The value and its version.
    pub async fn get(&self, name: &str) -> Result<(Arc<T>, u64), ParamError> {
        if let Some(hit) = self.cached(name, true) {
            return Ok(hit);
        }
        match self.store.get(name, self.decrypt).await {
            Ok(p) => {
                let value = Arc::new((self.parse)(&p)?);
                let mut entries = self
                    .entries
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                entries.insert(
                    name.to_owned(),
                    Entry {
                        value: value.clone(),
                        version: p.version,
                        fetched: Instant::now(),
                    },
                );
                Ok((value, p.version))
            }
            Err(ParamError::Unavailable(reason)) => match self.cached(name, false) {
                Some(stale) => {
                    tracing::warn!(parameter = name, %reason, "parameter store unavailable; serving the last-known-good value");
                    Ok(stale)
                }
                None => Err(ParamError::Unavailable(reason)),
            },
            // Deleted or invalid: do not keep serving a value that is gone on purpose.
            Err(e) => Err(e),
        }
    }
}

/// An in-memory store for unit tests of the core.
#[derive(Default)]
pub struct MemoryParams {
    values: Mutex<HashMap<String, Parameter>>,
    down: std::sync::atomic::AtomicBool,
    gets: std::sync::atomic::AtomicU64,
}

impl MemoryParams {
    /// Reads asked of the store so far.
    pub fn gets(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn put(&self, name: &str, value: &str) -> u64 {
        let mut values = self
            .values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = values.get(name).map(|p| p.version + 1).unwrap_or(1);
        values.insert(
            name.to_owned(),
            Parameter {
                name: name.to_owned(),
                value: value.to_owned(),
                version,
            },
        );
        version
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl ParameterStore for MemoryParams {
    async fn get(&self, name: &str, _decrypt: bool) -> Result<Parameter, ParamError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ParamError::Unavailable("store is down".into()));
        }
        let values = self
            .values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        values
            .get(name)
            .cloned()
            .ok_or_else(|| ParamError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_string(p: &Parameter) -> Result<String, ParamError> {
        Ok(p.value.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn serves_last_known_good_when_the_store_fails() {
        let store = Arc::new(MemoryParams::default());
        store.put("/a", "one");
        let cache = CachedParams::new(store.clone(), Duration::from_secs(60), false, parse_string);
        assert_eq!(*cache.get("/a").await.unwrap().0, "one");
        store.put("/a", "two");
        // Within max age: cached.
        assert_eq!(*cache.get("/a").await.unwrap().0, "one");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(*cache.get("/a").await.unwrap().0, "two");
        store.set_down(true);
        tokio::time::advance(Duration::from_secs(61)).await;
        let (value, version) = cache.get("/a").await.unwrap();
        assert_eq!((value.as_str(), version), ("two", 2));
        // Never seen, store down: a clear error.
        assert!(matches!(
            cache.get("/b").await,
            Err(ParamError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn not_found_is_not_masked() {
        let store = Arc::new(MemoryParams::default());
        let cache = CachedParams::new(store, Duration::from_secs(60), false, parse_string);
        assert!(matches!(
            cache.get("/missing").await,
            Err(ParamError::NotFound(_))
        ));
    }
}
