//! Who is calling. API keys (`Authorization: Bearer KEY` or `x-api-key: KEY`) are looked up
//! by hash in the tenant directory; or, when the API sits behind an API Gateway JWT or IAM
//! authorizer, the tenant comes from the authorizer's context. Never from the body.

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
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(token);
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

pub fn authenticate(
    mode: &AuthMode,
    directory: &TenantDirectory,
    headers: &HeaderMap,
    context: Option<&RequestContext>,
) -> Result<Caller, Error> {
    match mode {
        AuthMode::ApiKey => Ok(directory.authenticate(presented_key(headers))?),
        AuthMode::Jwt {
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
            .ok_or(Error::Unauthorized(AuthError::Missing))?;
            let tenant = claims
                .get(tenant_claim)
                .ok_or(Error::Unauthorized(AuthError::Invalid))?;
            let admin = admin_claim
                .as_ref()
                .and_then(|c| claims.get(c))
                .is_some_and(|v| v == "true");
            Ok(directory.caller(tenant, admin, Some(format!("jwt:{tenant_claim}")))?)
        }
        AuthMode::Iam => {
            let arn = match context {
                Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                    .authorizer
                    .as_ref()
                    .and_then(|a| a.iam.as_ref())
                    .and_then(|i| i.user_arn.clone()),
                _ => None,
            }
            .ok_or(Error::Unauthorized(AuthError::Missing))?;
            // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION or arn:aws:iam::ACCOUNT:user/NAME
            let principal = arn
                .split(['/', ':'])
                .rev()
                .nth(1)
                .filter(|_| arn.contains("assumed-role"))
                .or_else(|| arn.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            Ok(directory.caller(&principal, false, Some(format!("iam:{arn}")))?)
        }
    }
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
                label: None,
            },
        );
        d
    }

    #[test]
    fn bearer_and_x_api_key() {
        let d = directory();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret".parse().unwrap());
        assert_eq!(
            authenticate(&AuthMode::ApiKey, &d, &h, None)
                .unwrap()
                .tenant,
            "acme"
        );
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "secret".parse().unwrap());
        assert!(authenticate(&AuthMode::ApiKey, &d, &h, None).unwrap().admin);
        let e = authenticate(&AuthMode::ApiKey, &d, &HeaderMap::new(), None).unwrap_err();
        assert_eq!(e.status_code(), 401);
    }

    #[test]
    fn modes_parse() {
        assert_eq!(AuthMode::from_lookup(|_| None).unwrap(), AuthMode::ApiKey);
        assert!(
            AuthMode::from_lookup(|k| (k == "QUARRY_AUTH_MODE").then(|| "magic".into())).is_err()
        );
    }
}
