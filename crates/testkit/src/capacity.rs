//! A capacity model of DynamoDB for the tests: moto stores what it is sent but knows
//! nothing of partitions or transaction conflicts, so this proxy, in front of moto for
//! DynamoDB, records every write: the items it touches, the write units each costs (1 per
//! KB, twice in a transaction) and when it was in flight.
//!
//! [`Report::of`] replays the recorded writes at a modelled rate (the run's N requests
//! taking N / rps seconds) and gives each item's write units per second against DynamoDB's
//! 1,000 per partition, the transactions that were in flight together on one item, and the
//! rate the busiest item allows.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// DynamoDB's write units per second on one partition (and so at most on one item).
pub const ITEM_WCU_PER_SEC: f64 = 1_000.0;

/// One write request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Write {
    pub op: String,
    pub transactional: bool,
    pub start: Instant,
    pub end: Instant,
    /// (item `table|pk|sk`, write units).
    pub items: Vec<(String, u64)>,
}

#[derive(Default)]
struct Shared {
    writes: Mutex<Vec<Write>>,
    /// Sizes of items put, so an update of one is charged by its size.
    sizes: Mutex<HashMap<String, u64>>,
    /// Transactions let through before the next failures, and how many to fail.
    pass_tx: AtomicU64,
    fail_tx: AtomicU64,
}

/// The recording proxy.
pub struct CapacityProxy {
    url: String,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// DynamoDB's size of an attribute value (close enough: names and values in bytes).
fn value_size(v: &Value) -> u64 {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("S" | "N" | "B", Value::String(s)) => s.len() as u64,
                ("BOOL" | "NULL", _) => 1,
                (_, v) => v.to_string().len() as u64,
            })
            .sum(),
        other => other.to_string().len() as u64,
    }
}

fn item_size(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter()
        .map(|(k, v)| k.len() as u64 + value_size(v))
        .sum()
}

