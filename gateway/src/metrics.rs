//! Every metric the gateway records, declared in one place, and the Prometheus recorder.
//!
//! Labels are bounded: `region` (from config), `status_class`, `reason`/`error_kind` (fixed
//! enums), `result`. Never a tenant, user, key, address or raw path.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `region` (`none` before routing) and `status_class` (`2xx`...).
pub(crate) const REQUESTS_TOTAL: &str = "gateway_requests_total";
/// Time from request head to response head, by `region`.
pub(crate) const REQUEST_DURATION_SECONDS: &str = "gateway_request_duration_seconds";
/// Refused credentials, by `reason` ([`crate::auth::AuthError::metric_label`]).
pub(crate) const AUTH_FAILURES_TOTAL: &str = "gateway_auth_failures_total";
/// Verified-token cache lookups, by `result` (`hit`, `miss`).
pub const TOKEN_CACHE_TOTAL: &str = "gateway_token_cache_total";
/// Failed upstream calls, by `region` and `error_kind` (`connect`, `timeout`, `io`,
/// `no_upstream`).
pub(crate) const UPSTREAM_ERRORS_TOTAL: &str = "gateway_upstream_errors_total";
/// JWKS fetches, by `result` (`ok`, `error`).
pub(crate) const JWKS_FETCHES_TOTAL: &str = "gateway_jwks_fetches_total";
/// Client connections currently open.
pub(crate) const CONNECTIONS_OPEN: &str = "gateway_connections_open";
/// Client connections closed as soon as they were accepted, by `reason` (`per_ip_limit`: the
/// client address had `limits.max_connections_per_ip` open already).
pub(crate) const CONNECTIONS_REFUSED_TOTAL: &str = "gateway_connections_refused_total";
/// Directory cache lookups, by `result` (`hit`, `miss`, `negative`, `too_stale`).
pub(crate) const DIRECTORY_LOOKUPS_TOTAL: &str = "gateway_directory_lookups_total";
/// Seconds the directory data has been possibly out of date (0 while `LISTEN` is connected
/// and the last full load succeeded).
pub(crate) const DIRECTORY_STALENESS_SECONDS: &str = "gateway_directory_staleness_seconds";
/// Directory loads, by `kind` (`full`, `tenant`, `api_key`, `domain`) and `result` (`ok`,
/// `error`).
pub(crate) const DIRECTORY_LOADS_TOTAL: &str = "gateway_directory_loads_total";
/// Tenants cached (negative entries included), set once a second; in bounded mode at most
/// `directory.capacity` rows plus the negative entries.
pub(crate) const DIRECTORY_CACHED_TENANTS: &str = "gateway_directory_cached_tenants";
/// Tenants evicted to keep a bounded directory within `directory.capacity`.
pub(crate) const DIRECTORY_EVICTIONS_TOTAL: &str = "gateway_directory_evictions_total";
/// Tenant misses that joined a directory query already in flight for the same tenant
/// instead of issuing their own (single-flight).
pub(crate) const DIRECTORY_MISS_JOINS_TOTAL: &str = "gateway_directory_miss_joins_total";
/// Requests refused because of a custom domain, by `reason` (`tenant_mismatch`: a credential
/// of another customer on a customer's hostname, 403; `misdirected`: the TLS server name and
/// the `Host` name different hostnames, one of them a customer's, 421).
pub(crate) const DOMAIN_REFUSALS_TOTAL: &str = "gateway_domain_refusals_total";
/// Active health checks of upstreams, by `region` and `result` (`ok`, `error`).
pub(crate) const HEALTH_CHECKS_TOTAL: &str = "gateway_health_checks_total";
/// Upstreams taken out of rotation, by `region` and `cause` (`connect`, `health_check`).
pub(crate) const UPSTREAM_EJECTIONS_TOTAL: &str = "gateway_upstream_ejections_total";
/// Admin API requests, by `route` (matched template) and `status_class`.
pub(crate) const ADMIN_REQUESTS_TOTAL: &str = "gateway_admin_requests_total";
/// Tenant move steps run by this gateway's move drivers, by the `phase` they ran in
/// (`planned`, …, `done`), plus `failed` and `rolled_back` outcomes; never labelled by tenant.
pub(crate) const TENANT_MOVE_PHASES_TOTAL: &str = "gateway_tenant_move_phases_total";
/// Rows copied by this gateway's move drivers (target node inserts, batch by batch).
pub(crate) const TENANT_MOVE_ROWS_TOTAL: &str = "gateway_tenant_move_rows_copied_total";
/// Rate-limit decisions, by `decision` (`allowed`, `limited`) and `backend` (`local`,
/// `redis`: the backend that decided, so Redis fallbacks count as `local`).
pub const RATELIMIT_DECISIONS_TOTAL: &str = "gateway_ratelimit_decisions_total";
/// Requests limited locally although `backend = "redis"`, by `reason` (`timeout`, `tls`: the
/// TLS handshake with a `rediss://` server failed, `error`, `cooldown`: skipped for a second
/// after a failure).
pub const RATELIMIT_FALLBACK_TOTAL: &str = "gateway_ratelimit_fallback_total";

/// Latency buckets in seconds: the gateway adds tens of microseconds, nodes take milliseconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Several gateways in one process (tests) share the recorder, so counters add up across them.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION_SECONDS.to_owned()),
                    DURATION_BUCKETS,
                )
                // Static, valid bucket list: cannot fail.
                .expect("non-empty bucket list");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding binary's); then our
            // handle renders an empty page and the embedder's recorder gets the metrics.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `status_class` label of a status code.
#[must_use]
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
