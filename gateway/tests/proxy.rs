//! End-to-end tests of the gateway's request path: a real gateway on 127.0.0.1:0 in front of
//! fake region nodes (one hyper server per region, port 0) that record what reaches them.
//!
//! Keys are generated per test run; nothing secret is committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use residency_core::assertion::{AssertionKey, Verifier};
use residency_core::RegionId;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "residency-api";
const KID: &str = "idp-1";
const EU_TENANT: &str = "0190a5c4-0000-7000-8000-0000000000e1";
const US_TENANT: &str = "0190a5c4-0000-7000-8000-0000000000a1";
const APAC_TENANT: &str = "0190a5c4-0000-7000-8000-0000000000c1";
const SUSPENDED_TENANT: &str = "0190a5c4-0000-7000-8000-0000000000e2";
const UNKNOWN_TENANT: &str = "0190a5c4-0000-7000-8000-0000000000ff";
const MAX_BODY: usize = 4096;

/// A generated ES256 key pair as an identity provider would hold it.
struct Idp {
    encoding: EncodingKey,
    jwks: String,
}

impl Idp {
    fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> u64 {
    residency_core::assertion::now_secs()
}

fn claims(tenant: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant_id": tenant,
        "role": "developer", "iat": now(), "exp": now() + 600,
    })
}

/// What a fake region node saw, and a gate for its `/slow` requests: each one reports its
/// arrival on `arrived` and waits for a permit on `release` before answering.
#[derive(Clone)]
struct Seen(
    Arc<Mutex<Vec<(String, HeaderMap)>>>,
    mpsc::UnboundedSender<()>,
    Arc<Semaphore>,
);

impl Seen {
    fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Starts a fake region node for `region` on port 0; it answers 200 with its region id.
async fn fake_node(region: &'static str) -> (String, Seen, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let seen = Seen(Arc::default(), arrived, Arc::new(Semaphore::new(0)));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let uri = req.uri().to_string();
                        let headers = req.headers().clone();
                        // The gateway's active health checks are not proxied requests.
                        if uri == "/readyz" {
                            return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
                        }
                        if uri.starts_with("/v1/slow") {
                            let _ = record.1.send(());
                            record.2.acquire().await.unwrap().forget();
                        }
                        // Drain the body so streaming uploads complete. Only a request whose
                        // body arrived complete is recorded: a cut-off upload is not a request.
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        if body.is_ok() {
                            record.0.lock().unwrap().push((uri, headers));
                        }
                        let text = format!("{region} {}", body.unwrap_or(0));
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            text,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen, arrivals)
}

/// A local address with nothing listening on it.
async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Variations of the harness's gateway config.
#[derive(Default)]
struct Options {
    /// Extra lines for `[limits]`.
    limits: &'static str,
    /// Use this JWKS URL instead of the generated file.
    jwks_url: Option<String>,
    /// Use this identity provider instead of a fresh one.
    idp: Option<Idp>,
    /// Extra lines for `[[issuers]]`.
    issuer: &'static str,
}

