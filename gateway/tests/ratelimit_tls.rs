//! Rate limiting shared through a Redis reached over TLS (`rediss://`): real gateways on
//! 127.0.0.1:0 in front of a fake region node, and per test a real `redis-server` serving
//! TLS only (`--port 0 --tls-port <free port>`, a password required), with certificates
//! from a test CA generated here. Nothing secret is committed; the server is killed when
//! its test ends.
//!
//! The metrics recorder is shared by every gateway of this process, so the tests take
//! [`SERIAL`] and counter deltas are this test's own; each test also uses its own key
//! prefix, so what reached Redis is checked in Redis itself where the test can connect.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

mod support;
use support::{fake_node, Idp, AUDIENCE};

const ISSUER: &str = "https://idp.redis-tls.test/";
const KID: &str = "idp-redis-tls-1";
const STARTER: &str = "0190a5c4-0000-7000-8000-0000000002a1";
const GROWTH: &str = "0190a5c4-0000-7000-8000-0000000002a2";
const REDIS_PASSWORD: &str = "redis-tls-test-pw";
/// The starter tier's interval between two requests once the burst is used: 60 s / 100.
const STARTER_INTERVAL_MS: u128 = 600;

/// Held by every test for its whole run: one test at a time reads the shared counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test CA that issues server and client certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// `(certificate pem, key pem)` for `san` with `usage`.
    fn leaf(&self, name: &str, san: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![san.to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The TLS files of one test: the Redis CA, a server certificate for 127.0.0.1 and one for
/// another name, a client certificate from the same CA, and another CA that signed nothing
/// here.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("redis test ca");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let (right, right_key) = ca.leaf("redis", "127.0.0.1", server.clone());
        let (wrong, wrong_key) = ca.leaf("redis", "redis.elsewhere.test", server);
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let (client, client_key) = ca.leaf("gateway", "127.0.0.1", client);
        for (name, pem) in [
            ("ca.pem", ca.pem.as_str()),
            ("server.pem", &right),
            ("server.key", &right_key),
            ("elsewhere.pem", &wrong),
            ("elsewhere.key", &wrong_key),
            ("client.pem", &client),
            ("client.key", &client_key),
            ("other-ca.pem", &Ca::new("another ca").pem),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A `redis-server` serving TLS only on a free loopback port; killed on drop.
struct TlsRedis {
    url: String,
    _child: tokio::process::Child,
    _data: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts one with `pki`'s certificate for 127.0.0.1; `auth_clients` is its
    /// `tls-auth-clients` (`no`, `optional` or `yes`: client certificates from the CA).
    async fn start(pki: &Pki, auth_clients: &str) -> Self {
        Self::start_as(pki, "server", auth_clients).await
    }

    /// Starts one with the certificate `<cert>.pem` / `<cert>.key` of `pki`.
    async fn start_as(pki: &Pki, cert: &str, auth_clients: &str) -> Self {
        // A freed port can be taken by someone else before Redis binds it: try another.
        for _ in 0..5 {
            if let Some(redis) = Self::try_start(pki, cert, auth_clients).await {
                return redis;
            }
        }
        panic!("redis-server did not start with tls");
    }

    async fn try_start(pki: &Pki, cert: &str, auth_clients: &str) -> Option<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let data = tempfile::tempdir().unwrap();
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(path(pki.path(&format!("{cert}.pem"))))
            .arg("--tls-key-file")
            .arg(path(pki.path(&format!("{cert}.key"))))
            .arg("--tls-ca-cert-file")
            .arg(path(pki.path("ca.pem")))
            .args(["--tls-auth-clients", auth_clients])
            .args(["--requirepass", REDIS_PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        // Ready once it says so on its log; it exits (end of the log) if it cannot bind.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("redis-server started within 20 s");
        if !ready {
            return None;
        }
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Self {
            url: format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/"),
            _child: child,
            _data: data,
        })
    }

    /// Whether `key` exists, asked over TLS with the test's CA and client certificate.
    async fn exists(&self, pki: &Pki, key: &str) -> bool {
        let read = |name| std::fs::read(pki.path(name)).unwrap();
        let certs = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read("client.pem"),
                client_key: read("client.key"),
            }),
            root_cert: Some(read("ca.pem")),
        };
        let client = redis::Client::build_with_tls(self.url.as_str(), certs).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// The `[rate_limit]` section for `redis`, with a fresh key prefix (returned too) and the
/// TLS keys in `tls` (TOML lines).
fn section(redis: &TlsRedis, tls: &str) -> (String, String) {
    let prefix = format!("residency:tls-test:{}:", uuid::Uuid::new_v4());
    let text = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"1s\"\n\
         redis_key_prefix = \"{prefix}\"\n{tls}",
        redis.url
    );
    (text, prefix)
}

/// TOML lines naming files of `pki`.
fn files(pki: &Pki, keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(key, name)| format!("{key} = \"{}\"\n", pki.path(name).display()))
        .collect()
}

