//! TLS and mTLS from the gateway to region nodes: a real gateway on 127.0.0.1:0 in front of
//! fake region nodes that serve TLS (rustls, port 0), one of them requiring a client
//! certificate. Certificates are generated per run with rcgen; nothing secret is committed.
//!
//! Regions of the harness (one tenant each):
//! - `eu`: TLS, the gateway trusts the node's CA;
//! - `us`: mTLS, the gateway trusts the CA and presents its client certificate;
//! - `apac`: the node requires a client certificate, the gateway has none configured;
//! - `sa`: the gateway trusts another CA than the one that signed the node's certificate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ISSUER: &str = "https://idp.tls.test/";
const AUDIENCE: &str = "residency-api";
const KID: &str = "idp-tls-1";
const ADMIN_TOKEN: &str = "tls-test-admin-token-0123456789";
const TENANTS: [(&str, &str); 4] = [
    ("eu", "0190a5c4-0000-7000-8000-00000000e001"),
    ("us", "0190a5c4-0000-7000-8000-00000000a001"),
    ("apac", "0190a5c4-0000-7000-8000-00000000c001"),
    ("sa", "0190a5c4-0000-7000-8000-00000000d001"),
];

/// A dev CA that issues server and client certificates.
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

    /// `(certificate pem, key pem)` for 127.0.0.1 with `usage`.
    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One proxied request as a node saw it: path, whether the connection presented a client
/// certificate, and the negotiated ALPN protocol.
type Proxied = (String, bool, Option<String>);

/// What one fake TLS node saw.
#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Proxied>>>,
}

impl Seen {
    fn proxied(&self) -> Vec<Proxied> {
        self.requests.lock().unwrap().clone()
    }
}

struct TlsNode {
    url: String,
    seen: Seen,
    /// Handshakes the node refused, so far.
    refused: watch::Receiver<usize>,
}

/// A fake region node serving HTTPS on port 0 with `cert`; with `client_ca` it requires a
/// client certificate signed by it (as `region-node` does with `tls.client_ca_file`).
async fn tls_node(
    region: &'static str,
    cert: &(String, String),
    client_ca: Option<&Ca>,
) -> TlsNode {
    let key = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap()
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(&ca.pem) {
                roots.add(c).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs(&cert.0), key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let (refused_tx, refused) = watch::channel(0usize);
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = record.clone();
            let refused_tx = refused_tx.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    refused_tx.send_modify(|n| *n += 1);
                    return;
                };
                let (_, conn) = stream.get_ref();
                let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                let alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    let alpn = alpn.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        if path != "/readyz" {
                            record
                                .requests
                                .lock()
                                .unwrap()
                                .push((path, client_cert, alpn));
                        }
                        let body = json!({ "region": region, "client_cert": client_cert });
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TlsNode { url, seen, refused }
}

struct Harness {
    base: String,
    admin: String,
    key: EncodingKey,
    nodes: Vec<(&'static str, TlsNode)>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(health_checks: bool) -> Self {
        Self::start_with(health_checks, "upstream_eject = \"30s\"").await
    }

