//! Metric names of the region node, declared in one place, and the HTTP metrics middleware.
//!
//! Labels are bounded: `route` is the matched route template (or `unmatched`), never a raw
//! path; tenant ids are never labels.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use residency_http::prom::{self, BuildInfo, Declared, Kind};

/// Requests served, by `method`, `route`, `status_class`.
pub(crate) const REQUESTS: &str = "residency_node_requests_total";
/// Request latency in seconds, by `method`, `route`.
pub(crate) const DURATION: &str = "residency_node_request_duration_seconds";
/// Refused assertions by `reason`.
pub(crate) const ASSERTION_FAILURES: &str = "residency_node_assertion_failures_total";
/// Assertions addressed to another region (refused with 421).
pub(crate) const MISDIRECTED: &str = "residency_node_misdirected_requests_total";
/// Error responses by `kind`.
pub(crate) const ERRORS: &str = "residency_node_errors_total";
/// Time of one tenant transaction, pool checkout to commit or rollback, by `scope`
/// (`customer`, `system`) and `outcome` (`commit`, `error`: rolled back).
pub(crate) const DB_TRANSACTION_SECONDS: &str = "residency_node_db_transaction_duration_seconds";

/// Webhook delivery attempts by `outcome` (`delivered`, `retry`, `dead`, `gone`: a 410
/// disabled the subscription, `failed`: the subscription was disabled before the attempt).
pub(crate) const WEBHOOK_ATTEMPTS: &str = "residency_node_webhook_attempts_total";
/// Time of one webhook delivery attempt, resolve to last response byte.
pub(crate) const WEBHOOK_ATTEMPT_SECONDS: &str = "residency_node_webhook_attempt_duration_seconds";
/// Jobs due and not held by a worker, by `kind` (`execution`), sampled every few seconds.
pub(crate) const JOB_QUEUE_DEPTH: &str = "residency_node_job_queue_depth";
/// Time of one workflow step's work, by `kind` (`action`, `transform`, `condition`, `delay`)
/// and `outcome` (`succeeded`, `retried`, `failed`).
pub(crate) const WORKFLOW_STEP_SECONDS: &str = "residency_node_workflow_step_duration_seconds";

/// Every metric above with its type and `# HELP` text: described at [`recorder`], checked by
/// the tests (prefix, suffixes) and by the Grafana dashboard's test (`deploy/grafana`).
pub const DECLARED: &[Declared] = &[
    Declared {
        name: REQUESTS,
        kind: Kind::Counter,
        help: "Requests the node served, by method, route template and status class",
    },
    Declared {
        name: DURATION,
        kind: Kind::Histogram,
        help: "Request latency, by method and route template",
    },
    Declared {
        name: ASSERTION_FAILURES,
        kind: Kind::Counter,
        help: "Gateway assertions the node refused, by reason",
    },
    Declared {
        name: MISDIRECTED,
        kind: Kind::Counter,
        help: "Requests refused with 421 because their assertion named another region",
    },
    Declared {
        name: ERRORS,
        kind: Kind::Counter,
        help: "Error responses, by kind",
    },
    Declared {
        name: DB_TRANSACTION_SECONDS,
        kind: Kind::Histogram,
        help: "Time of one tenant transaction from pool checkout to commit or rollback, by scope and outcome",
    },
    Declared {
        name: WEBHOOK_ATTEMPTS,
        kind: Kind::Counter,
        help: "Webhook delivery attempts, by outcome (delivered, retry, dead, gone, failed)",
    },
    Declared {
        name: WEBHOOK_ATTEMPT_SECONDS,
        kind: Kind::Histogram,
        help: "Time of one webhook delivery attempt, from resolving the target to the last response byte",
    },
    Declared {
        name: JOB_QUEUE_DEPTH,
        kind: Kind::Gauge,
        help: "Jobs of the region's queue that are due and not held by a worker, by kind",
    },
    Declared {
        name: WORKFLOW_STEP_SECONDS,
        kind: Kind::Histogram,
        help: "Time of one workflow step's work (a connector call, a transform), by step kind and outcome",
    },
];

/// Installs the process-wide Prometheus recorder once ([`residency_http::prom::install`]: help
/// text, `_seconds` buckets, `residency_build_info{component="node"}`, upkeep every 5 s) and
/// returns its handle. Several nodes in one process (tests) share it.
pub(crate) fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            prom::install(
                DECLARED,
                BuildInfo {
                    component: "node",
                    version: env!("CARGO_PKG_VERSION"),
                },
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_declared_by_the_conventions() {
        assert_eq!(prom::violations(DECLARED), Vec::<String>::new());
    }
}
