//! A request's retrieval, decided while it is prepared: the Knowledge Base must be declared
//! and in the tenant's policy, the query is rendered, and the filter gets the tenant's
//! clause when the Knowledge Base is shared. The clause wraps whatever else the filter says
//! (`andAll`), so nothing a request sends can widen it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::RetrievalQuery;
use super::spec::{
    GroundingSpec, KnowledgeBaseEntry, KnowledgeBaseSpec, MAX_QUERY_CHARS, short_id,
};
use crate::error::Error;
use crate::tenancy::Caller;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalPlan {
    /// The prompt's retrieval settings (its version pins them).
    pub spec: KnowledgeBaseSpec,
    /// The call as it will be made.
    pub query: RetrievalQuery,
    /// The Knowledge Base's embedding model (the query's embedding is charged at its price).
    pub embedding_model: String,
    pub grounding: Option<GroundingSpec>,
}

/// The filter clause that keeps a tenant to its own documents.
pub fn tenant_clause(attribute: &str, tenant: &str) -> Value {
    json!({"equals": {"key": attribute, "value": tenant}})
}

impl RetrievalPlan {
    /// `text` is the rendered query, `filter` the prompt's filter rendered with the request's
    /// variables; `entry` is the routing configuration's declaration of the Knowledge Base.
    pub fn new(
        caller: &Caller,
        spec: &KnowledgeBaseSpec,
        entry: Option<&KnowledgeBaseEntry>,
        text: &str,
        filter: Option<Value>,
        grounding: Option<GroundingSpec>,
    ) -> Result<Self, Error> {
        let id = short_id(&spec.id);
        if !caller.policy.allows_knowledge_base(id) {
            return Err(Error::Forbidden(format!(
                "tenant '{}' may not use knowledge base '{id}': add it to the tenant's knowledge_bases",
                caller.tenant
            )));
        }
        let Some(entry) = entry else {
            return Err(Error::Config(crate::params::ParamError::Invalid {
                name: "routing".into(),
                message: format!(
                    "knowledge base '{id}' is not declared under knowledge_bases in routing.yaml: declare it with its embedding_model (and tenant_attribute if tenants share it)"
                ),
            }));
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::bad_request(
                "variables",
                "the retrieval query is empty: give the question to search for",
            ));
        }
        let chars = text.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(Error::bad_request(
                "variables",
                format!(
                    "the retrieval query is {chars} characters; Knowledge Bases search with at most {MAX_QUERY_CHARS}"
                ),
            ));
        }
        if let Some(f) = &filter {
            super::spec::check_filter(f, "knowledge_base.filter")
                .map_err(|e| Error::bad_request("variables", e))?;
        }
        let filter = match (&entry.tenant_attribute, filter) {
            (Some(attribute), Some(f)) => Some(json!({
                "andAll": [f, tenant_clause(attribute, &caller.tenant)]
            })),
            (Some(attribute), None) => Some(tenant_clause(attribute, &caller.tenant)),
            (None, f) => f,
        };
        Ok(Self {
            spec: spec.clone(),
            query: RetrievalQuery {
                knowledge_base_id: spec.id.clone(),
                text: text.to_owned(),
                top_k: spec.top_k,
                search_type: spec.search_type,
                filter,
                rerank: spec.rerank.clone(),
            },
            embedding_model: entry.embedding_model.clone(),
            grounding,
        })
    }

    /// The retrieval cache's key: the tenant, then a digest of everything the results depend
    /// on. The tenant is part of the key by construction, whatever the filter.
    pub fn cache_key(&self, tenant: &str) -> String {
        let RetrievalQuery {
            knowledge_base_id,
            text,
            top_k,
            search_type,
            filter,
            rerank,
        } = &self.query;
        let material = json!({
            "kb": knowledge_base_id,
            "text": text,
            "top_k": top_k,
            "search_type": search_type,
            "filter": filter,
            "rerank": rerank,
        });
        let digest = Sha256::digest(material.to_string().as_bytes());
        format!(
            "{}#{}",
            hex::encode(Sha256::digest(tenant.as_bytes())),
            hex::encode(digest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::TenantPolicy;

    fn caller(tenant: &str, kbs: &[&str]) -> Caller {
        Caller {
            tenant: tenant.into(),
            admin: false,
            operator: false,
            key_label: None,
            policy: TenantPolicy {
                knowledge_bases: kbs.iter().map(|s| (*s).to_owned()).collect(),
                ..TenantPolicy::default()
            },
        }
    }

    fn spec() -> KnowledgeBaseSpec {
        serde_json::from_value(json!({"id": "QUARRYDOCS", "top_k": 4})).unwrap()
    }

    fn shared() -> KnowledgeBaseEntry {
        KnowledgeBaseEntry {
            embedding_model: "amazon.titan-embed-text-v2:0".into(),
            tenant_attribute: Some("tenant".into()),
        }
    }

    #[test]
    fn a_shared_knowledge_base_is_always_filtered_to_the_caller() {
        let c = caller("acme", &["QUARRYDOCS"]);
        let p = RetrievalPlan::new(&c, &spec(), Some(&shared()), "prices?", None, None).unwrap();
        assert_eq!(p.query.filter, Some(tenant_clause("tenant", "acme")));
        // A filter of the request's own (rendered from variables) is wrapped, never replaces it.
        let hostile = json!({"orAll": [
            {"equals": {"key": "tenant", "value": "globex"}},
            {"notEquals": {"key": "tenant", "value": "acme"}}
        ]});
        let p = RetrievalPlan::new(
            &c,
            &spec(),
            Some(&shared()),
            "q",
            Some(hostile.clone()),
            None,
        )
        .unwrap();
        assert_eq!(
            p.query.filter,
            Some(json!({"andAll": [hostile, tenant_clause("tenant", "acme")]}))
        );
    }

    #[test]
    fn knowledge_bases_outside_the_policy_or_undeclared_are_refused() {
        let e = RetrievalPlan::new(
            &caller("acme", &[]),
            &spec(),
            Some(&shared()),
            "q",
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.status_code(), 403);
        let e = RetrievalPlan::new(
            &caller("acme", &["QUARRYDOCS"]),
            &spec(),
            None,
            "q",
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.status_code(), 503);
        assert!(e.to_string().contains("knowledge_bases"), "{e}");
    }

    #[test]
    fn queries_are_bounded_and_cache_keys_are_per_tenant() {
        let c = caller("acme", &["QUARRYDOCS"]);
        let long = "é".repeat(MAX_QUERY_CHARS + 1);
        let e = RetrievalPlan::new(&c, &spec(), Some(&shared()), &long, None, None).unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert_eq!(
            RetrievalPlan::new(&c, &spec(), Some(&shared()), "  ", None, None)
                .unwrap_err()
                .status_code(),
            400
        );
        let dedicated = KnowledgeBaseEntry {
            tenant_attribute: None,
            ..shared()
        };
        let a = RetrievalPlan::new(&c, &spec(), Some(&dedicated), "q", None, None).unwrap();
        let g = caller("globex", &["QUARRYDOCS"]);
        let b = RetrievalPlan::new(&g, &spec(), Some(&dedicated), "q", None, None).unwrap();
        assert_eq!(a.query, b.query);
        assert_ne!(a.cache_key("acme"), b.cache_key("globex"));
        assert_eq!(a.cache_key("acme"), a.clone().cache_key("acme"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::tenancy::TenantPolicy;
    use proptest::prelude::*;

    fn filter() -> impl Strategy<Value = Value> {
        let leaf = (
            prop::sample::select(vec!["equals", "notEquals", "in", "startsWith"]),
            "\\PC{0,12}",
            "\\PC{0,24}",
        )
            .prop_map(|(op, key, value)| {
                let key = if key.is_empty() { "k".to_owned() } else { key };
                json!({ op: {"key": key, "value": value} })
            });
        leaf.prop_recursive(3, 12, 4, |inner| {
            (
                prop::sample::select(vec!["andAll", "orAll"]),
                prop::collection::vec(inner, 2..=4),
            )
                .prop_map(|(op, items)| json!({ op: items }))
        })
    }

    proptest! {
        /// Whatever filter a request's variables render to, a shared Knowledge Base's
        /// retrieval is the conjunction of it and the caller's own clause.
        #[test]
        fn the_tenant_clause_always_wraps_the_filter(f in filter(), tenant in "[a-z]{1,12}") {
            let caller = Caller {
                tenant: tenant.clone(),
                admin: false,
                operator: false,
                key_label: None,
                policy: TenantPolicy {
                    knowledge_bases: vec!["QUARRYDOCS".into()],
                    ..TenantPolicy::default()
                },
            };
            let spec: KnowledgeBaseSpec = serde_json::from_value(json!({"id": "QUARRYDOCS"})).unwrap();
            let entry = KnowledgeBaseEntry {
                embedding_model: "m".into(),
                tenant_attribute: Some("tenant".into()),
            };
            match RetrievalPlan::new(&caller, &spec, Some(&entry), "q", Some(f.clone()), None) {
                Ok(plan) => {
                    let sent = plan.query.filter.unwrap();
                    prop_assert_eq!(&sent["andAll"][0], &f);
                    prop_assert_eq!(&sent["andAll"][1], &tenant_clause("tenant", &tenant));
                    prop_assert_eq!(sent.as_object().unwrap().len(), 1);
                    prop_assert_eq!(sent["andAll"].as_array().unwrap().len(), 2);
                }
                // A filter Bedrock would refuse is the caller's 400, never sent.
                Err(e) => prop_assert_eq!(e.status_code(), 400),
            }
        }
    }
}
