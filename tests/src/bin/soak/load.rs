//! The load: customers, credentials, the shared tally, the check of every answer, and one
//! keep-alive connection's worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use integration_tests::https::Https;
use serde_json::Value;
use tokio::time::Instant;

/// The paths of the mix, in turn.
pub(crate) const PATHS: [&str; 4] = ["/v1/me", "/v1/connectors", "/v1/me", "/v1/usage"];
const MAX_LISTED_FAILURES: usize = 50;

/// A demo customer of stack.json.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) region: String,
    pub(crate) tier: String,
    pub(crate) api_key: Option<String>,
}

/// One credential the load uses: whose it is and its `Authorization` value.
#[derive(Debug, Clone)]
pub(crate) struct Cred {
    pub(crate) customer: usize,
    pub(crate) jwt: bool,
    pub(crate) authorization: String,
}

/// What the run found and did.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) outcomes: BTreeMap<String, u64>,
    pub(crate) failures: Vec<String>,
    pub(crate) failure_count: u64,
    pub(crate) events: BTreeMap<&'static str, u64>,
    pub(crate) event_log: Vec<String>,
}

/// A window during which the driver had a customer suspended.
pub(crate) struct Suspension {
    pub(crate) customer: usize,
    pub(crate) from: Instant,
    pub(crate) until: Option<Instant>,
}

pub(crate) struct Shared {
    pub(crate) start: Instant,
    pub(crate) customers: Vec<Customer>,
    pub(crate) creds: RwLock<Arc<Vec<Cred>>>,
    pub(crate) suspensions: Mutex<Vec<Suspension>>,
    pub(crate) tally: Mutex<Tally>,
    pub(crate) sent: AtomicU64,
}

impl Shared {
    pub(crate) fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub(crate) fn count(&self, outcome: &str) {
        *self
            .tally
            .lock()
            .unwrap()
            .outcomes
            .entry(outcome.to_owned())
            .or_insert(0) += 1;
    }

    pub(crate) fn fail(&self, what: String) {
        let line = format!("[{:7.1}s] {what}", self.t());
        eprintln!("FAIL {line}");
        let mut t = self.tally.lock().unwrap();
        t.failure_count += 1;
        if t.failures.len() < MAX_LISTED_FAILURES {
            t.failures.push(line);
        }
    }

    pub(crate) fn event(&self, kind: &'static str, what: String) {
        let line = format!("[{:7.1}s] {kind}: {what}", self.t());
        println!("{line}");
        let mut t = self.tally.lock().unwrap();
        *t.events.entry(kind).or_insert(0) += 1;
        t.event_log.push(line);
    }

    /// Whether the driver had `customer` suspended at any time in `[sent, ended]`.
    pub(crate) fn suspended_during(&self, customer: usize, sent: Instant, ended: Instant) -> bool {
        self.suspensions
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.customer == customer && s.from <= ended && s.until.is_none_or(|u| u >= sent))
    }
}

/// Every `tenant_id` value anywhere in `v`.
pub(crate) fn tenant_ids<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "tenant_id" {
                    out.push(x.as_str().unwrap_or("<not a string>"));
                }
                tenant_ids(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| tenant_ids(x, out)),
        _ => {}
    }
}

/// Checks one answer of the load; `None` when it is as expected, else the failure.
pub(crate) fn check(
    shared: &Shared,
    cred: &Cred,
    path: &str,
    status: u16,
    region: Option<&str>,
    body: &[u8],
    (sent, ended): (Instant, Instant),
) -> Option<String> {
    let c = &shared.customers[cred.customer];
    let who = format!(
        "{} {} ({} {}, {})",
        path,
        c.id,
        c.region,
        c.tier,
        if cred.jwt { "jwt" } else { "api key" }
    );
    if let Some(r) = region {
        if r != c.region {
            shared.count("wrong_region");
            return Some(format!("{who}: {status} from region {r}"));
        }
    }
    match status {
        200 => {
            if region.is_none() {
                shared.count("wrong_region");
                return Some(format!("{who}: 200 without x-residency-region"));
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let mut ids = Vec::new();
            tenant_ids(&v, &mut ids);
            if path == "/v1/me" && ids.is_empty() {
                shared.count("malformed");
                return Some(format!("{who}: 200 without tenant_id: {v}"));
            }
            if let Some(other) = ids.iter().find(|id| **id != c.id) {
                shared.count("other_customer_data");
                return Some(format!("{who}: 200 carrying tenant {other}"));
            }
            if path == "/v1/me" && v["region"] != c.region.as_str() {
                shared.count("wrong_region");
                return Some(format!("{who}: /v1/me says region {}", v["region"]));
            }
            shared.count("200");
            None
        }
        429 => {
            shared.count("429 (rate limited, expected)");
            None
        }
        403 if shared.suspended_during(cred.customer, sent, ended) => {
            shared.count("403 (suspended by the driver, expected)");
            None
        }
        s => {
            shared.count(&if s >= 500 {
                format!("{s} (unexpected 5xx)")
            } else {
                format!("{s} (unexpected)")
            });
            Some(format!(
                "{who}: unexpected {s}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        }
    }
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive connection's share of the load until `end`.
pub(crate) async fn worker(
    shared: Arc<Shared>,
    https: Https,
    gateway: String,
    k: usize,
    period: Duration,
    end: Instant,
) {
    let mut conn: Option<Sender> = None;
    let mut tick =
        tokio::time::interval_at(Instant::now() + period.mul_f64(k as f64 / 16.0), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = k;
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            return;
        }
        let creds = Arc::clone(&shared.creds.read().unwrap());
        let cred = &creds[i % creds.len()];
        let path = PATHS[(i / creds.len()) % PATHS.len()];
        i += 7;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match https.connect(&gateway).await {
                Ok((s, _)) => conn = Some(s),
                Err(e) => {
                    shared.count("transport_error");
                    shared.fail(format!("connect to the gateway: {e}"));
                    continue;
                }
            }
        }
        let send = conn.as_mut().expect("connected");
        if send.ready().await.is_err() {
            conn = None;
            shared.count("transport_error");
            shared.fail("the gateway closed a keep-alive connection before a request".into());
            continue;
        }
        let req = http::Request::get(path)
            .header("host", gateway.trim_start_matches("https://"))
            .header("authorization", &cred.authorization)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let sent = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(15), async {
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let region = resp
                .headers()
                .get("x-residency-region")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, region, body))
        })
        .await;
        let ended = Instant::now();
        match result {
            Ok(Ok((status, region, body))) => {
                if let Some(f) = check(
                    &shared,
                    cred,
                    path,
                    status,
                    region.as_deref(),
                    &body,
                    (sent, ended),
                ) {
                    shared.fail(f);
                }
            }
            Ok(Err(e)) => {
                conn = None;
                shared.count("transport_error");
                shared.fail(format!("{path}: {e}"));
            }
            Err(_) => {
                conn = None;
                shared.count("timed_out");
                shared.fail(format!("{path}: no answer within 15 s"));
            }
        }
    }
}
