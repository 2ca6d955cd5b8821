//! A minimal HTTPS client for tests that talk to real processes over TLS: it trusts only the
//! CA certificates of one PEM file (never the system's), optionally presents a client
//! certificate (mTLS), opens one HTTP/1.1 connection per request, and reports a refused
//! handshake or a connection closed by the server as an error instead of panicking, so a test
//! can assert that a listener refuses a client.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::Response;

/// A TLS client trusting one CA file.
#[derive(Clone)]
pub struct Https {
    tls: tokio_rustls::TlsConnector,
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Https {
    /// Trusts the certificates in `ca_file`; presents `client` (certificate chain file, key
    /// file) when given.
    ///
    /// # Panics
    /// When a file cannot be read or parsed.
    #[must_use]
    pub fn new(ca_file: &Path, client: Option<(&Path, &Path)>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(ca_file) {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let pem = std::fs::read(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
                let key = PrivateKeyDer::from_pem_slice(&pem)
                    .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
                builder.with_client_auth_cert(certs(cert), key).unwrap()
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        }
    }

    /// Opens one HTTP/1.1 connection to the origin of `url` (`https://host:port/…`), for
    /// callers that keep it alive across requests; returns the sender and the parsed URL.
    ///
    /// # Errors
    /// A failed connection or handshake, as text.
    ///
    /// # Panics
    /// When `url` is not an https URL with a host and port.
    pub async fn connect(
        &self,
        url: &str,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<Full<Bytes>>,
            url::Url,
        ),
        String,
    > {
        let u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(u.scheme(), "https", "{url}");
        let host = u.host_str().expect("a host").to_owned();
        let port = u.port_or_known_default().expect("a port");
        let tls = self.tls_stream((&host, port), &host).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(conn);
        Ok((send, u))
    }

    /// A TLS connection (ALPN `http/1.1`) to `addr` whose certificate must name `name`, for
    /// callers that write and read the HTTP bytes themselves.
    ///
    /// # Errors
    /// A failed connection or handshake, or an invalid `name`, as text.
    pub async fn tls_stream(
        &self,
        (host, port): (&str, u16),
        name: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        self.tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls handshake with {host}:{port}: {e}"))
    }

    /// Sends one request on a new connection to `url` (`https://host:port/path`), with
    /// `headers` and an optional JSON body.
    ///
    /// # Errors
    /// A failed connection, handshake (including a client certificate the server refuses,
    /// which TLS 1.3 reports on the first read) or HTTP exchange, as text.
    ///
    /// # Panics
    /// When `url` is not an https URL with a host and port.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Response, String> {
        let (mut send, u) = self.connect(url).await?;
        let host = u.host_str().expect("a host").to_owned();
        let port = u.port_or_known_default().expect("a port");
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{host}:{port}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let resp = send
            .send_request(req.body(Full::new(bytes)).unwrap())
            .await
            .map_err(|e| format!("request to {url}: {e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body of {url}: {e}"))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