/// One running gateway with region `eu` (the fake node).
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
        let config = write_config(dir.path(), idp, node, rate_limit);
        let spawned = residency_gateway::spawn_local(&config)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            base: format!("http://{}", spawned.public),
            admin: format!("http://{}", spawned.admin),
            shutdown: spawned.shutdown,
            task: spawned.task,
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
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    async fn get(&self, token: &str) -> (StatusCode, HeaderMap, Bytes) {
        let req = Request::get(format!("{}/v1/me", self.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        self.send(req).await
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

fn write_config(dir: &Path, idp: &Idp, node: &str, rate_limit: &str) -> PathBuf {
    std::fs::write(dir.join("jwks.json"), &idp.jwks).unwrap();
    let directory = format!(
        "[[tenants]]\nid = \"{STARTER}\"\nregion = \"eu\"\ntier = \"starter\"\n\
         status = \"active\"\n[[tenants]]\nid = \"{GROWTH}\"\nregion = \"eu\"\n\
         tier = \"growth\"\nstatus = \"active\"\n"
    );
    std::fs::write(dir.join("directory.toml"), directory).unwrap();
    std::fs::write(dir.join("eu.key"), [1u8; 32]).unwrap();
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

[rate_limit]
{rate_limit}
"#
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    path
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

fn redis_decisions(metrics: &str) -> u64 {
    metric(
        metrics,
        "residency_gateway_ratelimit_decisions_total",
        &[("backend", "redis")],
    )
}

fn tls_fallbacks(metrics: &str) -> u64 {
    metric(
        metrics,
        "residency_gateway_ratelimit_fallback_total",
        &[("reason", "tls")],
    )
}

fn remaining(headers: &HeaderMap) -> u64 {
    headers["ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_a_tls_redis() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, "optional").await;
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let (section, prefix) = section(&redis, &files(&pki, &[("redis_ca_file", "ca.pem")]));
    let a = Gateway::start(&idp, &node, &section).await;
    let b = Gateway::start(&idp, &node, &section).await;
    let before = a.metrics().await;

    // Alternating replicas: each alone would allow 100; together they allow the quota once.
    let token = idp.token(STARTER);
    let start = Instant::now();
    let mut allowed = Vec::new();
    let limited = loop {
        assert!(allowed.len() < 400, "no 429 after 400 requests");
        let gw = if allowed.len() % 2 == 0 { &a } else { &b };
        let (status, headers, body) = gw.get(&token).await;
        match status {
            StatusCode::OK => allowed.push(headers),
            StatusCode::TOO_MANY_REQUESTS => break headers,
            other => panic!("unexpected {other}: {body:?}"),
        }
    };
    // Real time refills one request per interval while the run lasts.
    let refills = start.elapsed().as_millis() / STARTER_INTERVAL_MS;
    let bound = 100 + usize::try_from(refills).unwrap();
    assert!((100..=bound).contains(&allowed.len()), "{}", allowed.len());
    assert_eq!(hits.load(Ordering::SeqCst), allowed.len());
    // One bucket: the first answer of `b` continues where `a`'s left off.
    assert_eq!(remaining(&allowed[0]), 99);
    assert!(u128::from(remaining(&allowed[1])) <= 98 + refills);
    assert_eq!(remaining(&limited), 0);
    assert_eq!(limited["retry-after"], "1");

    // The decisions were made in the TLS Redis, where the tenant's bucket is.
    let after = a.metrics().await;
    let made = redis_decisions(&after) - redis_decisions(&before);
    assert!(made > allowed.len() as u64, "{made}");
    assert_eq!(tls_fallbacks(&after), tls_fallbacks(&before));
    assert!(redis.exists(&pki, &format!("{prefix}{STARTER}")).await);
    a.stop().await;
    b.stop().await;
}

/// Starts a gateway with `tls` (TOML lines) against `redis`, whose handshake must fail, and
/// checks one request: served, limited locally, one fallback counted as `tls`, no decision
/// from Redis. Returns the key prefix the gateway would have used.
async fn served_locally_after_a_tls_failure(redis: &TlsRedis, tls: &str) -> String {
    let idp = Idp::generate(ISSUER, KID);
    let (node, hits) = fake_node().await;
    let (section, prefix) = section(redis, tls);
    let gw = Gateway::start(&idp, &node, &section).await;
    let before = gw.metrics().await;
    // Served, limited locally: the growth quota with one request used.
    let (status, headers, _) = gw.get(&idp.token(GROWTH)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["ratelimit-limit"], "500");
    assert_eq!(remaining(&headers), 499);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The metric says why. The failure is counted as `tls` once a handshake has failed. On a loaded machine the
    // first attempt can run out of `redis_timeout` first (counted as `timeout`, Redis then
    // skipped for a second): keep sending, each request served locally, until the TLS
    // failure is counted, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = gw.metrics().await;
    while tls_fallbacks(&after) == tls_fallbacks(&before) {
        assert!(
            Instant::now() < deadline,
            "no fallback counted as tls: {}",
            after
                .lines()
                .filter(|l| l.contains("ratelimit"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _, _) = gw.get(&idp.token(GROWTH)).await;
        assert_eq!(status, StatusCode::OK);
        after = gw.metrics().await;
    }
    assert_eq!(redis_decisions(&after), redis_decisions(&before));
    gw.stop().await;
    prefix
}

#[tokio::test]
async fn a_redis_certificate_from_another_ca_means_local_limiting_counted_as_tls() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, "optional").await;
    let tls = files(&pki, &[("redis_ca_file", "other-ca.pem")]);
    let prefix = served_locally_after_a_tls_failure(&redis, &tls).await;
    assert!(!redis.exists(&pki, &format!("{prefix}{GROWTH}")).await);
}

#[tokio::test]
async fn without_a_ca_file_only_the_platform_roots_are_trusted() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, "optional").await;
    // The test CA is not among the platform's roots.
    let prefix = served_locally_after_a_tls_failure(&redis, "").await;
    assert!(!redis.exists(&pki, &format!("{prefix}{GROWTH}")).await);
}

#[tokio::test]
async fn a_redis_certificate_for_another_name_means_local_limiting_counted_as_tls() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    // Signed by the trusted CA, but for another host than the url's 127.0.0.1 (so the
    // test's own client cannot look into this Redis either).
    let redis = TlsRedis::start_as(&pki, "elsewhere", "optional").await;
    let tls = files(&pki, &[("redis_ca_file", "ca.pem")]);
    served_locally_after_a_tls_failure(&redis, &tls).await;
}

#[tokio::test]
async fn a_redis_requiring_client_certificates_accepts_the_configured_one_only() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, "yes").await;
    let idp = Idp::generate(ISSUER, KID);
    let (node, _) = fake_node().await;

    // With the client certificate: shared through Redis.
    let with_cert = files(
        &pki,
        &[
            ("redis_ca_file", "ca.pem"),
            ("redis_client_cert_file", "client.pem"),
            ("redis_client_key_file", "client.key"),
        ],
    );
    let (section_ok, prefix_ok) = section(&redis, &with_cert);
    let gw = Gateway::start(&idp, &node, &section_ok).await;
    let before = gw.metrics().await;
    let (status, headers, _) = gw.get(&idp.token(GROWTH)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(remaining(&headers), 499);
    let after = gw.metrics().await;
    assert_eq!(redis_decisions(&after) - redis_decisions(&before), 1);
    assert_eq!(tls_fallbacks(&after), tls_fallbacks(&before));
    assert!(redis.exists(&pki, &format!("{prefix_ok}{GROWTH}")).await);
    gw.stop().await;

    // Without it the server refuses the connection.
    let tls = files(&pki, &[("redis_ca_file", "ca.pem")]);
    let prefix_no = served_locally_after_a_tls_failure(&redis, &tls).await;
    assert!(!redis.exists(&pki, &format!("{prefix_no}{GROWTH}")).await);
}

#[tokio::test]
async fn an_unusable_redis_ca_file_stops_the_start_naming_the_url_without_its_password() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let idp = Idp::generate(ISSUER, KID);
    let (node, _) = fake_node().await;
    // Nothing listens: the start fails on the file, before any connection.
    std::fs::write(pki.path("empty.pem"), "not a certificate\n").unwrap();
    let rate_limit = format!(
        "backend = \"redis\"\nredis_url = \"rediss://:{REDIS_PASSWORD}@127.0.0.1:1/\"\n{}",
        files(&pki, &[("redis_ca_file", "empty.pem")])
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &idp, &node, &rate_limit);
    let spawned = residency_gateway::spawn_local(&config).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), spawned.task)
        .await
        .expect("the start failed at once")
        .unwrap()
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("rediss://:***@127.0.0.1:1/"), "{msg}");
    assert!(msg.contains("rate_limit.redis_ca_file"), "{msg}");
    assert!(msg.contains("empty.pem"), "{msg}");
    assert!(!msg.contains(REDIS_PASSWORD), "{msg}");
}

