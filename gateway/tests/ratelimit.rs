//! End-to-end tests of per-tenant rate limiting: real gateways on 127.0.0.1:0 in front of a
//! fake region node, local or sharing the Redis at 127.0.0.1:6379 (CI starts one). Every
//! Redis test uses its own key prefix, so tests run in parallel and can be re-run at once.
//!
//! No test sleeps or asserts on durations. Real time does pass while a test sends its
//! requests, and a GCRA bucket refills one request per interval (0.6 s for a starter
//! tenant), so counts are checked against the exact bound `burst + elapsed / interval`: on a
//! normal run that is exactly the quota, on a stalled machine a little more, never a flake.
//! The headers of the refusal itself do not depend on timing and are checked exactly.
//!
//! A tier change cannot be made through the file directory at runtime; its effect on the
//! next request is tested on the limiter (`ratelimit::local` unit tests).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod support;
use support::{fake_node, Idp, AUDIENCE};

const ISSUER: &str = "https://idp.test/";
const KID: &str = "idp-1";
const STARTER: &str = "0190a5c4-0000-7000-8000-0000000001a1";
const GROWTH: &str = "0190a5c4-0000-7000-8000-0000000001a2";
const DEAD_REGION: &str = "0190a5c4-0000-7000-8000-0000000001a3";
const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// The starter tier's interval between two requests once the burst is used: 60 s / 100.
const STARTER_INTERVAL_MS: u128 = 600;

/// A local address with nothing listening on it.
async fn closed_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

