//! Reading the audit trail back (`quarry audit get` and `export`), straight from the audit
//! bucket: the objects of the days asked for, gunzipped when Firehose compressed them, one
//! JSON record a line.
//!
//! Two layouts are read, each narrowed to the days asked for:
//! - the stack's, `audit/tenant=T/date=YYYY-MM-DD/` (Firehose dynamic partitioning);
//! - Firehose's default, `audit/YYYY/MM/DD/HH/` (a stream without partitioning, such as the
//!   local one: moto does not partition).
//!
//! S3 Select is not used: AWS closed it to new customers in 2024. For SQL over months of
//! records, the Athena table of `infra/athena/audit.sql` (and the template's Glue table)
//! reads the same objects.

use std::io::Read;

use aws_config::SdkConfig;
use chrono::{Days, NaiveDate};
use serde_json::Value;

/// The most days one read spans (a bound on the objects listed).
pub const MAX_DAYS: u64 = 400;

#[derive(Debug, thiserror::Error)]
pub enum AuditReadError {
    #[error("cannot read the audit bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("{0}")]
    Range(String),
}

/// Which records to read.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// Only this tenant's (required for the partitioned layout's narrowing; `None` reads
    /// every tenant's partitions of those days).
    pub tenant: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Only this request's record.
    pub request_id: Option<String>,
}

pub struct AuditReader {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl AuditReader {
    pub fn new(sdk: &SdkConfig, bucket: &str) -> Self {
        Self {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(true)
                    .build(),
            ),
            bucket: bucket.to_owned(),
        }
    }

    fn fail(&self, e: impl std::fmt::Display) -> AuditReadError {
        AuditReadError::Bucket {
            bucket: self.bucket.clone(),
            message: e.to_string(),
        }
    }

    /// The records matching `q`, oldest object first. An unreadable object or line is an
    /// error, never a shorter answer.
    pub async fn read(&self, q: &AuditQuery) -> Result<Vec<Value>, AuditReadError> {
        let days = days(q.from, q.to)?;
        let mut prefixes = Vec::new();
        for day in &days {
            let date = day.format("%Y-%m-%d");
            match &q.tenant {
                Some(t) => prefixes.push(format!("audit/tenant={t}/date={date}/")),
                None => {
                    for tenant_prefix in self.tenant_prefixes().await? {
                        prefixes.push(format!("{tenant_prefix}date={date}/"));
                    }
                }
            }
            prefixes.push(format!("audit/{}/", day.format("%Y/%m/%d")));
        }
        let mut out = Vec::new();
        for prefix in prefixes {
            for key in self.keys(&prefix).await? {
                for record in self.records(&key).await? {
                    if matches(&record, q) {
                        out.push(record);
                    }
                }
            }
        }
        Ok(out)
    }

    /// `audit/tenant=T/` of every tenant with records.
    async fn tenant_prefixes(&self) -> Result<Vec<String>, AuditReadError> {
        let mut out = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("audit/tenant=")
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail(quarry_aws::sdk::describe(&e)))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok(out)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, AuditReadError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail(quarry_aws::sdk::describe(&e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    async fn records(&self, key: &str) -> Result<Vec<Value>, AuditReadError> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fail(format!("{key}: {}", quarry_aws::sdk::describe(&e))))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| self.fail(format!("{key}: {e}")))?
            .into_bytes();
        parse_object(&bytes).map_err(|e| self.fail(format!("{key}: {e}")))
    }
}

/// The records of one object: gzip (Firehose's compression) or plain, JSON lines. Records
/// written back to back without a newline are read too.
pub fn parse_object(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut out)
            .map_err(|e| format!("not gzip text: {e}"))?;
        out
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("not UTF-8: {e}"))?
    };
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.map_err(|e| format!("not a JSON record: {e}")))
        .collect()
}

fn matches(record: &Value, q: &AuditQuery) -> bool {
    let date = record["time"]
        .as_str()
        .and_then(|t| t.get(..10))
        .unwrap_or("");
    let in_range =
        NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok_and(|d| q.from <= d && d <= q.to);
    in_range
        && q.tenant.as_deref().is_none_or(|t| record["tenant"] == t)
        && q.request_id
            .as_deref()
            .is_none_or(|id| record["request_id"] == id)
}

fn days(from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>, AuditReadError> {
    if to < from {
        return Err(AuditReadError::Range(format!(
            "--to {to} is before --from {from}"
        )));
    }
    let span = (to - from).num_days().unsigned_abs() + 1;
    if span > MAX_DAYS {
        return Err(AuditReadError::Range(format!(
            "{span} days asked for: at most {MAX_DAYS} a read (use the Athena table for more)"
        )));
    }
    Ok((0..span)
        .filter_map(|i| from.checked_add_days(Days::new(i)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn objects_are_read_plain_or_gzipped() {
        let lines = "{\"request_id\":\"a\"}\n{\"request_id\":\"b\"}{\"request_id\":\"c\"}\n";
        assert_eq!(parse_object(lines.as_bytes()).unwrap().len(), 3);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(parse_object(&gz).unwrap()[2]["request_id"], "c");
        assert!(parse_object(b"{\"a\": ").is_err());
    }

    #[test]
    fn ranges_are_bounded() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(days(d("2026-01-30"), d("2026-02-02")).unwrap().len(), 4);
        assert!(days(d("2026-02-02"), d("2026-01-30")).is_err());
        assert!(days(d("2020-01-01"), d("2026-01-01")).is_err());
    }
}