#[tokio::test]
async fn a_rotated_redis_ca_file_is_used_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, "optional").await;
    // The CA file starts as a CA that did not sign the server's certificate.
    let trust = pki.path("trust.pem");
    std::fs::copy(pki.path("other-ca.pem"), &trust).unwrap();
    let tls = files(&pki, &[("redis_ca_file", "trust.pem")]);
    let idp = Idp::generate(ISSUER, KID);
    let (node, _hits) = fake_node().await;
    let (section, prefix) = section(&redis, &tls);
    let gw = Gateway::start(&idp, &node, &section).await;
    let token = idp.token(GROWTH);

    let deadline = Instant::now() + Duration::from_secs(30);
    let before = gw.metrics().await;
    loop {
        let (status, _, _) = gw.get(&token).await;
        assert_eq!(status, StatusCode::OK);
        if tls_fallbacks(&gw.metrics().await) > tls_fallbacks(&before) {
            break;
        }
        assert!(Instant::now() < deadline, "no tls fallback counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!redis.exists(&pki, &format!("{prefix}{GROWTH}")).await);

    // Rotated to the CA that signed the server: decisions come from Redis again.
    let tmp = pki.path("trust.pem.new");
    std::fs::copy(pki.path("ca.pem"), &tmp).unwrap();
    std::fs::rename(&tmp, &trust).unwrap();
    let rotated = gw.metrics().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = gw.get(&token).await;
        assert_eq!(status, StatusCode::OK);
        if redis_decisions(&gw.metrics().await) > redis_decisions(&rotated) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no decision from redis 30 s after the ca file was rotated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(redis.exists(&pki, &format!("{prefix}{GROWTH}")).await);
    gw.stop().await;
}
