//! The S3 a batch job reads and writes: path-style requests with a placeholder, unsigned
//! `Authorization` header, which is what the local AWS (moto) accepts, so jobs run end to
//! end without credentials.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{BedrockError, ErrorKind};

/// Characters left as they are in an object key of a URL path: S3's unreserved ones and `/`.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s3://bucket/key`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The S3 endpoint: the configured one, else the AWS SDKs' standard variables.
pub fn endpoint(configured: Option<&str>) -> Option<String> {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty())
        .map(|e| e.trim_end_matches('/').to_owned())
}

/// moto verifies no signature, but treats a request without `Authorization` as anonymous and
/// refuses it objects that are not public; the SDKs' uploads are private.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

fn failure(message: String) -> BedrockError {
    BedrockError::new(ErrorKind::InternalServerException, message)
}

pub struct S3<'a> {
    pub http: &'a reqwest::Client,
    pub endpoint: &'a str,
}

impl S3<'_> {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint,
            utf8_percent_encode(bucket, KEY),
            utf8_percent_encode(key, KEY)
        )
    }

    /// The object's bytes, `None` when there is no such object.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BedrockError> {
        let url = self.object_url(bucket, key);
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, AUTHORIZATION)
            .send()
            .await
            .map_err(|e| failure(format!("Unable to read s3://{bucket}/{key}: {e}")))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(failure(format!(
                "Unable to read s3://{bucket}/{key}: S3 answered {}",
                response.status()
            )));
        }
        response
            .bytes()
            .await
            .map(Some)
            .map_err(|e| failure(format!("Unable to read s3://{bucket}/{key}: {e}")))
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), BedrockError> {
        let url = self.object_url(bucket, key);
        let response = self
            .http
            .put(&url)
            .header(reqwest::header::AUTHORIZATION, AUTHORIZATION)
            .body(body)
            .send()
            .await
            .map_err(|e| failure(format!("Unable to write s3://{bucket}/{key}: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(failure(format!(
                "Unable to write s3://{bucket}/{key}: S3 answered {}",
                response.status()
            )))
        }
    }

    /// Every key under `prefix` (ListObjectsV2, following continuation tokens).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BedrockError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/{}?list-type=2&prefix={}",
                self.endpoint,
                utf8_percent_encode(bucket, KEY),
                utf8_percent_encode(prefix, NON_ALPHANUMERIC)
            );
            if let Some(t) = &token {
                url.push_str("&continuation-token=");
                url.push_str(&utf8_percent_encode(t, NON_ALPHANUMERIC).to_string());
            }
            let listed = |e: String| failure(format!("Unable to list s3://{bucket}/{prefix}: {e}"));
            let response = self
                .http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, AUTHORIZATION)
                .send()
                .await
                .map_err(|e| listed(e.to_string()))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| listed(e.to_string()))?;
            if !status.is_success() {
                let code = tag_values(&text, "Code").into_iter().next();
                return Err(listed(code.unwrap_or_else(|| status.to_string())));
            }
            keys.extend(tag_values(&text, "Key"));
            token = tag_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            let truncated =
                tag_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }
}

/// The text of every `<tag>...</tag>` of an S3 XML answer, unescaped. S3's list answers are
/// flat enough that this needs no XML parser.
fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        values.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    values
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_key() {
        let l = S3Location::parse("s3://bucket/in/a.jsonl").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.key.as_str()),
            ("bucket", "in/a.jsonl")
        );
        assert_eq!(S3Location::parse("s3://bucket").unwrap().key, "");
        assert!(S3Location::parse("https://bucket/x").is_none());
    }

    #[test]
    fn list_answers_are_read() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&amp;b.jsonl</Key></Contents><Contents><Key>c.jsonl</Key></Contents></ListBucketResult>";
        assert_eq!(tag_values(xml, "Key"), ["a&b.jsonl", "c.jsonl"]);
        assert_eq!(tag_values(xml, "IsTruncated"), ["false"]);
    }
}
