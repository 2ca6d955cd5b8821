//! Certificate hot reload of the public listener (issue 12): a real gateway on 127.0.0.1:0
//! serving HTTPS in front of a fake region node. Rotating its certificate files mid-run, then
//! `SIGHUP` (or just waiting for the file-change poll), makes new handshakes present the new
//! certificate while a connection opened before keeps working; a broken file keeps the old
//! certificate.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use residency_gateway::Listeners;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "0190a5c4-0000-7000-8000-0000000012c7";

fn api_key() -> String {
    format!("rk_rot00001_{}", "r".repeat(40))
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "rotation ca");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// `(der, certificate pem, key pem)` for `localhost` plus `extra` names.
    fn leaf(&self, extra: &[&str]) -> (CertificateDer<'static>, String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut names = vec!["localhost".to_owned()];
        names.extend(extra.iter().map(|s| (*s).to_owned()));
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.der().clone(), cert.pem(), key.serialize_pem())
    }
}

/// Writes the pair the way a rotation does: new files renamed over the old ones.
fn install(dir: &Path, cert_pem: &str, key_pem: &str) {
    for (name, pem) in [("key.pem", key_pem), ("cert.pem", cert_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A fake region node answering 200 `"node"` to everything.
async fn fake_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"node"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

struct Gateway {
    addr: String,
    client: tokio_rustls::TlsConnector,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start(ca: &Ca, dir: &Path, reload_interval: &str) -> Self {
        let node_url = fake_node().await;
        std::fs::write(dir.join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        std::fs::write(dir.join("eu.key"), [7u8; 32]).unwrap();
        std::fs::write(
            dir.join("directory.toml"),
            format!(
                r#"
[[tenants]]
id = "{TENANT}"
region = "eu"
tier = "scale"
status = "active"
[[api_keys]]
id = "key-rot-1"
tenant = "{TENANT}"
prefix = "rot00001"
hash = "{}"
"#,
                residency_gateway::auth::api_key::hash_hex(&api_key())
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                r#"
[listen]
public = "127.0.0.1:0"

[tls]
cert_file = "cert.pem"
key_file = "key.pem"
reload_interval = "{reload_interval}"

[[issuers]]
issuer = "https://idp.test/"
audience = "residency-api"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["{node_url}"]
assertion = {{ kid = "eu-1", key_file = "eu.key" }}
"#
            ),
        )
        .unwrap();
        let cfg = residency_config::load::load(&dir.join("gateway.toml"), &Vec::new()).unwrap();
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
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            addr,
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
            shutdown,
            task,
        }
    }

    /// A new TLS connection: the certificate the gateway presented and a sender on it.
    async fn connect(&self) -> (CertificateDer<'static>, SendRequest<Empty<Bytes>>) {
        let tcp = TcpStream::connect(&self.addr).await.unwrap();
        let tls = self
            .client
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        (presented, send)
    }

    /// Polls new handshakes until one presents `want`, within 10 s.
    async fn until_presented(&self, want: &CertificateDer<'static>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (seen, _) = self.connect().await;
            if &seen == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "new handshakes never presented the rotated certificate"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
    }
}

/// One proxied request on `send`; the node's answer must come back.
async fn proxied_ok(send: &mut SendRequest<Empty<Bytes>>) {
    send.ready().await.unwrap();
    let req = Request::builder()
        .uri("/v1/me")
        .header("host", "localhost")
        .header("x-api-key", api_key())
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"node");
}

fn sighup() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_rotates_the_public_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (a_der, a_pem, a_key) = ca.leaf(&[]);
    install(dir.path(), &a_pem, &a_key);
    // Polling off: only SIGHUP reloads.
    let gw = Gateway::start(&ca, dir.path(), "0s").await;

    // This first handshake also proves the reloader (and its SIGHUP handler) is installed:
    // the acceptor is built with it before the listener serves.
    let (first, mut old) = gw.connect().await;
    assert_eq!(first, a_der);
    proxied_ok(&mut old).await;

    let (b_der, b_pem, b_key) = ca.leaf(&["b.rotation.test"]);
    install(dir.path(), &b_pem, &b_key);
    sighup();
    gw.until_presented(&b_der).await;
    // The connection opened under certificate A still carries requests.
    proxied_ok(&mut old).await;
    let (_, mut new) = gw.connect().await;
    proxied_ok(&mut new).await;

    // A broken certificate file: the reload is refused and B stays.
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n",
    )
    .unwrap();
    sighup();
    for _ in 0..10 {
        let (seen, mut send) = gw.connect().await;
        assert_eq!(seen, b_der);
        proxied_ok(&mut send).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxied_ok(&mut old).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_changed_file_is_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (a_der, a_pem, a_key) = ca.leaf(&[]);
    install(dir.path(), &a_pem, &a_key);
    let gw = Gateway::start(&ca, dir.path(), "100ms").await;
    let (first, mut old) = gw.connect().await;
    assert_eq!(first, a_der);
    proxied_ok(&mut old).await;

    let (b_der, b_pem, b_key) = ca.leaf(&["b.rotation.test", "c.rotation.test"]);
    install(dir.path(), &b_pem, &b_key);
    gw.until_presented(&b_der).await;
    proxied_ok(&mut old).await;
    gw.stop().await;
}