    /// [`Harness::start`] with `limits` as the `[limits]` section's body.
    async fn start_with(health_checks: bool, limits: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        let node_ca = Ca::new("node ca");
        let other_ca = Ca::new("another ca");
        write("node-ca.pem", node_ca.pem.as_bytes());
        write("other-ca.pem", other_ca.pem.as_bytes());
        let (client_cert, client_key) =
            node_ca.leaf("residency-gateway", ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", client_cert.as_bytes());
        write("client.key", client_key.as_bytes());

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]});
        write("jwks.json", jwks.to_string().as_bytes());
        write("admin.token", ADMIN_TOKEN.as_bytes());
        let mut directory = String::new();
        for (region, tenant) in TENANTS {
            directory.push_str(&format!(
                "[[tenants]]\nid = \"{tenant}\"\nregion = \"{region}\"\ntier = \"growth\"\nstatus = \"active\"\n"
            ));
        }
        write("directory.toml", directory.as_bytes());

        let mut nodes = Vec::new();
        let mut regions = String::new();
        for (i, (region, _)) in TENANTS.into_iter().enumerate() {
            let server = node_ca.leaf(
                &format!("node-{region}"),
                ExtendedKeyUsagePurpose::ServerAuth,
            );
            let requires_client_cert = matches!(region, "us" | "apac");
            let node = tls_node(region, &server, requires_client_cert.then_some(&node_ca)).await;
            write(
                &format!("{region}.key"),
                &[u8::try_from(i).unwrap() + 1; 32],
            );
            let ca = if region == "sa" {
                "other-ca.pem"
            } else {
                "node-ca.pem"
            };
            let client = if region == "us" {
                "client_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"\n"
            } else {
                ""
            };
            regions.push_str(&format!(
                "[[regions]]\nid = \"{region}\"\nupstreams = [\"{url}\"]\nca_file = \"{ca}\"\n{client}\
                 assertion = {{ kid = \"{region}-1\", key_file = \"{region}.key\" }}\n\n",
                url = node.url,
            ));
            nodes.push((region, node));
        }
        let config = format!(
            r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[admin]
token_file = "admin.token"

[health_check]
enabled = {health_checks}
interval = "200ms"
timeout = "150ms"

[limits]
{limits}

{regions}"#
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
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            nodes,
            client: Client::builder(TokioExecutor::new()).build_http(),
            shutdown,
            gateway,
            _dir: dir,
        }
    }

    fn node(&self, region: &str) -> &TlsNode {
        &self.nodes.iter().find(|(r, _)| *r == region).unwrap().1
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Value) {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("gateway answered in time")
            .expect("request reached the gateway");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `GET /v1/me` through the gateway as the tenant homed in `region`.
    async fn me(&self, region: &str) -> (StatusCode, http::HeaderMap, Value) {
        let tenant = TENANTS.iter().find(|(r, _)| *r == region).unwrap().1;
        let now = residency_core::assertion::now_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant_id": tenant,
            "role": "developer", "iat": now, "exp": now + 600,
        });
        let token = jsonwebtoken::encode(&header, &claims, &self.key).unwrap();
        let req = Request::get(format!("{}/v1/me", self.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    async fn regions(&self) -> Value {
        let req = Request::get(format!("{}/admin/v1/regions", self.admin))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Full::default())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.gateway)
            .await
            .expect("gateway drained")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn tls_and_mtls_upstreams_serve_and_bad_trust_is_a_502_in_its_region_only() {
    let h = Harness::start(false).await;

    // TLS with the region's CA: served, over HTTP/1.1, without a client certificate.
    let (status, headers, body) = h.me("eu").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "region": "eu", "client_cert": false }));
    assert_eq!(headers["x-residency-region"], "eu");
    assert_eq!(
        h.node("eu").seen.proxied(),
        [("/v1/me".to_owned(), false, Some("http/1.1".to_owned()))]
    );

    // mTLS: the node required a client certificate and got the gateway's.
    let (status, _, body) = h.me("us").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "region": "us", "client_cert": true }));

    // The node requires a client certificate the gateway does not have: it refuses the
    // handshake, and the client gets a 502 problem, not a 500.
    let mut refused = h.node("apac").refused.clone();
    let (status, headers, body) = h.me("apac").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 502);
    tokio::time::timeout(Duration::from_secs(5), refused.wait_for(|n| *n >= 1))
        .await
        .expect("the node refused a handshake without a client certificate")
        .unwrap();
    assert!(h.node("apac").seen.proxied().is_empty());

    // A CA that did not sign the node's certificate: 502, and the body says nothing about
    // certificates or addresses.
    let (status, _, body) = h.me("sa").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("certificate"),
        "{text}"
    );
    // The upstream is now ejected: its region answers 503 + Retry-After, never another's.
    let (status, headers, _) = h.me("sa").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));

    // No request went anywhere but its home region.
    assert_eq!(h.node("eu").seen.proxied().len(), 1);
    assert_eq!(h.node("us").seen.proxied().len(), 1);
    assert!(h.node("sa").seen.proxied().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn health_checks_use_each_regions_tls_settings() {
    let h = Harness::start(true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let detail = |regions: &Value, id: &str| {
        regions["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| {
                r["upstreams"][0]["last_check"]["detail"]
                    .as_str()
                    .map(str::to_owned)
            })
    };
    loop {
        let regions = h.regions().await;
        let got: Vec<Option<String>> = ["eu", "us", "apac", "sa"]
            .iter()
            .map(|r| detail(&regions, r))
            .collect();
        if got.iter().all(Option::is_some) {
            assert_eq!(got[0].as_deref(), Some("200"), "{regions:#}");
            assert_eq!(got[1].as_deref(), Some("200"), "mTLS check: {regions:#}");
            // A node that refuses the missing client certificate fails the handshake from its
            // side; the gateway sees an alert or a closed connection.
            assert!(
                matches!(
                    got[2].as_deref(),
                    Some("tls error" | "connect error" | "request failed")
                ),
                "{regions:#}"
            );
            assert_eq!(got[3].as_deref(), Some("tls error"), "{regions:#}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checks ran: {regions:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

/// `GET /v1/me` of `region` until `done(status)` or 10 s pass; the last status.
async fn me_until(h: &Harness, region: &str, done: impl Fn(StatusCode) -> bool) -> StatusCode {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = h.me(region).await;
        if done(status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{region}: still {status} {body} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `bytes` the way a rotation does: a new file renamed over the old one.
fn rotate(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn rotated_ca_and_client_certificate_files_reach_new_upstream_connections() {
    // No idle upstream connections, so every request makes a new handshake; a short
    // ejection, so a refused handshake costs one second of 503s.
    let h = Harness::start_with(false, "upstream_pool_idle = 0\nupstream_eject = \"1s\"").await;
    let dir = h._dir.path().to_owned();

    // The region's CA file is rotated to the CA that signed its node: served again, without
    // a restart.
    assert_eq!(h.me("sa").await.0, StatusCode::BAD_GATEWAY);
    rotate(
        &dir.join("other-ca.pem"),
        &std::fs::read(dir.join("node-ca.pem")).unwrap(),
    );
    me_until(&h, "sa", |s| s == StatusCode::OK).await;

    // The client certificate is rotated to one from a CA the node does not trust: new
    // handshakes present it and are refused; rotated back, served again.
    assert_eq!(h.me("us").await.0, StatusCode::OK);
    let good = (
        std::fs::read(dir.join("client.pem")).unwrap(),
        std::fs::read(dir.join("client.key")).unwrap(),
    );
    let stranger =
        Ca::new("stranger").leaf("residency-gateway", ExtendedKeyUsagePurpose::ClientAuth);
    rotate(&dir.join("client.key"), stranger.1.as_bytes());
    rotate(&dir.join("client.pem"), stranger.0.as_bytes());
    let mut refused = h.node("us").refused.clone();
    let before = *refused.borrow();
    me_until(&h, "us", |s| s != StatusCode::OK).await;
    tokio::time::timeout(Duration::from_secs(5), refused.wait_for(|n| *n > before))
        .await
        .expect("the node refused the stranger's certificate")
        .unwrap();
    rotate(&dir.join("client.key"), &good.1);
    rotate(&dir.join("client.pem"), &good.0);
    me_until(&h, "us", |s| s == StatusCode::OK).await;

    // A broken CA file keeps the last good CA set.
    rotate(&dir.join("other-ca.pem"), b"not a certificate");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(h.me("sa").await.0, StatusCode::OK);
    h.stop().await;
}
