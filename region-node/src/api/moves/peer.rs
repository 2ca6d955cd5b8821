//! The target node's one call to the source node during a move: `POST` an export request
//! with the export assertion the admin minted for the source region, and read the batch.
//!
//! Rows travel only on this connection, straight from the source region's node to the target
//! region's node; nothing is written to disk on the way. Plain `http` is accepted only to a
//! loopback address (tests, a single-host stack); anything else must be `https`, which this
//! node does not speak to peers yet, so it is refused rather than sent in clear text.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_core::headers::{ASSERTION, REQUEST_ID};
use residency_core::wire::moves::node::{ExportBatch, ExportRequest, EXPORT_PATH};
use residency_core::wire::ProblemDetails;

use crate::error::ApiError;

/// The largest export answer read (a batch of a few thousand rows is far below).
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// How long one export call may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `url` may be called: `http` to a loopback host only.
///
/// # Errors
/// 422 naming `source.url`.
pub(crate) fn check_url(url: &str) -> Result<http::Uri, ApiError> {
    let bad = |why: &str| ApiError::invalid("source.url", why.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| bad("not a url"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("http") if loopback => Ok(uri),
        Some("http") => Err(bad("plain http is allowed to a loopback address only")),
        Some("https") => Err(bad(
            "https between region nodes is not supported by this node yet",
        )),
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
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let call = async {
        let resp = client.request(req).await?;
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
    }
}
