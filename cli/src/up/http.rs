//! A minimal plain-HTTP JSON client for loopback calls: readiness probes and the region nodes'
//! provisioning and customer API while seeding. Every call has a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The client (cheap to clone).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Parsed body.
    pub body: Value,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Http {
    /// A new client.
    #[must_use]
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET url`, true when it answers 200 within `timeout`.
    pub async fn ok(&self, url: &str, timeout: Duration) -> bool {
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
    pub async fn json(
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
