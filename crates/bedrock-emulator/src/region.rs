//! The region a request was sent to, read from its SigV4 `Authorization` header.
//!
//! The AWS SDKs sign every call; the credential scope names the region the client is
//! configured for (`Credential=AKID/20261130/us-west-2/bedrock/aws4_request`). The emulator
//! serves every region on one URL, so the scope is what tells regions apart: calls are
//! counted, recorded and faulted per region. The signature itself is not checked.

use http::HeaderMap;

/// The region of a SigV4 `Authorization` header's credential scope, `None` when the header
/// is absent or not SigV4.
pub fn signed_region(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let rest = value.trim_start().strip_prefix("AWS4-HMAC-SHA256")?;
    let credential = rest
        .split([',', ' '])
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    // AKID/DATE/REGION/SERVICE/aws4_request; an access key never holds a slash.
    let mut scope = credential.split('/');
    let (_key, _date, region) = (scope.next()?, scope.next()?, scope.next()?);
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_owned())
}

/// The request's region, or `default` when its headers name none.
pub fn of_request(headers: &HeaderMap, default: &str) -> String {
    signed_region(headers).unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(auth).unwrap(),
        );
        h
    }

    #[test]
    fn the_credential_scope_names_the_region() {
        let h = headers(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-west-2/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        );
        assert_eq!(signed_region(&h).as_deref(), Some("us-west-2"));
        let h = headers(
            "AWS4-HMAC-SHA256 SignedHeaders=host,Credential=test/20240101/eu-central-1/bedrock/aws4_request,Signature=0",
        );
        assert_eq!(signed_region(&h).as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn unsigned_or_foreign_headers_fall_back_to_the_default() {
        assert_eq!(of_request(&HeaderMap::new(), "us-east-1"), "us-east-1");
        assert_eq!(of_request(&headers("Bearer abc"), "us-east-1"), "us-east-1");
        assert_eq!(
            of_request(&headers("AWS4-HMAC-SHA256 Credential=x"), "ap-south-1"),
            "ap-south-1"
        );
        assert_eq!(
            of_request(
                &headers("AWS4-HMAC-SHA256 Credential=a/b/US WEST/bedrock/aws4_request"),
                "us-east-1"
            ),
            "us-east-1"
        );
    }
}
