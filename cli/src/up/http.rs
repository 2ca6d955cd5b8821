//! A minimal JSON client for loopback calls: readiness probes and the region nodes'
//! provisioning and customer API while seeding. Every call has a timeout. `http://` URLs
//! (identity provider, gateway admin) are plain; `https://` URLs (the nodes) trust only the
//! stack's dev CA and present the gateway's client certificate, since the nodes require one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{DefaultServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::material;

/// The client (cheap to clone).
#[derive(Clone)]
pub(super) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub(super) struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Parsed body.
    pub body: Value,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Http {
    /// A client trusting the dev CA of the stack in `dir` and presenting the gateway's
    /// client certificate over `https`.
    ///
    /// # Errors
    /// When the CA or the client certificate cannot be read.
    pub(super) fn new(dir: &Path) -> anyhow::Result<Self> {
        let read = |rel: &str| {
            let path = dir.join(rel);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(material::CA_CERT)?) {
            roots.add(cert.context(material::CA_CERT)?)?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(material::GATEWAY_CLIENT_CERT)?)
            .collect::<Result<Vec<_>, _>>()
            .context(material::GATEWAY_CLIENT_CERT)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(material::GATEWAY_CLIENT_KEY)?).map_err(|e| {
                anyhow::anyhow!("{}: {e}", dir.join(material::GATEWAY_CLIENT_KEY).display())
            })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = HttpsConnector::new(
            http,
            tls,
            false,
            Arc::new(DefaultServerNameResolver::default()),
        );
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `GET url`, true when it answers 200 within `timeout`.
    pub(super) async fn ok(&self, url: &str, timeout: Duration) -> bool {
        let Ok(req) = Request::get(url).body(Full::new(Bytes::new())) else {
            return false;
        };
        matches!(
            tokio::time::timeout(timeout, self.client.request(req)).await,
            Ok(Ok(resp)) if resp.status() == StatusCode::OK
        )
    }

    /// Sends `body` (JSON, when given) with `headers` and reads the reply.
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub(super) async fn json(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes))?;
        let call = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Reply {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            })
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| anyhow::anyhow!("{method} {url} timed out after {TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("{method} {url}: {e:#}"))
    }
}
