//! The target node's one call to the source node during a move: `POST` an export request
//! with the export assertion the admin minted for the source region, and read the batch.
//!
//! Rows travel only on this connection, straight from the source region's node to the target
//! region's node; nothing is written to disk on the way. Plain `http` is accepted only to a
//! loopback address (tests, a single-host stack); anything else must be `https`, trusted
//! through `[moves] peer_ca_file` only (no system roots), with the optional client
//! certificate of `[moves]` for sources that require one.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{DefaultServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_config::node::MovesConfig;
use residency_core::headers::{ASSERTION, REQUEST_ID};
use residency_core::wire::moves::node::{ExportBatch, ExportRequest, EXPORT_PATH};
use residency_core::wire::ProblemDetails;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::ApiError;

/// The largest export answer read (a batch of a few thousand rows is far below).
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// How long one export call may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// The client a target node calls source nodes with, built once at start from `[moves]`.
pub(crate) struct Peers {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `peer_ca_file` is configured: `https` sources can be verified.
    https: bool,
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: holds no pem certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // Only the path and the parser's error kind reach a message, never the key's bytes.
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{key} {}: holds no pem private key", path.display()),
        e => format!("{key} {}: {e}", path.display()),
    })
}

impl Peers {
    /// The client of `[moves]`.
    ///
    /// # Errors
    /// A message naming the key whose file is unreadable or unusable.
    pub(crate) fn new(cfg: &MovesConfig) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls protocol versions: {e}"))?;
        let mut roots = RootCertStore::empty();
        if let Some(ca) = &cfg.peer_ca_file {
            for cert in certs("moves.peer_ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("moves.peer_ca_file {}: {e}", ca.display()))?;
            }
        }
        let with_roots = builder.with_root_certificates(roots);
        let mut config = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(cert), Some(key)) => with_roots
                .with_client_auth_cert(
                    certs("moves.client_cert_file", cert)?,
                    private_key("moves.client_key_file", key)?,
                )
                .map_err(|e| {
                    format!("moves.client_cert_file and moves.client_key_file do not form a usable pair: {e}")
                })?,
            _ => with_roots.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        // The HTTPS wrapper decides by the scheme; the TCP connector must accept `https`.
        http.enforce_http(false);
        let connector = HttpsConnector::new(
            http,
            Arc::new(config),
            false,
            Arc::new(DefaultServerNameResolver::default()),
        );
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            https: cfg.peer_ca_file.is_some(),
        })
    }

    /// Whether `url` may be called: `https` when `peer_ca_file` is configured, `http` to a
    /// loopback host only.
    ///
    /// # Errors
    /// 422 naming `source.url`.
    pub(crate) fn check_url(&self, url: &str) -> Result<http::Uri, ApiError> {
        let uri = check_url(url)?;
        if uri.scheme_str() == Some("https") && !self.https {
            return Err(ApiError::invalid(
                "source.url",
                "an https source needs [moves] peer_ca_file on this node",
            ));
        }
        Ok(uri)
    }
}

/// The shape rules of a source URL: `https`, or `http` to a loopback host.
///
/// # Errors
/// 422 naming `source.url`.
fn check_url(url: &str) -> Result<http::Uri, ApiError> {
    let bad = |why: &str| ApiError::invalid("source.url", why.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| bad("not a url"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("http") if loopback => Ok(uri),
        Some("http") => Err(bad("plain http is allowed to a loopback address only")),
        Some("https") => Ok(uri),
        _ => Err(bad("must be an http(s) url")),
    }
}

/// Asks the source node at `base` for one batch.
///
/// # Errors
/// [`ApiError::Peer`] (502) when the source cannot be reached or answers with an error (its
/// problem detail, cut short, is kept); [`ApiError::Unexpected`] for an answer of the wrong
/// shape.
pub(crate) async fn export(
    peers: &Peers,
    base: &http::Uri,
    token: &str,
    request_id: &str,
    body: &ExportRequest,
) -> Result<ExportBatch, ApiError> {
    let uri = format!(
        "{}://{}{EXPORT_PATH}",
        base.scheme_str().unwrap_or("http"),
        base.authority()
            .map(http::uri::Authority::as_str)
            .unwrap_or_default()
    );
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Unexpected(e.into()))?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .header(ASSERTION, token)
        .header(REQUEST_ID, request_id)
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| ApiError::invalid("source.url", e.to_string()))?;
    let call = async {
        let resp = peers.client.request(req).await?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BATCH_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    };
    let (status, body) = match tokio::time::timeout(EXPORT_TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            return Err(ApiError::Peer(format!(
                "the source node could not be reached: {e}"
            )))
        }
        Err(_) => {
            return Err(ApiError::Peer(
                "the source node did not answer in time".into(),
            ))
        }
    };
    if !status.is_success() {
        let detail = serde_json::from_slice::<ProblemDetails>(&body)
            .map(|p| p.detail.chars().take(200).collect::<String>())
            .unwrap_or_default();
        return Err(ApiError::Peer(format!(
            "the source node answered {}: {detail}",
            status.as_u16()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("export answer not understood: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_text_only_on_loopback() {
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://[::1]:8080").is_ok());
        assert!(check_url("http://localhost:1").is_ok());
        assert!(check_url("http://10.0.0.1:8080").is_err());
        assert!(check_url("ftp://127.0.0.1").is_err());
        let plain = Peers::new(&MovesConfig::default()).unwrap();
        assert!(plain.check_url("https://us.example:8443").is_err());
        assert!(plain.check_url("http://127.0.0.1:1").is_ok());
    }
}
