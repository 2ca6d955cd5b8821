//! The real `region-node` binary serving HTTPS: its certificate files are rotated mid-run and
//! the process gets `SIGHUP`; new handshakes present the new certificate while a connection
//! opened before keeps answering, and the process keeps running.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use integration_tests::{binary, write_node_config, RegionDb};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "node rotation ca");
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
    for (name, pem) in [("node.key", key_pem), ("node.pem", cert_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new TLS connection to the node: the certificate it presented and a sender on it.
async fn connect(
    port: u16,
    ca: &Ca,
) -> std::io::Result<(CertificateDer<'static>, SendRequest<Empty<Bytes>>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok((presented, send))
}

/// `GET /readyz` on `send`; the node must answer 200.
async fn ready(send: &mut SendRequest<Empty<Bytes>>) {
    send.ready().await.unwrap();
    let req = http::Request::builder()
        .uri("/readyz")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn sighup_rotates_the_node_certificate_without_dropping_connections() {
    let db = RegionDb::create("eu").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (path, _key) = write_node_config(dir.path(), &db, "eu", &format!("127.0.0.1:{port}"), 2);
    let ca = Ca::new();
    let (a_der, a_pem, a_key) = ca.leaf(&[]);
    install(dir.path(), &a_pem, &a_key);
    // Polling off: only SIGHUP reloads.
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(
        "\n[tls]\ncert_file = \"node.pem\"\nkey_file = \"node.key\"\nreload_interval = \"0s\"\n",
    );
    std::fs::write(&path, toml).unwrap();
    let mut child = tokio::process::Command::new(binary("region-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Ready once a TLS handshake succeeds: the reloader is installed before the node listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (first, mut old) = loop {
        if let Ok(c) = connect(port, &ca).await {
            break c;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "region-node exited early"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never served TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first, a_der);
    ready(&mut old).await;

    let (b_der, b_pem, b_key) = ca.leaf(&["b.rotation.test"]);
    install(dir.path(), &b_pem, &b_key);
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (seen, mut send) = connect(port, &ca).await.unwrap();
        if seen == b_der {
            ready(&mut send).await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new handshakes never presented the rotated certificate"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The connection opened under certificate A still answers, and the process lives on.
    ready(&mut old).await;
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the node");
}
