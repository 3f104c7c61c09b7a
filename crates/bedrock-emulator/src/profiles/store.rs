//! Application inference profiles created through CreateInferenceProfile, kept in memory
//! until deleted or the admin reset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::batch::store::now;
use crate::error::{BedrockError, ErrorKind};
use crate::generate::Prng;

const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An ISO 8601 timestamp, as the API model's `Timestamp` is sent.
pub fn timestamp(t: SystemTime) -> Value {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map_or(Value::Null, Value::String)
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub seq: u64,
    /// Twelve lowercase letters or digits.
    pub id: String,
    pub arn: String,
    pub name: String,
    pub description: Option<String>,
    /// The base model of the catalog that answers the profile's calls.
    pub base_id: String,
    /// Foundation-model ARNs, as GetInferenceProfile lists them.
    pub model_arns: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub client_request_token: Option<String>,
    pub created: SystemTime,
}

impl Profile {
    /// GetInferenceProfile's answer (also a ListInferenceProfiles summary).
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "inferenceProfileName": self.name,
            "inferenceProfileArn": self.arn,
            "inferenceProfileId": self.id,
            "models": self.model_arns.iter().map(|arn| json!({ "modelArn": arn })).collect::<Vec<_>>(),
            "createdAt": timestamp(self.created),
            "updatedAt": timestamp(self.created),
            "status": "ACTIVE",
            "type": "APPLICATION",
        });
        if let Some(description) = &self.description {
            body["description"] = json!(description);
        }
        body
    }

    pub fn tags_json(&self) -> Value {
        Value::Array(
            self.tags
                .iter()
                .map(|(key, value)| json!({ "key": key, "value": value }))
                .collect(),
        )
    }
}

pub struct ProfileStore {
    seed: u64,
    seq: AtomicU64,
    /// By profile ID.
    profiles: Mutex<BTreeMap<String, Profile>>,
}

impl ProfileStore {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            seq: AtomicU64::new(0),
            profiles: Mutex::new(BTreeMap::new()),
        }
    }

    /// A sequence number and a fresh profile ID.
    pub fn new_id(&self) -> (u64, String) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        // Distinct from batch job IDs made from the same seed.
        let mut rng = Prng::new((self.seed ^ 0x0A11_CA7E) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let id = (0..12)
            .map(|_| char::from(ID_ALPHABET[(rng.next_u64() % 36) as usize]))
            .collect();
        (n, id)
    }

    /// Stores `profile`, unless its client token made one already (that one is returned) or
    /// its name is taken (ConflictException). Both are checked under one lock, so two
    /// requests racing with the same token create one profile.
    pub fn insert(&self, mut profile: Profile) -> Result<Profile, BedrockError> {
        let mut profiles = lock(&self.profiles);
        if let Some(token) = &profile.client_request_token
            && let Some(existing) = profiles
                .values()
                .find(|p| p.client_request_token.as_ref() == Some(token))
        {
            return Ok(existing.clone());
        }
        if profiles.values().any(|p| p.name == profile.name) {
            return Err(BedrockError::new(
                ErrorKind::ConflictException,
                format!(
                    "An inference profile with the name {} already exists.",
                    profile.name
                ),
            ));
        }
        while profiles.contains_key(&profile.id) {
            profile.id = self.new_id().1;
            profile.arn = match profile.arn.rsplit_once('/') {
                Some((head, _)) => format!("{head}/{}", profile.id),
                None => profile.arn.clone(),
            };
        }
        profiles.insert(profile.id.clone(), profile.clone());
        Ok(profile)
    }

    pub fn get(&self, id: &str) -> Option<Profile> {
        lock(&self.profiles).get(id).cloned()
    }

    /// The profile whose ARN is exactly `arn`.
    pub fn by_arn(&self, arn: &str) -> Option<Profile> {
        let id = arn.rsplit('/').next()?;
        lock(&self.profiles)
            .get(id)
            .filter(|p| p.arn == arn)
            .cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Profile> {
        lock(&self.profiles).remove(id)
    }

    /// Every profile, oldest first.
    pub fn all(&self) -> Vec<Profile> {
        let mut all: Vec<Profile> = lock(&self.profiles).values().cloned().collect();
        all.sort_by_key(|p| p.seq);
        all
    }

    pub fn clear(&self) {
        lock(&self.profiles).clear();
    }
}

/// A profile named `name` answering as `base_id`, not yet stored.
pub fn new_profile(
    store: &ProfileStore,
    arn_prefix: &str,
    name: String,
    base_id: String,
    model_arns: Vec<String>,
) -> Profile {
    let (seq, id) = store.new_id();
    Profile {
        seq,
        arn: format!("{arn_prefix}{id}"),
        id,
        name,
        description: None,
        base_id,
        model_arns,
        tags: Vec::new(),
        client_request_token: None,
        created: now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(store: &ProfileStore, name: &str, token: Option<&str>) -> Profile {
        let mut p = new_profile(
            store,
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/",
            name.to_owned(),
            "amazon.nova-lite-v1:0".to_owned(),
            Vec::new(),
        );
        p.client_request_token = token.map(str::to_owned);
        p
    }

    #[test]
    fn names_are_unique_and_tokens_return_the_first_profile() {
        let store = ProfileStore::new(1);
        let a = store.insert(profile(&store, "a", Some("t1"))).unwrap();
        assert_eq!(a.id.len(), 12);
        let again = store.insert(profile(&store, "other", Some("t1"))).unwrap();
        assert_eq!(again.arn, a.arn);
        let e = store.insert(profile(&store, "a", None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConflictException);
        assert_eq!(store.by_arn(&a.arn).unwrap().id, a.id);
        assert!(store.by_arn("arn:aws:bedrock:eu-west-1:1:x/nope").is_none());
        assert!(store.remove(&a.id).is_some());
        assert!(store.all().is_empty());
    }
}
