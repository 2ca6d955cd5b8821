//! Soak driver for `bench/soak.sh`: a steady mixed load against a running `residency up`
//! stack, every response checked, while the driver rotates the dev IdP's signing key, changes
//! tiers, suspends and reactivates customers and revokes API keys, and samples the RSS and
//! open file descriptors of the gateway and every node.
//!
//! Usage: `soak <stack-dir> [--secs N] [--rate R] [--connections C] [--every S] [--json FILE]`
//!
//! Load: `C` keep-alive HTTPS connections to the gateway, `R` requests/s in all, cycling
//! through every demo customer (JWTs from the dev IdP's `/token` for all, plus the demo API
//! key of every scale/enterprise customer) and `GET /v1/me`, `/v1/connectors`, `/v1/usage`.
//! Every answer is checked: any 5xx, any answer from a region other than the caller's home
//! (`x-residency-region`, required on every 200), any `tenant_id` in a 200 body other than the
//! caller's, any refusal the driver did not cause, or a transport error is a failure. 429s are
//! counted apart, 403s only while the driver has that customer suspended (otherwise a failure).
//!
//! Events, every `S` seconds, in turn: signing key rotation (rotate, poll until the gateway
//! accepts a new-`kid` token, switch every JWT, retire the old key), a tier change, a suspend
//! and reactivate, an API key created, used and revoked (401 within 1 s). Every 10 s: VmRSS
//! and the number of open fds of each process in `<stack-dir>/run.json`; at the end, after a
//! 30 s warm-up, the last third's mean must be at most 10 % above the first third's (a leak
//! grows; a fall, e.g. idle connections closed, is reported but not a failure).
//!
//! Exits 1 when any check failed, 2 on a usage or setup error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use integration_tests::https::Https;
use integration_tests::Http;
use serde_json::{json, Value};
use tokio::time::Instant;

const PATHS: [&str; 4] = ["/v1/me", "/v1/connectors", "/v1/me", "/v1/usage"];
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(30);
const FLAT_WITHIN: f64 = 0.10;
const MAX_LISTED_FAILURES: usize = 50;

struct Args {
    dir: PathBuf,
    secs: u64,
    rate: u32,
    connections: usize,
    every: u64,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        secs: 600,
        rate: 300,
        connections: 16,
        every: 20,
        json: None,
    };
    let mut dir = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--secs" => a.secs = value("--secs")?.parse()?,
            "--rate" => a.rate = value("--rate")?.parse()?,
            "--connections" => a.connections = value("--connections")?.parse()?,
            "--every" => a.every = value("--every")?.parse()?,
            "--json" => a.json = Some(value("--json")?.into()),
            s if s.starts_with("--") => bail!("unknown option {s}"),
            s => dir = Some(PathBuf::from(s)),
        }
    }
    a.dir = dir.context(
        "usage: soak <stack-dir> [--secs N] [--rate R] [--connections C] [--every S] [--json FILE]",
    )?;
    if a.rate == 0 || a.connections == 0 || a.every == 0 {
        bail!("--rate, --connections and --every must be positive");
    }
    Ok(a)
}

/// A demo customer of stack.json.
#[derive(Debug, Clone)]
struct Customer {
    id: String,
    region: String,
    tier: String,
    api_key: Option<String>,
}

/// One credential the load uses: whose it is and its `Authorization` value.
#[derive(Debug, Clone)]
struct Cred {
    customer: usize,
    jwt: bool,
    authorization: String,
}

/// What the run found and did.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    failures: Vec<String>,
    failure_count: u64,
    events: BTreeMap<&'static str, u64>,
    event_log: Vec<String>,
}

/// A window during which the driver had a customer suspended.
struct Suspension {
    customer: usize,
    from: Instant,
    until: Option<Instant>,
}

struct Shared {
    start: Instant,
    customers: Vec<Customer>,
    creds: RwLock<Arc<Vec<Cred>>>,
    suspensions: Mutex<Vec<Suspension>>,
    tally: Mutex<Tally>,
    sent: AtomicU64,
}