/// One running gateway with regions `eu` (the fake node) and `apac` (nothing listening).
struct Gateway {
    base: String,
    admin: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway trusting `idp`, with `rate_limit` as its `[rate_limit]` section.
    async fn start(idp: &Idp, node: &str, rate_limit: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
        std::fs::write(
            dir.path().join("directory.toml"),
            format!(
                r#"
[[tenants]]
id = "{STARTER}"
region = "eu"
tier = "starter"
status = "active"
[[tenants]]
id = "{GROWTH}"
region = "eu"
tier = "growth"
status = "active"
[[tenants]]
id = "{DEAD_REGION}"
region = "apac"
tier = "scale"
status = "active"
"#
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("eu.key"), [1u8; 32]).unwrap();
        std::fs::write(dir.path().join("apac.key"), [2u8; 32]).unwrap();
        let config = format!(
            r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"
leeway = "0s"

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["{node}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}

[[regions]]
id = "apac"
upstreams = ["http://{dead}"]
assertion = {{ kid = "apac-1", key_file = "apac.key" }}

[rate_limit]
{rate_limit}
"#,
            dead = closed_addr().await,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let spawned = residency_gateway::spawn_local(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let base = format!("http://{}", spawned.public);
        let admin_url = format!("http://{}", spawned.admin);
        let (shutdown, task) = (spawned.shutdown, spawned.task);
        Self {
            base,
            admin: admin_url,
            shutdown,
            task,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        // A bound on the wait, not an assertion on speed: a hung gateway fails the test.
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("gateway answered")
            .expect("request reached the gateway");
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    async fn get(&self, token: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::get(format!("{}/v1/me", self.base));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        self.send(req.body(Full::default()).unwrap()).await
    }

    async fn metrics(&self) -> String {
        let req = Request::get(format!("{}/metrics", self.admin))
            .body(Full::default())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("gateway drained")
            .unwrap()
            .unwrap();
    }
}

/// The sum of the samples of counter `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Counters render as integers; the cast only drops a ".0".
        .map(|v| v as u64)
        .sum()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

fn header_num(headers: &HeaderMap, name: &str) -> u64 {
    header(headers, name).parse().unwrap()
}

/// What a run of requests until the first 429 saw.
struct UntilLimited {
    /// Responses before the 429, all 200.
    allowed: Vec<HeaderMap>,
    /// The 429.
    limited: (HeaderMap, Bytes),
    /// Time from before the first request to after the 429.
    elapsed: Duration,
}

impl UntilLimited {
    /// The most a GCRA bucket with `burst` may have allowed in `elapsed`.
    fn bound(&self, burst: usize) -> usize {
        burst + usize::try_from(self.elapsed.as_millis() / STARTER_INTERVAL_MS).unwrap()
    }
}

/// Sends requests as `tenant`, round-robin over `gateways`, until the first 429; at most
/// `cap` requests, so a limiter that never limits fails instead of looping.
async fn until_limited(gateways: &[&Gateway], token: &str, cap: usize) -> UntilLimited {
    let start = Instant::now();
    let mut allowed = Vec::new();
    for i in 0..cap {
        let (status, headers, body) = gateways[i % gateways.len()].get(Some(token)).await;
        match status {
            StatusCode::OK => allowed.push(headers),
            StatusCode::TOO_MANY_REQUESTS => {
                return UntilLimited {
                    allowed,
                    limited: (headers, body),
                    elapsed: start.elapsed(),
                }
            }
            other => panic!("request {i}: unexpected {other}: {body:?}"),
        }
    }
    panic!("no 429 after {cap} requests");
}

/// Checks a starter tenant's run: the quota, then one exact 429.
fn check_starter_run(run: &UntilLimited) {
    let n = run.allowed.len();
    assert!(
        (100..=run.bound(100)).contains(&n),
        "{n} allowed in {:?}",
        run.elapsed
    );
    let first = &run.allowed[0];
    assert_eq!(header_num(first, "ratelimit-limit"), 100);
    assert_eq!(header_num(first, "ratelimit-remaining"), 99);
    // The first request used 0.6 s of the bucket: full again within a second.
    assert_eq!(header_num(first, "ratelimit-reset"), 1);
    for (i, h) in run.allowed.iter().enumerate() {
        assert_eq!(header_num(h, "ratelimit-limit"), 100, "response {i}");
        assert!(header_num(h, "ratelimit-remaining") < 100, "response {i}");
        assert!(header_num(h, "ratelimit-reset") <= 60, "response {i}");
        assert!(h.get("retry-after").is_none(), "response {i}");
    }
    // Time only adds capacity, so the request before a refusal used the last of it.
    assert_eq!(header_num(&run.allowed[n - 1], "ratelimit-remaining"), 0);

    let (headers, body) = &run.limited;
    assert_eq!(header(headers, "content-type"), "application/problem+json");
    assert_eq!(header_num(headers, "ratelimit-limit"), 100);
    assert_eq!(header_num(headers, "ratelimit-remaining"), 0);
    // Refused exactly when the bucket is full: a whole minute until it is empty again...
    assert_eq!(header_num(headers, "ratelimit-reset"), 60);
    // ...and one interval (0.6 s, in whole seconds) until the next request fits.
    assert_eq!(header_num(headers, "retry-after"), 1);
    let problem: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["request_id"], header(headers, "x-request-id"));
    assert!(
        problem["type"].as_str().unwrap().ends_with(":rate_limited"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_starter_tenant_gets_its_quota_then_429_and_others_are_unaffected() {
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let gw = Gateway::start(&idp, &node, "backend = \"local\"").await;
    let metrics_before = gw.metrics().await;

    let run = until_limited(&[&gw], &idp.token(STARTER), 300).await;
    check_starter_run(&run);
    // A limited request never reaches the region node.
    assert_eq!(hits.load(Ordering::SeqCst), run.allowed.len());

    // Another tenant has its own bucket and its own tier's quota.
    let (status, headers, _) = gw.get(Some(&idp.token(GROWTH))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_num(&headers, "ratelimit-limit"), 500);
    assert_eq!(header_num(&headers, "ratelimit-remaining"), 499);

    let after = gw.metrics().await;
    let limited = |t: &str| {
        metric(
            t,
            "residency_gateway_ratelimit_decisions_total",
            &[("decision", "limited"), ("backend", "local")],
        )
    };
    assert!(limited(&after) > limited(&metrics_before));
    // No tenant id in any metric.
    assert!(!after.contains(STARTER) && !after.contains(GROWTH));
    gw.stop().await;
}

#[tokio::test]
async fn headers_ride_on_errors_after_the_phase_but_not_before_it() {
    let idp = Idp::generate(ISSUER, KID);
    let (node, _) = fake_node().await;
    let gw = Gateway::start(&idp, &node, "").await;
    // The home region is down: a 503 from the routing phase still tells the quota.
    let (status, headers, _) = gw.get(Some(&idp.token(DEAD_REGION))).await;
    assert!(status.is_server_error(), "{status}");
    assert_eq!(header_num(&headers, "ratelimit-limit"), 1000);
    assert_eq!(header_num(&headers, "ratelimit-remaining"), 999);
    // Without a credential there is no tenant, so no tenant quota to tell.
    let (status, headers, _) = gw.get(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("ratelimit-limit").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_combined_limit() {
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let prefix = format!("residency:test:{}:", uuid::Uuid::new_v4());
    let section = format!(
        "backend = \"redis\"\nredis_url = \"{REDIS_URL}\"\nredis_timeout = \"1s\"\n\
         redis_key_prefix = \"{prefix}\""
    );
    let a = Gateway::start(&idp, &node, &section).await;
    let b = Gateway::start(&idp, &node, &section).await;
    let before = a.metrics().await;

    // Alternating replicas: each alone would allow 100.
    let run = until_limited(&[&a, &b], &idp.token(STARTER), 400).await;
    check_starter_run(&run);
    assert_eq!(hits.load(Ordering::SeqCst), run.allowed.len());

    // The decisions were made in Redis (the shared recorder counts both gateways), and the
    // tenant's bucket is there under this run's prefix.
    let after = a.metrics().await;
    let redis_decisions = |t: &str| {
        metric(
            t,
            "residency_gateway_ratelimit_decisions_total",
            &[("backend", "redis")],
        )
    };
    let made = redis_decisions(&after) - redis_decisions(&before);
    assert!(made > run.allowed.len() as u64, "{made}");
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}{STARTER}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unreachable_redis_means_local_limiting_and_no_5xx() {
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let section = format!(
        "backend = \"redis\"\nredis_url = \"redis://{}/\"\nredis_timeout = \"200ms\"",
        closed_addr().await
    );
    let gw = Gateway::start(&idp, &node, &section).await;
    let before = gw.metrics().await;

    // `until_limited` fails on any status but 200 and 429.
    let run = until_limited(&[&gw], &idp.token(STARTER), 300).await;
    check_starter_run(&run);
    assert_eq!(hits.load(Ordering::SeqCst), run.allowed.len());

    let after = gw.metrics().await;
    let fallbacks = |t: &str| metric(t, "residency_gateway_ratelimit_fallback_total", &[]);
    let counted = fallbacks(&after) - fallbacks(&before);
    assert!(counted > run.allowed.len() as u64, "{counted} fallbacks");
    gw.stop().await;
}

#[tokio::test]
async fn a_redis_that_never_answers_times_out_into_local_limiting() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let section = format!(
        "backend = \"redis\"\nredis_url = \"redis://{}/\"\nredis_timeout = \"100ms\"",
        silent.local_addr().unwrap()
    );
    let gw = Gateway::start(&idp, &node, &section).await;
    let before = gw.metrics().await;
    let timeouts = |t: &str| {
        metric(
            t,
            "residency_gateway_ratelimit_fallback_total",
            &[("reason", "timeout")],
        )
    };

    let (status, headers, _) = gw.get(Some(&idp.token(GROWTH))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_num(&headers, "ratelimit-limit"), 500);
    assert_eq!(header_num(&headers, "ratelimit-remaining"), 499);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(timeouts(&gw.metrics().await) > timeouts(&before));
    gw.stop().await;
    drop(silent);
}