struct Harness {
    base: String,
    admin: String,
    idp: Idp,
    keys: HashMap<&'static str, AssertionKey>,
    nodes: HashMap<&'static str, Seen>,
    arrivals: HashMap<&'static str, mpsc::UnboundedReceiver<()>>,
    shutdown: CancellationToken,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Gateway with regions eu and us (live fake nodes) and apac (nothing listening).
    async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    async fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let idp = opts.idp.unwrap_or_else(|| Idp::generate(KID));
        std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
        let api_key = api_key_for_eu();
        std::fs::write(
            dir.path().join("directory.toml"),
            format!(
                r#"
[[tenants]]
id = "{EU_TENANT}"
region = "eu"
tier = "scale"
status = "active"
[[tenants]]
id = "{US_TENANT}"
region = "us"
tier = "starter"
status = "active"
[[tenants]]
id = "{APAC_TENANT}"
region = "apac"
tier = "growth"
status = "active"
[[tenants]]
id = "{SUSPENDED_TENANT}"
region = "eu"
tier = "growth"
status = "suspended"
[[api_keys]]
id = "key-eu-1"
tenant = "{EU_TENANT}"
prefix = "eukey001"
hash = "{}"
role = "operator"
"#,
                residency_gateway::auth::api_key::hash_hex(&api_key)
            ),
        )
        .unwrap();
        let mut keys = HashMap::new();
        let mut nodes = HashMap::new();
        let mut arrivals = HashMap::new();
        let mut regions = String::new();
        for (i, region) in ["eu", "us", "apac"].into_iter().enumerate() {
            let secret = vec![u8::try_from(i).unwrap() + 1; 32];
            std::fs::write(dir.path().join(format!("{region}.key")), &secret).unwrap();
            keys.insert(
                region,
                AssertionKey::new(&format!("{region}-1"), "HS256", secret).unwrap(),
            );
            let url = if region == "apac" {
                dead_url().await
            } else {
                let (url, seen, arrived) = fake_node(region).await;
                nodes.insert(region, seen);
                arrivals.insert(region, arrived);
                url
            };
            regions.push_str(&format!(
                "[[regions]]\nid = \"{region}\"\nupstreams = [\"{url}\"]\n\
                 assertion = {{ kid = \"{region}-1\", key_file = \"{region}.key\" }}\n"
            ));
        }
        let config = format!(
            r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
{jwks_source}
leeway = "0s"
{extra_issuer}

[directory]
source = "file"
path = "directory.toml"

[limits]
max_body_bytes = {MAX_BODY}
{extra_limits}

{regions}
"#,
            jwks_source = opts.jwks_url.map_or_else(
                || "jwks_file = \"jwks.json\"".to_owned(),
                |u| format!("jwks_url = \"{u}\"")
            ),
            extra_limits = opts.limits,
            extra_issuer = opts.issuer,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let spawned = residency_gateway::spawn_local(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let base = format!("http://{}", spawned.public);
        let admin_url = format!("http://{}", spawned.admin);
        let (shutdown, gateway) = (spawned.shutdown, spawned.task);
        Self {
            base,
            admin: admin_url,
            idp,
            keys,
            nodes,
            arrivals,
            shutdown,
            gateway,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("gateway answered in time")
            .expect("request reached the gateway");
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::get(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::default()).unwrap()).await
    }

    async fn get_as(&self, tenant: &str, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        let token = self.idp.sign(Some(KID), &claims(tenant));
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    fn total_upstream_hits(&self) -> usize {
        self.nodes.values().map(Seen::count).sum()
    }

    fn verify_assertion(
        &self,
        region: &str,
        headers: &HeaderMap,
    ) -> residency_core::assertion::AssertionClaims {
        let token = headers["x-residency-assertion"].to_str().unwrap();
        Verifier::new(RegionId::new(region).unwrap(), &[self.keys[region].clone()])
            .verify(token)
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.gateway)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
    }
}

fn api_key_for_eu() -> String {
    format!("rk_eukey001_{}", "k".repeat(40))
}

fn problem(body: &Bytes) -> Value {
    serde_json::from_slice(body).expect("problem+json body")
}

#[tokio::test]
async fn each_tenant_reaches_only_its_home_region() {
    let h = Harness::start().await;
    for (tenant, region) in [(EU_TENANT, "eu"), (US_TENANT, "us")] {
        let before: HashMap<_, _> = h.nodes.iter().map(|(r, s)| (*r, s.count())).collect();
        let (status, headers, body) = h.get_as(tenant, "/v1/me?x=1").await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        assert_eq!(headers["x-residency-region"], region);
        assert_eq!(body, format!("{region} 0"));
        for (r, seen) in &h.nodes {
            let expected = before[r] + usize::from(*r == region);
            assert_eq!(
                seen.count(),
                expected,
                "region {r} hit count for tenant of {region}"
            );
        }
        let (uri, upstream_headers) = h.nodes[region].requests().pop().unwrap();
        assert_eq!(uri, "/v1/me?x=1");
        let claims = h.verify_assertion(region, &upstream_headers);
        assert_eq!(claims.tid.to_string(), tenant);
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.role, "developer");
        // The request id travels to the node and back.
        assert_eq!(upstream_headers["x-request-id"], headers["x-request-id"]);
    }
    // A second request with the same token is served from the token cache and still correct.
    let (status, headers, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-residency-region"], "eu");
    h.stop().await;
}

#[tokio::test]
async fn spoofed_tenant_and_internal_headers_change_nothing() {
    let h = Harness::start().await;
    let token = h.idp.sign(Some(KID), &claims(EU_TENANT));
    let us_key = &h.keys["us"];
    let (forged, _) =
        residency_core::assertion::Signer::new(RegionId::new("us").unwrap(), us_key, 60)
            .mint(US_TENANT.parse().unwrap(), "attacker", "owner", now())
            .unwrap();
    let (status, headers, _) = h
        .get(
            &format!("/v1/me?tenant_id={US_TENANT}"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-tenant-id", US_TENANT),
                ("x-residency-assertion", &forged),
                ("x-residency-region", "us"),
                ("forwarded", "for=1.2.3.4;host=evil"),
                ("x-forwarded-for", "1.2.3.4"),
                ("connection", "x-secret"),
                ("x-secret", "hop"),
                ("x-request-id", "client-req-42"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-residency-region"], "eu");
    assert_eq!(headers["x-request-id"], "client-req-42");
    assert_eq!(h.nodes["us"].count(), 0, "the spoofed region got nothing");
    let (_, seen) = h.nodes["eu"].requests().pop().unwrap();
    for gone in [
        "x-tenant-id",
        "x-residency-region",
        "forwarded",
        "x-forwarded-for",
        "x-secret",
    ] {
        assert!(seen.get(gone).is_none(), "{gone} reached the node");
    }
    assert_eq!(seen.get_all("x-residency-assertion").iter().count(), 1);
    let claims = h.verify_assertion("eu", &seen);
    assert_eq!(claims.tid.to_string(), EU_TENANT);
    assert_eq!(claims.sub, "user-1");
    h.stop().await;
}

#[tokio::test]
async fn a_client_trace_context_never_reaches_the_node() {
    // Tracing is off in this process (no OTLP exporter installed): the client's W3C trace
    // headers are removed, not forwarded; with tracing on the gateway inserts its own
    // (tests/tests/tracing_otlp.rs).
    let h = Harness::start().await;
    let token = h.idp.sign(Some(KID), &claims(EU_TENANT));
    let (status, _, _) = h
        .get(
            "/v1/me",
            &[
                ("authorization", &format!("Bearer {token}")),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "vendor=client-chosen"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, seen) = h.nodes["eu"].requests().pop().unwrap();
    for gone in ["traceparent", "tracestate"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the node");
    }
    h.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_before_any_upstream_call() {
    let h = Harness::start().await;
    let good = claims(EU_TENANT);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let other_idp = Idp::generate(KID);
    let alg_none = format!(
        "{}.{}.",
        B64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{KID}"}}"#)),
        B64.encode(good.to_string())
    );
    // HS/RS confusion: HMAC "signed" with the issuer's public key material.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(KID.to_owned());
    let confused =
        jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(h.idp.jwks.as_bytes())).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("hs/es confusion", confused),
        ("missing kid", h.idp.sign(None, &good)),
        ("unknown kid", h.idp.sign(Some("other-kid"), &good)),
        ("forged signature", other_idp.sign(Some(KID), &good)),
        (
            "expired",
            h.idp.sign(Some(KID), &with("exp", json!(now() - 60))),
        ),
        (
            "not yet valid",
            h.idp.sign(Some(KID), &with("nbf", json!(now() + 600))),
        ),
        (
            "wrong iss",
            h.idp
                .sign(Some(KID), &with("iss", json!("https://evil.test/"))),
        ),
        (
            "wrong aud",
            h.idp.sign(Some(KID), &with("aud", json!("other-api"))),
        ),
        (
            "string exp",
            h.idp
                .sign(Some(KID), &with("exp", json!((now() + 600).to_string()))),
        ),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            h.idp.sign(Some(KID), &c)
        }),
        (
            "non-uuid tenant",
            h.idp.sign(Some(KID), &with("tenant_id", json!("acme"))),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (name, token) in &cases {
        let (status, headers, body) = h
            .get("/v1/me", &[("authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{name}"
        );
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{name}"
        );
        let p = problem(&body);
        assert_eq!(p["status"], 401, "{name}");
        assert_eq!(
            p["request_id"],
            headers["x-request-id"].to_str().unwrap(),
            "{name}"
        );
    }
    let (status, headers, _) = h.get("/v1/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"residency\"");
    assert_eq!(h.total_upstream_hits(), 0, "a refused token reached a node");
    h.stop().await;
}

#[tokio::test]
async fn unknown_tenant_is_404_and_suspended_is_403() {
    let h = Harness::start().await;
    let (status, headers, body) = h.get_as(UNKNOWN_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.get("x-residency-region").is_none());
    assert_eq!(problem(&body)["detail"], "no such customer");
    let (status, _, _) = h.get_as(SUSPENDED_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.total_upstream_hits(), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_region_without_upstream_fails_only_its_own_tenants() {
    let h = Harness::start().await;
    let (first, headers, body) = h.get_as(APAC_TENANT, "/v1/me").await;
    assert_eq!(first, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-residency-region"], "apac");
    assert!(
        !String::from_utf8_lossy(&body).contains("127.0.0.1"),
        "address leaked"
    );
    // The refusing upstream is ejected: the next request is 503 with Retry-After, not a retry
    // somewhere else.
    let (second, headers, _) = h.get_as(APAC_TENANT, "/v1/me").await;
    assert_eq!(second, StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry));
    assert_eq!(
        h.total_upstream_hits(),
        0,
        "apac traffic went to another region"
    );
    // Other regions are unaffected.
    let (status, headers, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-residency-region"], "eu");
    h.stop().await;
}

#[tokio::test]
async fn api_keys_route_like_tokens_and_wrong_keys_are_refused() {
    let h = Harness::start().await;
    let key = api_key_for_eu();
    let (status, headers, _) = h.get("/v1/me", &[("x-api-key", &key)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-residency-region"], "eu");
    let (status, _, _) = h
        .get("/v1/me", &[("authorization", &format!("ApiKey {key}"))])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, seen) = h.nodes["eu"].requests().pop().unwrap();
    let claims = h.verify_assertion("eu", &seen);
    assert_eq!(claims.sub, "apikey:key-eu-1");
    assert_eq!(claims.role, "operator");
    let wrong = format!("rk_eukey001_{}", "x".repeat(40));
    let (status, _, _) = h.get("/v1/me", &[("x-api-key", &wrong)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.nodes["eu"].count(), 2);
    h.stop().await;
}

#[tokio::test]
async fn bodies_stream_through_and_oversized_ones_get_413() {
    let h = Harness::start().await;
    let token = h.idp.sign(Some(KID), &claims(EU_TENANT));
    let post = |len: usize| {
        Request::post(format!("{}/v1/workflows", h.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(vec![b'a'; len])))
            .unwrap()
    };
    let (status, _, body) = h.send(post(MAX_BODY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("eu {MAX_BODY}"));
    let (status, _, body) = h.send(post(MAX_BODY + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem(&body)["status"], 413);
    assert_eq!(
        h.nodes["eu"].count(),
        1,
        "the oversized body never reached the node"
    );
    h.stop().await;
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw_status_line(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn oversized_header_block_gets_431() {
    let h = Harness::start().await;
    let big = "a".repeat(64 * 1024);
    let req = format!("GET /v1/me HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let line = raw_status_line(&h.base, req.as_bytes()).await;
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    assert_eq!(h.total_upstream_hits(), 0);
    h.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let h = Harness::start().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let token = h.idp.sign(Some(KID), &claims(US_TENANT));
    let req = Request::get(format!("{}/v1/me", h.base))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-residency-region"], "us");
    h.stop().await;
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let h = Harness::start().await;
    let (status, _, _) = h.get("/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::get(format!("{}/metrics", h.admin))
        .body(Full::default())
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("residency_gateway_requests_total{region=\"eu\",status_class=\"2xx\"}"),
        "{text}"
    );
    assert!(!text.contains(EU_TENANT), "tenant id in a metric label");
    h.stop().await;
}

/// A chunked body has no declared length; it is cut off while streaming.
#[tokio::test]
async fn chunked_body_over_limit_gets_413() {
    let h = Harness::start().await;
    let token = h.idp.sign(Some(KID), &claims(EU_TENANT));
    let chunk = "a".repeat(MAX_BODY + 100);
    let req = format!(
        "POST /v1/workflows HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let line = raw_status_line(&h.base, req.as_bytes()).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert_eq!(
        h.total_upstream_hits(),
        0,
        "the node saw the cut-off body as a complete request"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_headers_slowly_is_cut_off() {
    let h = Harness::start_with(Options {
        limits: "header_read_timeout = \"1s\"",
        ..Options::default()
    })
    .await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/me HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The header block never ends; the gateway must close the connection (possibly after a
    // 408) instead of waiting forever.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header-read timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_gets_504() {
    let h = Harness::start_with(Options {
        limits: "upstream_timeout = \"1s\"",
        ..Options::default()
    })
    .await;
    let (status, headers, body) = h.get_as(US_TENANT, "/v1/slow").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["x-residency-region"], "us");
    assert_eq!(problem(&body)["status"], 504);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut h = Harness::start().await;
    let token = h.idp.sign(Some(KID), &claims(US_TENANT));
    let req = Request::get(format!("{}/v1/slow", h.base))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let in_flight = tokio::spawn(h.client.request(req));
    // Wait until the node holds the request, then start the shutdown.
    h.arrivals.get_mut("us").unwrap().recv().await.unwrap();
    h.shutdown.cancel();
    h.nodes["us"].2.add_permits(1);
    let resp = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request finished")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "us 0");
    h.stop().await;
}

/// A JWKS endpoint that counts fetches and answers 500 while it has no document.
async fn jwks_server() -> (String, Arc<Mutex<Option<String>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let doc: Arc<Mutex<Option<String>>> = Arc::default();
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, f) = (Arc::clone(&doc), Arc::clone(&fetches));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (d, f) = (Arc::clone(&d), Arc::clone(&f));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    f.fetch_add(1, Ordering::SeqCst);
                    let current = d.lock().unwrap().clone();
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::from(
                            current.clone().unwrap_or_default(),
                        )));
                        if current.is_none() {
                            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, doc, fetches)
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_cooldown() {
    let (url, doc, fetches) = jwks_server().await;
    let idp = Idp::generate(KID);
    *doc.lock().unwrap() = Some(idp.jwks.clone());
    let h = Harness::start_with(Options {
        jwks_url: Some(url),
        idp: Some(idp),
        ..Options::default()
    })
    .await;
    let (status, _, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one fetch at start");
    let mut flood = Vec::new();
    for i in 0..50 {
        let token = h.idp.sign(Some(&format!("random-{i}")), &claims(EU_TENANT));
        let req = Request::get(format!("{}/v1/me", h.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        flood.push(h.client.request(req));
    }
    for resp in futures_util::future::join_all(flood).await {
        assert_eq!(resp.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    // The start-up fetch opened the cool-down, so the flood caused no fetch at all.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // The issuer going down later does not hurt tokens signed with the keys it had.
    *doc.lock().unwrap() = None;
    let (status, _, _) = h.get_as(US_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.total_upstream_hits(), 2);
    h.stop().await;
}

#[tokio::test]
async fn an_issuer_down_at_start_is_fetched_again_on_the_first_token() {
    let (url, doc, fetches) = jwks_server().await;
    let idp = Idp::generate(KID);
    let jwks = idp.jwks.clone();
    let h = Harness::start_with(Options {
        jwks_url: Some(url),
        idp: Some(idp),
        ..Options::default()
    })
    .await;
    // The gateway starts although the issuer is down; tokens fail meanwhile.
    let (status, _, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let after_first = fetches.load(Ordering::SeqCst);
    assert_eq!(
        after_first, 2,
        "start-up fetch and one retry on the first token"
    );
    *doc.lock().unwrap() = Some(jwks);
    // Within the cool-down the recovered issuer is not asked again.
    let (status, _, _) = h.get_as(EU_TENANT, "/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(fetches.load(Ordering::SeqCst), after_first);
    h.stop().await;
}

#[tokio::test]
async fn a_cached_token_stops_working_once_its_key_leaves_the_jwks() {
    let (url, doc, fetches) = jwks_server().await;
    let idp = Idp::generate(KID);
    *doc.lock().unwrap() = Some(idp.jwks.clone());
    let h = Harness::start_with(Options {
        jwks_url: Some(url),
        idp: Some(idp),
        // The shortest refresh the config allows.
        issuer: "jwks_refresh = \"30s\"",
        ..Options::default()
    })
    .await;
    let bearer = format!("Bearer {}", h.idp.sign(Some(KID), &claims(EU_TENANT)));
    let auth = [("authorization", bearer.as_str())];
    // Verified once, then answered from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(h.get("/v1/me", &auth).await.0, StatusCode::OK);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // The key is compromised: the identity provider publishes a set without it. The token's
    // exp is ten minutes away.
    *doc.lock().unwrap() = Some(r#"{"keys":[]}"#.to_owned());
    let refreshed = tokio::time::Instant::now() + Duration::from_secs(45);
    while fetches.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < refreshed,
            "no jwks refresh within 45 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The refresh was requested; once its answer is in, the cached token is refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _, body) = h.get("/v1/me", &auth).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                problem(&body)["detail"],
                "the token could not be verified",
                "{body:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a token of a key removed from the jwks is still accepted ({status})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.stop().await;
}