impl Shared {
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn count(&self, outcome: &str) {
        *self
            .tally
            .lock()
            .unwrap()
            .outcomes
            .entry(outcome.to_owned())
            .or_insert(0) += 1;
    }

    fn fail(&self, what: String) {
        let line = format!("[{:7.1}s] {what}", self.t());
        eprintln!("FAIL {line}");
        let mut t = self.tally.lock().unwrap();
        t.failure_count += 1;
        if t.failures.len() < MAX_LISTED_FAILURES {
            t.failures.push(line);
        }
    }

    fn event(&self, kind: &'static str, what: String) {
        let line = format!("[{:7.1}s] {kind}: {what}", self.t());
        println!("{line}");
        let mut t = self.tally.lock().unwrap();
        *t.events.entry(kind).or_insert(0) += 1;
        t.event_log.push(line);
    }

    /// Whether the driver had `customer` suspended at any time in `[sent, ended]`.
    fn suspended_during(&self, customer: usize, sent: Instant, ended: Instant) -> bool {
        self.suspensions
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.customer == customer && s.from <= ended && s.until.is_none_or(|u| u >= sent))
    }
}

/// Every `tenant_id` value anywhere in `v`.
fn tenant_ids<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
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
fn check(
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

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive connection's share of the load until `end`.
async fn worker(
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

/// The control side: admin API, IdP, and one-off gateway calls.
struct Control {
    shared: Arc<Shared>,
    http: Http,
    https: Https,
    gateway: String,
    admin: String,
    admin_auth: String,
    idp: String,
    /// A customer whose quota the driver lifted: the rotation's probe.
    probe: usize,
}

impl Control {
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<integration_tests::Response> {
        self.http
            .try_send(
                method,
                &format!("{}{path}", self.admin),
                &[("authorization", &self.admin_auth)],
                body,
            )
            .await
            .map_err(|e| anyhow::anyhow!("admin {path}: {e}"))
    }

    async fn token(&self, tenant: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/token", self.idp),
                &[],
                Some(&json!({ "tenant_id": tenant, "sub": "soak" , "role": "owner"})),
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp /token: {e}"))?;
        anyhow::ensure!(
            r.status == 200,
            "idp /token answered {}: {}",
            r.status,
            r.text
        );
        Ok(r.json["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }

    async fn me(&self, authorization: &str) -> anyhow::Result<integration_tests::Response> {
        self.https
            .send(
                Method::GET,
                &format!("{}/v1/me", self.gateway),
                &[("authorization", authorization)],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("gateway /v1/me: {e}"))
    }

    /// Every credential: a fresh JWT for each customer, the demo API keys.
    async fn creds(&self) -> anyhow::Result<Vec<Cred>> {
        let mut out = Vec::new();
        for (i, c) in self.shared.customers.iter().enumerate() {
            out.push(Cred {
                customer: i,
                jwt: true,
                authorization: format!("Bearer {}", self.token(&c.id).await?),
            });
            if let Some(k) = &c.api_key {
                out.push(Cred {
                    customer: i,
                    jwt: false,
                    authorization: format!("ApiKey {k}"),
                });
            }
        }
        Ok(out)
    }

    /// Rotates the signing key, waits for the gateway to accept new-kid tokens, switches the
    /// load to them and retires the old key.
    async fn rotate(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/keys/rotate", self.idp),
                &[],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp rotate: {e}"))?;
        anyhow::ensure!(r.status == 200, "rotate answered {}: {}", r.status, r.text);
        let kid = r.json["kid"].as_str().context("kid")?.to_owned();
        let probe_customer = &self.shared.customers[self.probe];
        let probe = self.token(&probe_customer.id).await?;
        let header = jsonwebtoken::decode_header(&probe)?;
        anyhow::ensure!(
            header.kid.as_deref() == Some(kid.as_str()),
            "a token minted after the rotation carries kid {:?}, not {kid}",
            header.kid
        );
        // The gateway refetches the JWKS on an unknown kid, at most once per cool-down (30 s).
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(75);
        let mut refused = 0;
        loop {
            let r = self.me(&format!("Bearer {probe}")).await?;
            if r.status == 200 {
                break;
            }
            // 429: the probe customer's quota is shared with the load; ask again.
            anyhow::ensure!(
                r.status == 401 || r.status == 429,
                "a new-kid token answered {}: {}",
                r.status,
                r.text
            );
            refused += u32::from(r.status == 401);
            anyhow::ensure!(
                Instant::now() < deadline,
                "the gateway still refuses new-kid tokens 75 s after the rotation"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let accepted_after = asked.elapsed();
        let creds = self.creds().await?;
        *self.shared.creds.write().unwrap() = Arc::new(creds);
        let r = self
            .http
            .try_send(
                Method::POST,
                &format!("{}/keys/retire", self.idp),
                &[],
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("idp retire: {e}"))?;
        anyhow::ensure!(r.status == 200, "retire answered {}: {}", r.status, r.text);
        anyhow::ensure!(r.json["kids"] == json!([kid]), "after retire: {}", r.json);
        self.shared.event(
            "rotation",
            format!(
                "kid {kid}: accepted by the gateway after {:.1} s ({refused} probe 401s while it \
                 refetched), load switched, old key retired",
                accepted_after.as_secs_f64()
            ),
        );
        Ok(())
    }

    async fn patch(&self, c: &Customer, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .admin(
                Method::PATCH,
                &format!("/admin/v1/tenants/{}", c.id),
                Some(body),
            )
            .await?;
        anyhow::ensure!(
            r.status == 200,
            "PATCH {body} answered {}: {}",
            r.status,
            r.text
        );
        Ok(r.json)
    }

    /// Moves customer `n` to the neighbouring tier that keeps its credentials valid.
    async fn tier_change(&self, n: usize, tiers: &mut [String]) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let to = match tiers[n].as_str() {
            "starter" => "growth",
            "growth" => "starter",
            "scale" => "enterprise",
            _ => "scale",
        };
        let v = self.patch(c, &json!({ "tier": to })).await?;
        anyhow::ensure!(v["tier"] == to, "PATCH tier {to} answered {v}");
        let from = std::mem::replace(&mut tiers[n], to.to_owned());
        self.shared.event(
            "tier_change",
            format!("{} ({}) {from} -> {to}", c.id, c.region),
        );
        Ok(())
    }

    /// Polls `/v1/me` with `authorization` until it answers `want` or `within` passes.
    async fn until(
        &self,
        authorization: &str,
        want: u16,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let r = self.me(authorization).await?;
            if r.status == want {
                return Ok(t0.elapsed());
            }
            anyhow::ensure!(
                t0.elapsed() < within,
                "/v1/me still answers {} (want {want}) after {within:?}: {}",
                r.status,
                r.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Suspends customer `n` for a few seconds under load, then reactivates it.
    async fn suspend(&self, n: usize) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let auth = format!("Bearer {}", self.token(&c.id).await?);
        self.shared.suspensions.lock().unwrap().push(Suspension {
            customer: n,
            from: Instant::now(),
            until: None,
        });
        let v = self.patch(c, &json!({ "status": "suspended" })).await?;
        anyhow::ensure!(v["status"] == "suspended", "PATCH status answered {v}");
        let took = self.until(&auth, 403, Duration::from_secs(1)).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let v = self.patch(c, &json!({ "status": "active" })).await?;
        anyhow::ensure!(v["status"] == "active", "PATCH status answered {v}");
        let back = self.until(&auth, 200, Duration::from_secs(1)).await?;
        // From here on a 403 for this customer is a failure again.
        for s in self.shared.suspensions.lock().unwrap().iter_mut() {
            if s.customer == n && s.until.is_none() {
                s.until = Some(Instant::now());
            }
        }
        self.shared.event(
            "suspension",
            format!(
                "{} ({} {}): 403 after {} ms, 200 again {} ms after reactivation",
                c.id,
                c.region,
                c.tier,
                took.as_millis(),
                back.as_millis()
            ),
        );
        Ok(())
    }

    /// Creates an API key for customer `n`, uses it, revokes it: 401 within 1 s.
    async fn revoke(&self, n: usize) -> anyhow::Result<()> {
        let c = &self.shared.customers[n];
        let path = format!("/admin/v1/tenants/{}/api-keys", c.id);
        let r = self
            .admin(Method::POST, &path, Some(&json!({ "name": "soak" })))
            .await?;
        anyhow::ensure!(
            r.status == 201,
            "creating a key answered {}: {}",
            r.status,
            r.text
        );
        let key = r.json["api_key"].as_str().context("api_key")?.to_owned();
        let id = r.json["id"].as_str().context("id")?.to_owned();
        let auth = format!("ApiKey {key}");
        self.until(&auth, 200, Duration::from_secs(1)).await?;
        let r = self.me(&auth).await?;
        anyhow::ensure!(
            r.status != 200 || r.json["tenant_id"] == c.id.as_str(),
            "a new key of {} answered for another customer: {}",
            c.id,
            r.text
        );
        let r = self
            .admin(Method::DELETE, &format!("{path}/{id}"), None)
            .await?;
        anyhow::ensure!(
            r.status.is_success(),
            "revoking answered {}: {}",
            r.status,
            r.text
        );
        let took = self.until(&auth, 401, Duration::from_secs(1)).await?;
        // And it stays refused.
        let r = self.me(&auth).await?;
        anyhow::ensure!(r.status == 401, "a revoked key answered {}", r.status);
        self.shared
            .count("401 (key revoked by the driver, expected)");
        self.shared.event(
            "revocation",
            format!(
                "key {id} of {} ({}): used (200), revoked, 401 after {} ms",
                c.id,
                c.region,
                took.as_millis()
            ),
        );
        Ok(())
    }
}

/// A process of run.json and its samples: (seconds since start, RSS kB, open fds).
struct Watched {
    label: String,
    pid: u32,
    samples: Vec<(f64, u64, u64)>,
}

fn run_json(dir: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let path = dir.join("run.json");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
    )?;
    let mut out = Vec::new();
    for c in v["children"].as_array().context("run.json: children")? {
        out.push((
            c[0].as_str().context("label")?.to_owned(),
            u32::try_from(c[1].as_u64().context("pid")?)?,
        ));
    }
    Ok(out)
}

fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Whether a series (after the warm-up) is flat: the last third's mean at most 10 % above the
/// first third's. `None` when there are too few samples to say.
fn flat(series: &[f64]) -> Option<(f64, f64, bool)> {
    let n = series.len() / 3;
    if n == 0 {
        return None;
    }
    let first = mean(&series[..n]);
    let last = mean(&series[series.len() - n..]);
    // A leak grows: a fall (idle connections closed, caches trimmed) is reported, not failed.
    let ok = last <= first * (1.0 + FLAT_WITHIN);
    Some((first, last, ok))
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn run() -> anyhow::Result<bool> {
    let a = args()?;
    let stack_path = a.dir.join("stack.json");
    let stack: Value = serde_json::from_slice(
        &std::fs::read(&stack_path).with_context(|| format!("{}", stack_path.display()))?,
    )?;
    let s = |p: &str| -> anyhow::Result<String> {
        stack
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("stack.json: {p}"))
    };
    let gateway = s("/gateway/url")?;
    let ca = a.dir.join(s("/gateway/ca_cert")?);
    let token_url = s("/jwt/token_url")?;
    let idp = token_url
        .strip_suffix("/token")
        .context("jwt.token_url does not end in /token")?
        .to_owned();
    let mut customers = Vec::new();
    for t in stack["demo_tenants"]
        .as_array()
        .context("stack.json: demo_tenants")?
    {
        customers.push(Customer {
            id: t["id"].as_str().context("id")?.to_owned(),
            region: t["region"].as_str().context("region")?.to_owned(),
            tier: t["tier"].as_str().context("tier")?.to_owned(),
            api_key: t["api_key"].as_str().map(str::to_owned),
        });
    }
    anyhow::ensure!(!customers.is_empty(), "stack.json has no demo tenants");
    let shared = Arc::new(Shared {
        start: Instant::now(),
        customers: customers.clone(),
        creds: RwLock::new(Arc::new(Vec::new())),
        suspensions: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
        sent: AtomicU64::new(0),
    });
    let ctl = Control {
        shared: Arc::clone(&shared),
        http: Http::default(),
        https: Https::new(&ca, None),
        gateway: gateway.clone(),
        admin: s("/admin/url")?,
        admin_auth: format!("Bearer {}", s("/admin/token")?),
        idp,
        probe: customers
            .iter()
            .position(|c| c.tier != "starter")
            .context("stack.json has no customer above the starter tier")?,
    };
    // Lift the quota of every customer but the starter ones: most of the load is served, the
    // starters exercise the rate limiter (429s, counted apart).
    for c in customers.iter().filter(|c| c.tier != "starter") {
        ctl.patch(c, &json!({ "limits": { "rate_limit_per_min": 1_000_000 } }))
            .await?;
    }
    let creds = ctl.creds().await?;
    // Every credential and path answers 200 before the load starts (a setup error otherwise).
    for cred in &creds {
        for path in PATHS {
            let r = ctl
                .https
                .send(
                    Method::GET,
                    &format!("{gateway}{path}"),
                    &[("authorization", &cred.authorization)],
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                r.status == 200,
                "preflight {path} for {} answered {}: {}",
                customers[cred.customer].id,
                r.status,
                r.text
            );
        }
    }
    println!(
        "soak: {} customers, {} credentials, {} req/s on {} connections for {} s, an event every {} s",
        customers.len(),
        creds.len(),
        a.rate,
        a.connections,
        a.secs,
        a.every
    );
    *shared.creds.write().unwrap() = Arc::new(creds);

    let start = Instant::now();
    let end = start + Duration::from_secs(a.secs);
    let period = Duration::from_secs(1) * u32::try_from(a.connections)? / a.rate;
    let workers: Vec<_> = (0..a.connections)
        .map(|k| {
            tokio::spawn(worker(
                Arc::clone(&shared),
                ctl.https.clone(),
                gateway.clone(),
                k,
                period,
                end,
            ))
        })
        .collect();

    // Resource samples.
    let dir = a.dir.clone();
    let sampler_shared = Arc::clone(&shared);
    let sampler = tokio::spawn(async move {
        let mut watched: Vec<Watched> = run_json(&dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(label, pid)| Watched {
                label,
                pid,
                samples: Vec::new(),
            })
            .collect();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let t = now.duration_since(start).as_secs_f64();
            let current = run_json(&dir).unwrap_or_default();
            for w in &mut watched {
                if let Some((_, pid)) = current.iter().find(|(l, _)| *l == w.label) {
                    if *pid != w.pid {
                        sampler_shared.fail(format!(
                            "{} was restarted (pid {} -> {pid})",
                            w.label, w.pid
                        ));
                        w.pid = *pid;
                    }
                }
                match sample(w.pid) {
                    Some((rss, fds)) => w.samples.push((t, rss, fds)),
                    None => sampler_shared.fail(format!("{} (pid {}) is gone", w.label, w.pid)),
                }
            }
            if now >= end {
                return watched;
            }
        }
    });

    // Events.
    let kinds = ["rotation", "tier_change", "suspension", "revocation"];
    let mut tiers: Vec<String> = customers.iter().map(|c| c.tier.clone()).collect();
    let keyed: Vec<usize> = (0..customers.len())
        .filter(|i| customers[*i].api_key.is_some())
        .collect();
    let mut round = 0usize;
    loop {
        let at = start + Duration::from_secs(a.every * (round as u64 + 1));
        // An event must end well before the load does (a rotation can take 30 s or more).
        if at + Duration::from_secs(15) >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let n = round / kinds.len();
        let r = match kinds[round % kinds.len()] {
            "rotation" => ctl.rotate().await,
            "tier_change" => {
                ctl.tier_change((n * 5 + 1) % customers.len(), &mut tiers)
                    .await
            }
            "suspension" => ctl.suspend(keyed[(n * 5 + 2) % keyed.len()]).await,
            _ => ctl.revoke(keyed[n % keyed.len()]).await,
        };
        if let Err(e) = r {
            shared.fail(format!("{}: {e:#}", kinds[round % kinds.len()]));
        }
        round += 1;
    }

    for w in workers {
        w.await?;
    }
    let watched = sampler.await?;
    let elapsed = start.elapsed().as_secs_f64();

    // Resources: flat within 10 % after the warm-up.
    let mut resources = Vec::new();
    for w in &watched {
        let after: Vec<_> = w
            .samples
            .iter()
            .filter(|s| s.0 >= WARM_UP.as_secs_f64())
            .collect();
        let rss: Vec<f64> = after.iter().map(|s| s.1 as f64).collect();
        let fds: Vec<f64> = after.iter().map(|s| s.2 as f64).collect();
        let mut verdicts = serde_json::Map::new();
        for (name, series) in [("rss_kb", &rss), ("fds", &fds)] {
            match flat(series) {
                Some((first, last, ok)) => {
                    if !ok {
                        shared.fail(format!(
                            "{} {name} not flat: first third mean {first:.0}, last third {last:.0}",
                            w.label
                        ));
                    }
                    verdicts.insert(
                        name.to_owned(),
                        json!({"first_third_mean": first, "last_third_mean": last, "flat": ok}),
                    );
                }
                None => {
                    shared.fail(format!(
                        "{} {name}: too few samples after the {} s warm-up to judge",
                        w.label,
                        WARM_UP.as_secs()
                    ));
                }
            }
        }
        let minmax = |f: fn(&(f64, u64, u64)) -> u64| {
            let v: Vec<u64> = w.samples.iter().map(f).collect();
            (
                v.iter().min().copied().unwrap_or(0),
                v.iter().max().copied().unwrap_or(0),
            )
        };
        let (rmin, rmax) = minmax(|s| s.1);
        let (fmin, fmax) = minmax(|s| s.2);
        resources.push(json!({
            "label": w.label,
            "pid": w.pid,
            "rss_kb": {"min": rmin, "max": rmax},
            "fds": {"min": fmin, "max": fmax},
            "verdicts": verdicts,
            "series": w.samples.iter().map(|s| json!([s.0.round(), s.1, s.2])).collect::<Vec<_>>(),
        }));
    }

    let tally = shared.tally.lock().unwrap();
    let total: u64 = tally.outcomes.values().sum();
    let ok = tally.failure_count == 0;
    println!(
        "\n== soak summary ({elapsed:.0} s, {} requests sent, {total} answers and driver checks, {:.0} req/s)",
        shared.sent.load(Ordering::Relaxed),
        total as f64 / elapsed
    );
    println!("responses by outcome:");
    for (k, v) in &tally.outcomes {
        println!("  {k:<45} {v}");
    }
    println!("events:");
    for (k, v) in &tally.events {
        println!("  {k:<45} {v}");
    }
    println!("resources (sampled every {} s; flat = last third's mean at most 10 % above the first third's, after {} s):",
        SAMPLE_EVERY.as_secs(), WARM_UP.as_secs());
    for r in &resources {
        println!(
            "  {:<8} RSS {}..{} kB, fds {}..{}; {}",
            r["label"].as_str().unwrap_or(""),
            r["rss_kb"]["min"],
            r["rss_kb"]["max"],
            r["fds"]["min"],
            r["fds"]["max"],
            r["verdicts"]
        );
        println!("           series [s, rss kB, fds]: {}", r["series"]);
    }
    if ok {
        println!("soak: PASS (0 failures)");
    } else {
        println!("soak: FAIL ({} failures; first ones:)", tally.failure_count);
        for f in &tally.failures {
            println!("  {f}");
        }
    }
    if let Some(path) = &a.json {
        let out = json!({
            "passed": ok,
            "seconds": elapsed,
            "responses": total,
            "rate": total as f64 / elapsed,
            "outcomes": tally.outcomes,
            "events": tally.events,
            "event_log": tally.event_log,
            "failure_count": tally.failure_count,
            "failures": tally.failures,
            "resources": resources,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(ok)
}