fn units(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

fn key_of(table: &str, key: &serde_json::Map<String, Value>) -> String {
    let part = |name: &str| {
        key.get(name)
            .and_then(Value::as_object)
            .and_then(|m| m.values().next())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    format!("{table}|{}|{}", part("pk"), part("sk"))
}

impl Shared {
    /// (item, units) of one Put, Update, Delete or ConditionCheck body.
    fn touched(&self, kind: &str, body: &Value) -> Option<(String, u64)> {
        let table = body.get("TableName")?.as_str()?;
        match kind {
            "Put" | "PutItem" | "PutRequest" => {
                let item = body.get("Item")?.as_object()?;
                let key = key_of(table, item);
                let size = item_size(item);
                let mut sizes = lock(&self.sizes);
                let before = sizes.insert(key.clone(), size).unwrap_or(0);
                Some((key, units(size.max(before))))
            }
            "Update" | "UpdateItem" => {
                let key = key_of(table, body.get("Key")?.as_object()?);
                let added: u64 = body
                    .get("ExpressionAttributeValues")
                    .and_then(Value::as_object)
                    .map_or(0, item_size);
                let mut sizes = lock(&self.sizes);
                let size = sizes.entry(key.clone()).or_insert(0);
                *size = (*size).max(key.len() as u64 + added);
                Some((key, units(*size)))
            }
            "Delete" | "DeleteItem" | "DeleteRequest" | "ConditionCheck" => {
                let key = key_of(table, body.get("Key")?.as_object()?);
                let size = lock(&self.sizes).get(&key).copied().unwrap_or(0);
                Some((key, units(size)))
            }
            _ => None,
        }
    }

    fn items(&self, op: &str, body: &Value) -> (bool, Vec<(String, u64)>) {
        match op {
            "PutItem" | "UpdateItem" | "DeleteItem" => {
                (false, self.touched(op, body).into_iter().collect())
            }
            "TransactWriteItems" => {
                let items = body
                    .get("TransactItems")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                    .filter_map(|m| m.iter().next())
                    .filter_map(|(kind, b)| self.touched(kind, b))
                    // A transaction writes every item twice (prepare and commit).
                    .map(|(k, u)| (k, 2 * u))
                    .collect();
                (true, items)
            }
            "BatchWriteItem" => {
                let mut items = Vec::new();
                for (table, requests) in body
                    .get("RequestItems")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    for r in requests.as_array().into_iter().flatten() {
                        for (kind, b) in r.as_object().into_iter().flatten() {
                            let mut b = b.clone();
                            b["TableName"] = Value::String(table.clone());
                            items.extend(self.touched(kind, &b));
                        }
                    }
                }
                (false, items)
            }
            _ => (false, Vec::new()),
        }
    }
}

impl CapacityProxy {
    /// A proxy in front of `target` (moto's URL), on a free loopback port.
    pub async fn start(target: &str) -> CapacityProxy {
        let shared = Arc::new(Shared::default());
        let client = reqwest::Client::new();
        let target = target.trim_end_matches('/').to_owned();
        let state = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (state, client, target) = (state.clone(), client.clone(), target.clone());
                async move { forward(&state, &client, &target, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("capacity proxy bind");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("capacity proxy address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        CapacityProxy { url, shared }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Everything recorded so far.
    pub fn writes(&self) -> Vec<Write> {
        lock(&self.shared.writes).clone()
    }

    /// Lets `pass` transactions through, then answers the next `fail` with DynamoDB's
    /// InternalServerError (a dependency failing between two writes).
    pub fn fail_transactions(&self, pass: u64, fail: u64) {
        self.shared.pass_tx.store(pass, Ordering::SeqCst);
        self.shared.fail_tx.store(fail, Ordering::SeqCst);
    }
}

async fn forward(
    state: &Shared,
    client: &reqwest::Client,
    target: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or("")
        .to_owned();
    if op == "TransactWriteItems" && state.fail_tx.load(Ordering::SeqCst) > 0 {
        let passing = state
            .pass_tx
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1))
            .is_ok();
        if !passing {
            state.fail_tx.fetch_sub(1, Ordering::SeqCst);
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/x-amz-json-1.0")],
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected failure"}"#,
            )
                .into_response();
        }
    }
    let start = Instant::now();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.request(method, format!("{target}{path}"));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let reply = request.body(body.clone()).send().await;
    let end = Instant::now();
    let Ok(reply) = reply else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = reply.status();
    let reply_headers = reply.headers().clone();
    let bytes = reply.bytes().await.unwrap_or_default();
    // Writes DynamoDB took (a refused condition is still charged: it is counted too).
    if let Ok(parsed) = serde_json::from_slice::<Value>(&body) {
        let (transactional, items) = state.items(&op, &parsed);
        if !items.is_empty() {
            lock(&state.writes).push(Write {
                op,
                transactional,
                start,
                end,
                items,
            });
        }
    }
    let mut response = (
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK),
        bytes,
    )
        .into_response();
    for (name, value) in &reply_headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// An item's load in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemLoad {
    pub item: String,
    pub write_units_per_sec: f64,
    /// Transactions on it per second, and in flight at once on average (rate × duration).
    pub transactions_per_sec: f64,
}

/// The recorded writes at a modelled rate.
#[derive(Debug, Clone)]
pub struct Report {
    pub requests: u64,
    pub rps: f64,
    /// Write units per request, all writes (the aggregation's included).
    pub write_units_per_request: f64,
    /// Write units per request made while answering (before the aggregation).
    pub request_path_units_per_request: f64,
    /// The busiest items, busiest first.
    pub hottest: Vec<ItemLoad>,
    /// Items over [`ITEM_WCU_PER_SEC`] at the modelled rate.
    pub over_limit: Vec<ItemLoad>,
    /// Pairs of transactions that were in flight together and shared an item, and one such
    /// item.
    pub overlapping_transactions: u64,
    pub overlap_example: Option<String>,
    /// The rate at which the busiest item reaches [`ITEM_WCU_PER_SEC`].
    pub sustained_rps: f64,
    /// The busiest partition key (its items summed: they share a partition unless DynamoDB
    /// splits it), and the rate at which it reaches 1,000 write units per second.
    pub busiest_partition: Option<ItemLoad>,
    pub partition_sustained_rps: f64,
}

impl Report {
    /// `writes` recorded while `requests` requests were answered and aggregated, the first
    /// `request_path` of them while answering; modelled at `rps`.
    pub fn of(writes: &[Write], request_path: usize, requests: u64, rps: f64) -> Report {
        let seconds = requests as f64 / rps;
        let mut units: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut total = 0u64;
        let mut path_total = 0u64;
        for (i, w) in writes.iter().enumerate() {
            for (item, u) in &w.items {
                let e = units.entry(item.as_str()).or_default();
                e.0 += u;
                e.1 += u64::from(w.transactional);
                total += u;
                if i < request_path {
                    path_total += u;
                }
            }
        }
        let mut loads: Vec<ItemLoad> = units
            .iter()
            .map(|(item, (u, tx))| ItemLoad {
                item: (*item).to_owned(),
                write_units_per_sec: *u as f64 / seconds,
                transactions_per_sec: *tx as f64 / seconds,
            })
            .collect();
        loads.sort_by(|a, b| b.write_units_per_sec.total_cmp(&a.write_units_per_sec));
        let busiest = loads.first().map_or(0.0, |l| l.write_units_per_sec);
        let mut partitions: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for l in &loads {
            let pk = l
                .item
                .rsplit_once('|')
                .map_or(l.item.as_str(), |(pk, _)| pk);
            let e = partitions.entry(pk.to_owned()).or_default();
            e.0 += l.write_units_per_sec;
            e.1 += l.transactions_per_sec;
        }
        let busiest_partition = partitions
            .into_iter()
            .map(|(item, (w, tx))| ItemLoad {
                item,
                write_units_per_sec: w,
                transactions_per_sec: tx,
            })
            .max_by(|a, b| a.write_units_per_sec.total_cmp(&b.write_units_per_sec));
        let at_limit = |units: f64| {
            if units > 0.0 {
                rps * ITEM_WCU_PER_SEC / units
            } else {
                f64::INFINITY
            }
        };
        let (overlapping, example) = overlaps(writes);
        Report {
            requests,
            rps,
            write_units_per_request: total as f64 / requests as f64,
            request_path_units_per_request: path_total as f64 / requests as f64,
            over_limit: loads
                .iter()
                .filter(|l| l.write_units_per_sec > ITEM_WCU_PER_SEC)
                .cloned()
                .collect(),
            hottest: loads.into_iter().take(5).collect(),
            overlapping_transactions: overlapping,
            overlap_example: example,
            sustained_rps: at_limit(busiest),
            partition_sustained_rps: at_limit(
                busiest_partition
                    .as_ref()
                    .map_or(0.0, |p| p.write_units_per_sec),
            ),
            busiest_partition,
        }
    }

    /// A few lines for a person.
    pub fn summary(&self, name: &str) -> String {
        let mut out = format!(
            "{name}: {} requests at {:.0}/s: {:.2} write units per request ({:.2} while answering); busiest item {:.0} WCU/s; {} items over {ITEM_WCU_PER_SEC:.0} WCU/s; {} overlapping transactions on one item; sustains {:.0} requests/s by item, {:.0} by partition key\n",
            self.requests,
            self.rps,
            self.write_units_per_request,
            self.request_path_units_per_request,
            self.hottest.first().map_or(0.0, |l| l.write_units_per_sec),
            self.over_limit.len(),
            self.overlapping_transactions,
            self.sustained_rps,
            self.partition_sustained_rps,
        );
        for l in &self.hottest {
            out.push_str(&format!(
                "  {:>8.0} WCU/s {:>7.1} tx/s  {}\n",
                l.write_units_per_sec, l.transactions_per_sec, l.item
            ));
        }
        if let Some(p) = &self.busiest_partition {
            out.push_str(&format!(
                "  busiest partition key: {:.0} WCU/s  {}\n",
                p.write_units_per_sec, p.item
            ));
        }
        if let Some(e) = &self.overlap_example {
            out.push_str(&format!("  e.g. transactions in flight together on {e}\n"));
        }
        out
    }
}

/// Pairs of transactions in flight at the same time that touched a common item.
fn overlaps(writes: &[Write]) -> (u64, Option<String>) {
    let mut tx: Vec<&Write> = writes.iter().filter(|w| w.transactional).collect();
    tx.sort_by_key(|w| w.start);
    let mut count = 0;
    let mut example = None;
    for (i, a) in tx.iter().enumerate() {
        for b in tx.iter().skip(i + 1) {
            if b.start >= a.end {
                break;
            }
            if let Some((item, _)) = a
                .items
                .iter()
                .find(|(k, _)| b.items.iter().any(|(j, _)| j == k))
            {
                count += 1;
                example.get_or_insert_with(|| item.clone());
            }
        }
    }
    (count, example)
}
