//! Metric names of the region node, declared in one place, and the HTTP metrics middleware.
//!
//! Labels are bounded: `route` is the matched route template (or `unmatched`), never a raw
//! path; tenant ids are never labels.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests served, by `method`, `route`, `status_class`.
pub(crate) const REQUESTS: &str = "node_requests_total";
/// Request latency in seconds, by `method`, `route`.
pub(crate) const DURATION: &str = "node_request_duration_seconds";
/// Refused assertions by `reason`.
pub(crate) const ASSERTION_FAILURES: &str = "node_assertion_failures_total";
/// Assertions addressed to another region (refused with 421).
pub(crate) const MISDIRECTED: &str = "node_misdirected_requests_total";
/// Error responses by `kind`.
pub(crate) const ERRORS: &str = "node_errors_total";

/// Installs the process-wide Prometheus recorder once and returns its handle. Several nodes
/// in one process (tests) share it.
pub(crate) fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding process); then this
            // handle renders an empty page rather than failing the node.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Records request count and latency per matched route.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let class = match resp.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(REQUESTS, "method" => method.clone(), "route" => route.clone(), "status_class" => class)
        .increment(1);
    metrics::histogram!(DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
