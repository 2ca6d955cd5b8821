//! Custom domains from a directory file (`[[domains]]`) on a TLS gateway in front of a fake
//! node: the domain's certificate by SNI, rotated in place without a restart, only its
//! tenant's API keys on it (403 otherwise), SNI/`Host` disagreement 421, and the refusals
//! counted by reason in the gateway's metrics.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use residency_gateway::Listeners;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const A: &str = "0190a5c4-0000-7000-8000-00000000d0a1";
const B: &str = "0190a5c4-0000-7000-8000-00000000d0b2";

fn key(prefix: &str) -> String {
    format!("rk_{prefix}_{}", "s".repeat(40))
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Writes a certificate for `names` as `<dir>/tls.crt` and `tls.key` (renamed into
    /// place); returns its DER.
    fn install(&self, dir: &Path, names: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let cert =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &self.issuer)
                .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        for (name, pem) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
            let tmp = dir.join(format!(".{name}.new"));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        cert.der().clone()
    }
}

/// `(certificate presented, status)` of `GET /v1/me` with `sni`, `host` and an API key
/// (`rk_…`) or a bearer token.
async fn call(
    addr: &str,
    ca: &Ca,
    sni: &str,
    host: &str,
    key: &str,
) -> (CertificateDer<'static>, u16) {
    let (name, value) = if key.starts_with("rk_") {
        ("x-api-key", key.to_owned())
    } else {
        ("authorization", format!("Bearer {key}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/v1/me")
        .header("host", host)
        .header(name, value)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    (presented, status)
}

#[tokio::test]
async fn file_domains_get_their_rotating_certificate_and_only_their_tenant() {
    let metrics = residency_gateway::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let default = ca.install(dir.path(), &["localhost"]);
    let domains = dir.path().join("domains");
    let a_cert = ca.install(&domains.join("a"), &["api.a.test"]);
    ca.install(&domains.join("api.b.test"), &["api.b.test"]);
    let (node_url, reached) = support::fake_node().await;
    let idp = support::Idp::generate("https://idp.test/", "domains-1");
    std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
    std::fs::write(dir.path().join("eu.key"), [7u8; 32]).unwrap();
    let hash = residency_gateway::auth::api_key::hash_hex;
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            r#"
[[tenants]]
id = "{A}"
region = "eu"
tier = "scale"
status = "active"
[[tenants]]
id = "{B}"
region = "eu"
tier = "scale"
status = "active"
[[api_keys]]
id = "ka"
tenant = "{A}"
prefix = "domaina1"
hash = "{ha}"
[[api_keys]]
id = "kb"
tenant = "{B}"
prefix = "domainb1"
hash = "{hb}"
[[domains]]
hostname = "api.a.test"
tenant = "{A}"
cert_ref = "a"
[[domains]]
hostname = "api.b.test"
tenant = "{B}"
"#,
            ha = hash(&key("domaina1")),
            hb = hash(&key("domainb1")),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            r#"
[listen]
public = "127.0.0.1:0"

[tls]
cert_file = "tls.crt"
key_file = "tls.key"
reload_interval = "50ms"
domains_dir = "domains"

[[issuers]]
issuer = "https://idp.test/"
audience = "{audience}"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["{node_url}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}
"#,
            audience = support::AUDIENCE,
        ),
    )
    .unwrap();
    let cfg = residency_config::load::load(&dir.path().join("gateway.toml"), &Vec::new()).unwrap();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(residency_gateway::run(
        cfg,
        Listeners {
            public,
            admin: None,
        },
        shutdown.clone(),
    ));
    let (ka, kb) = (key("domaina1"), key("domainb1"));

    assert_eq!(
        call(&addr, &ca, "api.a.test", "api.a.test", &ka).await,
        (a_cert.clone(), 200)
    );
    assert_eq!(
        call(&addr, &ca, "localhost", "localhost", &kb).await,
        (default, 200)
    );
    let before = reached.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        call(&addr, &ca, "api.a.test", "api.a.test", &kb).await.1,
        403
    );
    let (ta, tb) = (idp.token(A), idp.token(B));
    assert_eq!(
        call(&addr, &ca, "api.a.test", "api.a.test", &tb).await.1,
        403
    );
    assert_eq!(
        call(&addr, &ca, "api.a.test", "api.a.test", &ta).await.1,
        200
    );
    assert_eq!(
        call(&addr, &ca, "api.a.test", "api.b.test", &kb).await.1,
        421
    );
    assert_eq!(
        call(&addr, &ca, "api.b.test", "api.b.test", &kb).await.1,
        200
    );
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        before + 2,
        "refused requests never reach the node"
    );
    let page = metrics.render();
    for reason in ["tenant_mismatch", "misdirected"] {
        assert!(
            page.contains(&format!(
                "residency_gateway_domain_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {page}"
        );
    }

    // cert-manager renews the certificate: new handshakes get it, without a restart.
    let renewed = ca.install(&domains.join("a"), &["api.a.test"]);
    assert_ne!(renewed, a_cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if call(&addr, &ca, "api.a.test", "api.a.test", &ka).await.0 == renewed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed domain certificate was never presented"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("gateway drained in time")
        .unwrap()
        .unwrap();
}
