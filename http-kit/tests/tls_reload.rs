//! Certificate hot reload on a real TLS listener (the kit's accept loop on port 0): rotating
//! the certificate files makes new handshakes see the new certificate while an open
//! connection keeps working; a broken file keeps the old certificate. Both triggers are
//! exercised: a file change seen by the poller, and `SIGHUP`. The mTLS client CA rotates the
//! same way.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use residency_http::serve::{serve, Limits, ServeOptions};
use residency_http::tls_reload::{ReloadingCert, ReloadingClientCa};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

struct Ca {
    der: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "reload test ca");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
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

/// A fresh directory for one test's PEM files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tls-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes the pair the way a rotation does: a new file renamed over the old one.
fn install(dir: &Path, cert_pem: &str, key_pem: &str) {
    for (name, pem) in [("tls.key", key_pem), ("tls.crt", cert_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

struct Server {
    addr: std::net::SocketAddr,
    cert: Arc<ReloadingCert>,
    shutdown: CancellationToken,
    client: TlsConnector,
}

impl Server {
    async fn start(ca: &Ca, dir: &Path, interval: Duration) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = ReloadingCert::load(
            &dir.join("tls.crt"),
            &dir.join("tls.key"),
            Arc::clone(&provider),
        )
        .unwrap();
        let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&cert) as _);
        let shutdown = CancellationToken::new();
        cert.spawn_reloader(interval, shutdown.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let opts = ServeOptions {
            limits: Limits::default(),
            tls: Some(TlsAcceptor::from(Arc::new(config))),
        };
        tokio::spawn(serve(listener, opts, svc, shutdown.clone()));
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            addr,
            cert,
            shutdown,
            client: TlsConnector::from(Arc::new(client)),
        }
    }

    /// A new connection: the certificate the server presented and a request sender on it.
    async fn connect(&self) -> (CertificateDer<'static>, SendRequest<Empty<Bytes>>) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self.client.connect(name, tcp).await.unwrap();
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
}

async fn get_ok(send: &mut SendRequest<Empty<Bytes>>) {
    send.ready().await.unwrap();
    let req = Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test]
async fn file_change_rotates_for_new_handshakes_and_keeps_open_connections() {
    let ca = Ca::new();
    let d = dir("poll");
    let (a_der, a_pem, a_key) = ca.leaf(&[]);
    install(&d, &a_pem, &a_key);
    let server = Server::start(&ca, &d, Duration::from_millis(50)).await;

    let (first, mut old) = server.connect().await;
    assert_eq!(first, a_der);
    get_ok(&mut old).await;

    // Certificate B: same CA, another key, another SAN list (so the file length differs).
    let (b_der, b_pem, b_key) = ca.leaf(&["b.reload.test"]);
    install(&d, &b_pem, &b_key);
    server.until_presented(&b_der).await;
    assert_eq!(server.cert.current().cert[0], b_der);
    // The connection opened under A still works.
    get_ok(&mut old).await;

    // A broken certificate file: the reload fails, naming the file, and B stays.
    std::fs::write(
        d.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    let err = server.cert.reload_now().unwrap_err().to_string();
    assert!(
        err.contains("tls.cert_file") && err.contains("tls.crt"),
        "{err}"
    );
    let (after, mut fresh) = server.connect().await;
    assert_eq!(after, b_der);
    get_ok(&mut fresh).await;

    // A key that does not belong to the certificate: refused too, B stays.
    let (_, c_pem, _) = ca.leaf(&["c.reload.test"]);
    install(&d, &c_pem, &b_key);
    let err = server.cert.reload_now().unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    assert_eq!(server.cert.current().cert[0], b_der);

    server.shutdown.cancel();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn sighup_rotates_when_polling_is_off() {
    let ca = Ca::new();
    let d = dir("hup");
    let (a_der, a_pem, a_key) = ca.leaf(&[]);
    install(&d, &a_pem, &a_key);
    // Interval zero: only SIGHUP reloads.
    let server = Server::start(&ca, &d, Duration::ZERO).await;
    let (first, mut old) = server.connect().await;
    assert_eq!(first, a_der);
    get_ok(&mut old).await;

    let (b_der, b_pem, b_key) = ca.leaf(&["b.reload.test"]);
    install(&d, &b_pem, &b_key);
    // Without a signal nothing changes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (still, _) = server.connect().await;
    assert_eq!(still, a_der);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.until_presented(&b_der).await;
    get_ok(&mut old).await;
    server.shutdown.cancel();
    let _ = std::fs::remove_dir_all(&d);
}

/// `(certificate, key)` of a client certificate `ca` issued.
fn client_cert(ca: &Ca) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec!["gateway.client".to_owned()]).unwrap();
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (cert.der().clone(), key)
}

/// One request over a new mTLS connection presenting `client`; `Err` when the server refused
/// the certificate (with TLS 1.3 that shows on the first read, not in the handshake).
async fn mtls_request(
    addr: std::net::SocketAddr,
    server_ca: &Ca,
    client: &(CertificateDer<'static>, PrivateKeyDer<'static>),
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(server_ca.der.clone()).unwrap();
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.0.clone()], client.1.clone_key())
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    assert_eq!(resp.status(), 200);
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(send)
}

#[tokio::test]
async fn client_ca_rotation_applies_to_new_handshakes_only() {
    let server_ca = Ca::new();
    let (old_ca, new_ca) = (Ca::new(), Ca::new());
    let d = dir("client-ca");
    let (_, pem, key) = server_ca.leaf(&[]);
    install(&d, &pem, &key);
    std::fs::write(d.join("client-ca.pem"), &old_ca.pem).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = ReloadingCert::load(
        &d.join("tls.crt"),
        &d.join("tls.key"),
        Arc::clone(&provider),
    )
    .unwrap();
    let client_ca =
        ReloadingClientCa::load(&d.join("client-ca.pem"), Arc::clone(&provider)).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::clone(&client_ca) as _)
        .with_cert_resolver(cert);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let shutdown = CancellationToken::new();
    let opts = ServeOptions {
        limits: Limits::default(),
        tls: Some(TlsAcceptor::from(Arc::new(config))),
    };
    tokio::spawn(serve(listener, opts, svc, shutdown.clone()));

    let (old_client, new_client) = (client_cert(&old_ca), client_cert(&new_ca));
    let mut open = mtls_request(addr, &server_ca, &old_client).await.unwrap();
    assert!(mtls_request(addr, &server_ca, &new_client).await.is_err());

    std::fs::write(d.join("client-ca.pem"), &new_ca.pem).unwrap();
    client_ca.reload_now().unwrap();
    mtls_request(addr, &server_ca, &new_client).await.unwrap();
    assert!(mtls_request(addr, &server_ca, &old_client).await.is_err());
    // The connection authenticated under the old CA keeps working.
    get_ok(&mut open).await;

    // A broken CA file: refused, naming the file; the new CA stays.
    std::fs::write(d.join("client-ca.pem"), "not a pem\n").unwrap();
    let err = client_ca.reload_now().unwrap_err().to_string();
    assert!(err.contains("tls.client_ca_file"), "{err}");
    mtls_request(addr, &server_ca, &new_client).await.unwrap();

    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&d);
}
