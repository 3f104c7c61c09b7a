//! Who is calling. API keys (`Authorization: Bearer KEY` or `x-api-key: KEY`) are looked up
//! by hash in the tenant directory; or, when the API sits behind an API Gateway JWT or IAM
//! authorizer, the tenant comes from the authorizer's context. Never from the body.
//!
//! Authentication is two steps: [`AuthMode::credential`] reads what the request presents
//! from its headers and context alone, and [`Credential::resolve`] looks it up in the
//! directory. A request that presents nothing is refused by the first step, so it costs no
//! parameter-store read: an anonymous flood never reaches SSM, and an unreachable SSM does
//! not turn a plain 401 into a 503.

use http::HeaderMap;
use lambda_http::request::RequestContext;
use quarry_core::Error;
use quarry_core::tenancy::{AuthError, Caller, TenantDirectory};

/// How the API authenticates callers (`QUARRY_AUTH_MODE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Quarry's own API keys (the default).
    ApiKey,
    /// An API Gateway JWT authorizer; the tenant is this claim.
    Jwt {
        tenant_claim: String,
        admin_claim: Option<String>,
    },
    /// An API Gateway IAM authorizer; the tenant is the caller's IAM principal mapped through
    /// the directory's tenants (a tenant named like the principal's role).
    Iam,
}

/// What a request presents to prove who it is, before the directory is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key (non-empty).
    Key(String),
    /// A tenant an API Gateway authorizer vouches for; `label` says which authorizer.
    Vouched {
        tenant: String,
        admin: bool,
        label: String,
    },
}

impl AuthMode {
    /// From `QUARRY_AUTH_MODE` (`api_key`, `jwt`, `iam`), `QUARRY_TENANT_CLAIM` and
    /// `QUARRY_ADMIN_CLAIM`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        match get("QUARRY_AUTH_MODE").as_deref().unwrap_or("api_key") {
            "api_key" | "" => Ok(Self::ApiKey),
            "jwt" => Ok(Self::Jwt {
                tenant_claim: get("QUARRY_TENANT_CLAIM").unwrap_or_else(|| "custom:tenant".into()),
                admin_claim: get("QUARRY_ADMIN_CLAIM"),
            }),
            "iam" => Ok(Self::Iam),
            other => Err(format!(
                "QUARRY_AUTH_MODE must be api_key, jwt or iam, not '{other}'"
            )),
        }
    }

    /// The credential a request presents, from its headers and API Gateway context only.
    pub fn credential(
        &self,
        headers: &HeaderMap,
        context: Option<&RequestContext>,
    ) -> Result<Credential, AuthError> {
        match self {
            Self::ApiKey => presented_key(headers)
                .map(|key| Credential::Key(key.to_owned()))
                .ok_or(AuthError::Missing),
            Self::Jwt {
                tenant_claim,
                admin_claim,
            } => {
                let claims = match context {
                    Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                        .authorizer
                        .as_ref()
                        .and_then(|a| a.jwt.as_ref())
                        .map(|j| &j.claims),
                    _ => None,
                }
                .ok_or(AuthError::Missing)?;
                let tenant = claims.get(tenant_claim).ok_or(AuthError::Invalid)?;
                let admin = admin_claim
                    .as_ref()
                    .and_then(|c| claims.get(c))
                    .is_some_and(|v| v == "true");
                Ok(Credential::Vouched {
                    tenant: tenant.clone(),
                    admin,
                    label: format!("jwt:{tenant_claim}"),
                })
            }
            Self::Iam => {
                let arn = match context {
                    Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                        .authorizer
                        .as_ref()
                        .and_then(|a| a.iam.as_ref())
                        .and_then(|i| i.user_arn.clone()),
                    _ => None,
                }
                .ok_or(AuthError::Missing)?;
                // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION or arn:aws:iam::ACCOUNT:user/NAME
                let principal = arn
                    .split(['/', ':'])
                    .rev()
                    .nth(1)
                    .filter(|_| arn.contains("assumed-role"))
                    .or_else(|| arn.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                Ok(Credential::Vouched {
                    tenant: principal,
                    admin: false,
                    label: format!("iam:{arn}"),
                })
            }
        }
    }
}

impl Credential {
    /// The caller this credential names in the directory.
    pub fn resolve(&self, directory: &TenantDirectory) -> Result<Caller, AuthError> {
        match self {
            Self::Key(key) => directory.authenticate(Some(key.as_str())),
            Self::Vouched {
                tenant,
                admin,
                label,
            } => {
                let mut caller = directory.caller(tenant, *admin, Some(label.clone()))?;
                // Only IAM principals are named operators: a JWT's claims are the tenant's.
                if label.starts_with("iam:") && directory.is_operator(tenant) {
                    caller.operator = true;
                    caller.admin = true;
                }
                Ok(caller)
            }
        }
    }
}

/// The API key a request presents, if any: blank is none.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Both steps at once, for callers that hold the directory already.
pub fn authenticate(
    mode: &AuthMode,
    directory: &TenantDirectory,
    headers: &HeaderMap,
    context: Option<&RequestContext>,
) -> Result<Caller, Error> {
    Ok(mode.credential(headers, context)?.resolve(directory)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_core::tenancy::{KeyEntry, TenantPolicy, hash_key};

    fn directory() -> TenantDirectory {
        let mut d = TenantDirectory::default();
        d.tenants.insert("acme".into(), TenantPolicy::default());
        d.keys.insert(
            hash_key("secret"),
            KeyEntry {
                tenant: "acme".into(),
                admin: true,
                operator: false,
                label: None,
            },
        );
        d
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_x_api_key() {
        let d = directory();
        let h = headers(&[("authorization", "Bearer secret")]);
        assert_eq!(
            authenticate(&AuthMode::ApiKey, &d, &h, None)
                .unwrap()
                .tenant,
            "acme"
        );
        let h = headers(&[("x-api-key", "secret")]);
        assert!(authenticate(&AuthMode::ApiKey, &d, &h, None).unwrap().admin);
        let e = authenticate(&AuthMode::ApiKey, &d, &HeaderMap::new(), None).unwrap_err();
        assert_eq!(e.status_code(), 401);
    }

    #[test]
    fn nothing_presented_is_missing_before_any_lookup() {
        for h in [
            HeaderMap::new(),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "Bearer    ")]),
            headers(&[("x-api-key", "  ")]),
            headers(&[("authorization", "Basic dXNlcjpwdw==")]),
        ] {
            assert_eq!(
                AuthMode::ApiKey.credential(&h, None),
                Err(AuthError::Missing),
                "{h:?}"
            );
        }
        let jwt = AuthMode::Jwt {
            tenant_claim: "custom:tenant".into(),
            admin_claim: None,
        };
        assert_eq!(
            jwt.credential(&HeaderMap::new(), None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            AuthMode::Iam.credential(&HeaderMap::new(), None),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn a_presented_key_is_checked_against_the_directory() {
        let h = headers(&[("authorization", "Bearer nope")]);
        let credential = AuthMode::ApiKey.credential(&h, None).unwrap();
        assert_eq!(credential, Credential::Key("nope".into()));
        assert_eq!(credential.resolve(&directory()), Err(AuthError::Invalid));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(AuthMode::from_lookup(|_| None).unwrap(), AuthMode::ApiKey);
        assert!(
            AuthMode::from_lookup(|k| (k == "QUARRY_AUTH_MODE").then(|| "magic".into())).is_err()
        );
    }
}
