//! Issuer keys over https: a local identity provider serving https with a certificate from a
//! test CA (rcgen, per run), a JWKS URL, OpenID Connect discovery from the issuer URL alone,
//! key rotation through discovery with `Cache-Control: max-age`, and the errors a fetch
//! reports (unknown CA, wrong host name, a discovery document of another issuer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use residency_gateway::auth::remote::Remote;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const AUDIENCE: &str = "residency-api";
const TENANT: &str = "0190a5c4-0000-7000-8000-00000000e0a1";

/// A test CA.
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

    /// A server certificate for the name `localhost` only: `(certificate pem, key pem)`.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// One ES256 signing key of the identity provider and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
            }),
        }
    }

    fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    fn token(&self, issuer: &str) -> String {
        let now = residency_core::assertion::now_secs();
        let claims = json!({
            "iss": issuer, "aud": AUDIENCE, "sub": "user-1", "tenant_id": TENANT,
            "role": "developer", "iat": now, "exp": now + 600,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A document the identity provider serves, with an optional `Cache-Control`.
#[derive(Clone)]
struct Doc {
    body: String,
    cache_control: Option<&'static str>,
}

/// Documents by path, and how often each path was asked for.
#[derive(Default)]
struct IdpState {
    docs: HashMap<String, Doc>,
    hits: HashMap<String, usize>,
    /// Every request answered 503 (the provider is down).
    down: bool,
}

/// A local https identity provider on `localhost:<port>`.
struct HttpsIdp {
    /// `https://localhost:<port>`, which is also its issuer name.
    base: String,
    port: u16,
    state: Arc<Mutex<IdpState>>,
    accept: tokio::task::AbortHandle,
}

impl HttpsIdp {
    async fn start(ca: &Ca) -> Self {
        let (cert_pem, key_pem) = ca.server();
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<IdpState>> = Arc::default();
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_owned();
                        let mut st = state.lock().unwrap();
                        *st.hits.entry(path.clone()).or_default() += 1;
                        let doc = st.docs.get(&path).filter(|_| !st.down);
                        let resp = match doc {
                            Some(doc) => {
                                let mut b =
                                    Response::builder().header("content-type", "application/json");
                                if let Some(cc) = doc.cache_control {
                                    b = b.header("cache-control", cc);
                                }
                                b.body(Full::new(Bytes::from(doc.body.clone()))).unwrap()
                            }
                            None if st.down => Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::default())
                                .unwrap(),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::default())
                                .unwrap(),
                        };
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            base: format!("https://localhost:{port}"),
            port,
            state,
            accept: accept.abort_handle(),
        }
    }

    /// Takes the provider down: open connections get 503, new ones are refused.
    fn stop(&self) {
        self.state.lock().unwrap().down = true;
        self.accept.abort();
    }

    fn serve(&self, path: &str, body: String, cache_control: Option<&'static str>) {
        self.state.lock().unwrap().docs.insert(
            path.to_owned(),
            Doc {
                body,
                cache_control,
            },
        );
    }

    /// Publishes the discovery document pointing at `jwks_path`.
    fn discover(&self, issuer: &str, jwks_path: &str) {
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": format!("{}{jwks_path}", self.base),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        self.serve(
            "/.well-known/openid-configuration",
            doc.to_string(),
            Some("max-age=3600"),
        );
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// A region node that answers every request with 200 `eu`.
async fn fake_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"eu",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

/// A gateway whose one issuer is configured by `issuer_lines` (after `audience`), with one
/// tenant in region eu.
struct Gateway {
    base: String,
    spawned: residency_gateway::Spawned,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(ca: &Ca, issuer_lines: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.path().join("eu.key"), [7u8; 32]).unwrap();
        std::fs::write(
            dir.path().join("directory.toml"),
            format!(
                "[[tenants]]\nid = \"{TENANT}\"\nregion = \"eu\"\ntier = \"scale\"\n\
                 status = \"active\"\n"
            ),
        )
        .unwrap();
        let config = format!(
            r#"
[listen]
public = "127.0.0.1:0"

[[issuers]]
audience = "{AUDIENCE}"
leeway = "0s"
{issuer_lines}

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["{node}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}
"#,
            node = fake_node().await,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let spawned = residency_gateway::spawn_local(&path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            base: format!("http://{}", spawned.public),
            spawned,
            _dir: dir,
        }
    }

    async fn status(&self, token: &str) -> StatusCode {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = Request::get(format!("{}/v1/me", self.base))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        client.request(req).await.unwrap().status()
    }

    async fn stop(self) {
        self.spawned.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.spawned.task)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_jwks_url_over_https_with_the_issuers_ca_verifies_tokens() {
    let ca = Ca::new("idp test ca");
    let idp = HttpsIdp::start(&ca).await;
    let key = SigningKey::generate("https-1");
    idp.serve("/jwks.json", key.jwks(), None);
    let issuer = "https://idp.https.test/";
    let gw = Gateway::start(
        &ca,
        &format!(
            "issuer = \"{issuer}\"\njwks_url = \"{}/jwks.json\"\nca_file = \"ca.pem\"",
            idp.base
        ),
    )
    .await;
    assert_eq!(gw.status(&key.token(issuer)).await, StatusCode::OK);
    assert_eq!(idp.hits("/jwks.json"), 1);
    // A token of a key the issuer does not publish is still refused.
    let stranger = SigningKey::generate("https-1");
    assert_eq!(
        gw.status(&stranger.token(issuer)).await,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_jwks_url_signed_by_another_ca_is_not_trusted_until_the_ca_file_is_rotated() {
    let (ca, other) = (Ca::new("idp test ca"), Ca::new("another ca"));
    let idp = HttpsIdp::start(&ca).await;
    let key = SigningKey::generate("https-1");
    idp.serve("/jwks.json", key.jwks(), None);
    let issuer = "https://idp.https.test/";
    // The gateway starts (an issuer being unreachable must not stop it) but has no keys.
    let gw = Gateway::start(
        &other,
        &format!(
            "issuer = \"{issuer}\"\njwks_url = \"{}/jwks.json\"\nca_file = \"ca.pem\"",
            idp.base
        ),
    )
    .await;
    assert_eq!(
        gw.status(&key.token(issuer)).await,
        StatusCode::UNAUTHORIZED
    );
    // No JWKS request was ever answered: every handshake was refused.
    assert_eq!(idp.hits("/jwks.json"), 0);

    // The issuer's CA file is rotated to the CA that signed the IdP: the next fetch (at the
    // cool-down, 30 s at the least, after the failed one) trusts it, without a restart.
    let ca_file = gw._dir.path().join("ca.pem");
    std::fs::write(ca_file.with_extension("new"), &ca.pem).unwrap();
    std::fs::rename(ca_file.with_extension("new"), &ca_file).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while gw.status(&key.token(issuer)).await != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated ca_file was not used within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(idp.hits("/jwks.json") >= 1);
    gw.stop().await;
}

/// The errors name the URL and the TLS reason.
#[tokio::test]
async fn fetch_errors_name_the_url_and_the_reason() {
    let (ca, other) = (Ca::new("idp test ca"), Ca::new("another ca"));
    let idp = HttpsIdp::start(&ca).await;
    idp.serve("/jwks.json", SigningKey::generate("k").jwks(), None);
    let dir = tempfile::tempdir().unwrap();
    let (good_ca, other_ca) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&good_ca, &ca.pem).unwrap();
    std::fs::write(&other_ca, &other.pem).unwrap();
    let url = format!("{}/jwks.json", idp.base);

    let fetched = Remote::jwks(&url, Some(&good_ca))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert!(fetched.bytes.starts_with(b"{\"keys\""));

    let err = Remote::jwks(&url, Some(&other_ca))
        .unwrap()
        .fetch()
        .await
        .err()
        .expect("a certificate of an unknown CA was accepted")
        .to_string();
    assert!(err.contains(&url) && err.contains("UnknownIssuer"), "{err}");

    // The certificate is for `localhost`, not for the address.
    let by_ip = format!("https://127.0.0.1:{}/jwks.json", idp.port);
    let err = Remote::jwks(&by_ip, Some(&good_ca))
        .unwrap()
        .fetch()
        .await
        .err()
        .expect("a certificate for another name was accepted")
        .to_string();
    assert!(
        err.contains(&by_ip) && err.contains("not valid for name"),
        "{err}"
    );

    // A discovery document must name the configured issuer, and keep the keys on https.
    let discovery = format!("{}/.well-known/openid-configuration", idp.base);
    idp.discover("https://someone-else.test", "/jwks.json");
    let err = Remote::discovery(&idp.base, &discovery, Some(&good_ca))
        .unwrap()
        .fetch()
        .await
        .err()
        .expect("a discovery document of another issuer was accepted")
        .to_string();
    assert!(
        err.contains(&discovery) && err.contains("someone-else"),
        "{err}"
    );
    idp.serve(
        "/.well-known/openid-configuration",
        json!({ "issuer": idp.base, "jwks_uri": "http://127.0.0.1:9/jwks.json" }).to_string(),
        None,
    );
    let err = Remote::discovery(&idp.base, &discovery, Some(&good_ca))
        .unwrap()
        .fetch()
        .await
        .err()
        .expect("discovery over https downgraded the keys to http")
        .to_string();
    assert!(err.contains("not https"), "{err}");
}

/// An issuer given by its URL alone: the gateway finds the keys through discovery, honours
/// the JWKS response's `max-age` (30 s, shorter than the 60 s `jwks_refresh`) and follows the
/// issuer to a new `jwks_uri` with a new key: the new key's tokens are accepted, the removed
/// key's tokens refused.
#[tokio::test]
async fn an_issuer_given_by_its_url_alone_is_discovered_and_rotated_by_max_age() {
    let ca = Ca::new("idp test ca");
    let idp = HttpsIdp::start(&ca).await;
    let issuer = idp.base.clone();
    let (old, new) = (
        SigningKey::generate("2026-a"),
        SigningKey::generate("2026-b"),
    );
    idp.serve("/keys/a.json", old.jwks(), Some("public, max-age=30"));
    idp.discover(&issuer, "/keys/a.json");
    let gw = Gateway::start(
        &ca,
        &format!("issuer = \"{issuer}\"\nca_file = \"ca.pem\"\njwks_refresh = \"60s\""),
    )
    .await;
    assert_eq!(gw.status(&old.token(&issuer)).await, StatusCode::OK);
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/keys/a.json"), 1);

    // The issuer rotates: a new key at a new jwks_uri, the old key gone.
    idp.serve("/keys/b.json", new.jwks(), Some("max-age=30"));
    idp.discover(&issuer, "/keys/b.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while idp.hits("/keys/b.json") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh through discovery within 45 s (max-age 30 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while gw.status(&new.token(&issuer)).await != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key is not accepted after the refresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gw.status(&old.token(&issuer)).await,
        StatusCode::UNAUTHORIZED
    );
    // The old document was not asked for again.
    assert_eq!(idp.hits("/keys/a.json"), 1);
    gw.stop().await;
}

/// A refresh that fails anywhere along discovery (the document gone, then naming another
/// issuer) keeps the last good keys; a good document again installs the new set.
#[tokio::test]
async fn a_failed_discovery_keeps_the_last_good_keys() {
    use residency_gateway::auth::jwks::{Jwks, Source};

    let ca = Ca::new("idp test ca");
    let idp = HttpsIdp::start(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (old, new) = (SigningKey::generate("k-old"), SigningKey::generate("k-new"));
    idp.serve("/keys/old.json", old.jwks(), None);
    idp.serve("/keys/new.json", new.jwks(), None);
    idp.discover(&idp.base, "/keys/old.json");
    let discovery = format!("{}/.well-known/openid-configuration", idp.base);
    let remote = Remote::discovery(&idp.base, &discovery, Some(&ca_file)).unwrap();
    let jwks = Jwks::load(
        Source::Remote(remote),
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(jwks.get("k-old").is_some());

    idp.state
        .lock()
        .unwrap()
        .docs
        .remove("/.well-known/openid-configuration");
    jwks.refresh().await;
    assert!(
        jwks.get("k-old").is_some(),
        "a missing discovery document dropped the keys"
    );

    idp.discover("https://someone-else.test", "/keys/new.json");
    jwks.refresh().await;
    assert!(jwks.get("k-old").is_some() && jwks.get("k-new").is_none());
    assert_eq!(
        idp.hits("/keys/new.json"),
        0,
        "keys of a mismatched issuer were fetched"
    );

    idp.discover(&idp.base, "/keys/new.json");
    jwks.refresh().await;
    assert!(jwks.get("k-new").is_some() && jwks.get("k-old").is_none());
}

/// The JWKS endpoint down (503 on open connections, then refused): every refresh keeps the
/// last good keys, the ones tokens are verified with.
#[tokio::test]
async fn a_jwks_endpoint_that_is_down_keeps_the_last_good_keys() {
    use residency_gateway::auth::jwks::{Jwks, Source};

    let ca = Ca::new("idp test ca");
    let idp = HttpsIdp::start(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let key = SigningKey::generate("k-1");
    idp.serve("/jwks.json", key.jwks(), None);
    let url = format!("{}/jwks.json", idp.base);
    let remote = Remote::jwks(&url, Some(&ca_file)).unwrap();
    let jwks = Jwks::load(
        Source::Remote(remote),
        Duration::from_secs(30),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(jwks.get("k-1").is_some());

    idp.stop();
    jwks.refresh().await;
    assert!(jwks.get("k-1").is_some(), "a 503 dropped the keys");
    // Nothing listens any more: the fetch is refused, the keys stay.
    let refused = Remote::jwks(&url, Some(&ca_file)).unwrap().fetch().await;
    assert!(refused.is_err(), "the provider still answers");
    jwks.refresh().await;
    assert!(
        jwks.get("k-1").is_some(),
        "a refused fetch dropped the keys"
    );
}
