//! The admin listener: `/healthz` (process up), `/readyz` (configuration, keys and directory
//! loaded, which is true once this listener serves), and `/metrics` (Prometheus text).
//!
//! Not built yet: the admin API (`/admin/v1/...`, bearer admin token). Bind this listener to a
//! private address: `/metrics` is served without a credential, as Prometheus scrapes expect.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;

/// Answers one admin request.
#[must_use]
pub fn handle<B>(req: &Request<B>, prometheus: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz" | "/readyz") => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(prometheus.render()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
