//! Every metric the gateway records, declared in one place, and the Prometheus recorder.
//!
//! Labels are bounded: `region` (from config), `status_class`, `reason`/`error_kind` (fixed
//! enums), `result`. Never a tenant, user, key, address or raw path.

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusHandle;
use residency_http::prom::{self, BuildInfo};
pub use residency_http::prom::{Declared, Kind, BUILD_INFO};

/// Requests answered, by `region` (`none` before routing) and `status_class` (`2xx`...).
pub(crate) const REQUESTS_TOTAL: &str = "residency_gateway_requests_total";
/// Time from request head to response head, by `region`.
pub(crate) const REQUEST_DURATION_SECONDS: &str = "residency_gateway_request_duration_seconds";
/// Refused credentials, by `reason` ([`crate::auth::AuthError::metric_label`]).
pub(crate) const AUTH_FAILURES_TOTAL: &str = "residency_gateway_auth_failures_total";
/// Verified-token cache lookups, by `result` (`hit`, `miss`).
pub const TOKEN_CACHE_TOTAL: &str = "residency_gateway_token_cache_total";
/// Failed upstream calls, by `region` and `error_kind` (`connect`, `timeout`, `io`,
/// `no_upstream`).
pub(crate) const UPSTREAM_ERRORS_TOTAL: &str = "residency_gateway_upstream_errors_total";
/// JWKS fetches, by `result` (`ok`, `error`).
pub(crate) const JWKS_FETCHES_TOTAL: &str = "residency_gateway_jwks_fetches_total";
/// Client connections currently open.
pub(crate) const CONNECTIONS_OPEN: &str = "residency_gateway_connections_open";
/// Open client connections that are parked (idle HTTP/1, holding no HTTP buffers).
pub(crate) const CONNECTIONS_PARKED: &str = "residency_gateway_connections_parked";
/// Client connections closed as soon as they were accepted, by `reason` (`per_ip_limit`: the
/// client address had `limits.max_connections_per_ip` open already).
pub(crate) const CONNECTIONS_REFUSED_TOTAL: &str = "residency_gateway_connections_refused_total";
/// Directory cache lookups, by `result` (`hit`, `miss`, `negative`, `too_stale`).
pub(crate) const DIRECTORY_LOOKUPS_TOTAL: &str = "residency_gateway_directory_lookups_total";
/// Seconds the directory data has been possibly out of date (0 while `LISTEN` is connected
/// and the last full load succeeded).
pub(crate) const DIRECTORY_STALENESS_SECONDS: &str =
    "residency_gateway_directory_staleness_seconds";
/// Directory loads, by `kind` (`full`, `tenant`, `api_key`, `domain`) and `result` (`ok`,
/// `error`).
pub(crate) const DIRECTORY_LOADS_TOTAL: &str = "residency_gateway_directory_loads_total";
/// Tenants cached (negative entries included), set once a second; in bounded mode at most
/// `directory.capacity` rows plus the negative entries.
pub(crate) const DIRECTORY_CACHED_TENANTS: &str = "residency_gateway_directory_cached_tenants";
/// Tenants evicted to keep a bounded directory within `directory.capacity`.
pub(crate) const DIRECTORY_EVICTIONS_TOTAL: &str = "residency_gateway_directory_evictions_total";
/// Tenant misses that joined a directory query already in flight for the same tenant
/// instead of issuing their own (single-flight).
pub(crate) const DIRECTORY_MISS_JOINS_TOTAL: &str = "residency_gateway_directory_miss_joins_total";
/// Requests refused because of a custom domain, by `reason` (`tenant_mismatch`: a credential
/// of another customer on a customer's hostname, 403; `misdirected`: the TLS server name and
/// the `Host` name different hostnames, one of them a customer's, 421).
pub(crate) const DOMAIN_REFUSALS_TOTAL: &str = "residency_gateway_domain_refusals_total";
/// Active health checks of upstreams, by `region` and `result` (`ok`, `error`).
pub(crate) const HEALTH_CHECKS_TOTAL: &str = "residency_gateway_health_checks_total";
/// Upstreams taken out of rotation, by `region` and `cause` (`connect`, `health_check`).
pub(crate) const UPSTREAM_EJECTIONS_TOTAL: &str = "residency_gateway_upstream_ejections_total";
/// Admin API requests, by `route` (matched template) and `status_class`.
pub(crate) const ADMIN_REQUESTS_TOTAL: &str = "residency_gateway_admin_requests_total";
/// Public signups, by `outcome` (`approved`, `provisional`, `manual_review`, `rejected`,
/// `rate_limited`).
pub(crate) const SIGNUPS_TOTAL: &str = "residency_gateway_signups_total";
/// Regions left out of an organization audit search's answer (no answer in time, or an
/// error), by `region`.
pub(crate) const ORG_AUDIT_INCOMPLETE_TOTAL: &str =
    "residency_gateway_org_audit_incomplete_regions_total";
/// Tenant move steps run by this gateway's move drivers, by the `phase` they ran in
/// (`planned`, …, `done`), plus `failed` and `rolled_back` outcomes; never labelled by tenant.
pub(crate) const TENANT_MOVE_PHASES_TOTAL: &str = "residency_gateway_tenant_move_phases_total";
/// Rows copied by this gateway's move drivers (target node inserts, batch by batch).
pub(crate) const TENANT_MOVE_ROWS_TOTAL: &str = "residency_gateway_tenant_move_rows_copied_total";
/// Rate-limit decisions, by `decision` (`allowed`, `limited`) and `backend` (`local`,
/// `redis`: the backend that decided, so Redis fallbacks count as `local`).
pub const RATELIMIT_DECISIONS_TOTAL: &str = "residency_gateway_ratelimit_decisions_total";
/// Requests limited locally although `backend = "redis"`, by `reason` (`timeout`, `tls`: the
/// TLS handshake with a `rediss://` server failed, `error`, `cooldown`: skipped for a second
/// after a failure).
pub const RATELIMIT_FALLBACK_TOTAL: &str = "residency_gateway_ratelimit_fallback_total";

/// Every metric above with its type and `# HELP` text: described at [`install`], checked by
/// the tests (prefix, suffixes) and by the Grafana dashboard's test (`deploy/grafana`).
pub const DECLARED: &[Declared] = &[
    Declared {
        name: REQUESTS_TOTAL,
        kind: Kind::Counter,
        help: "Requests the gateway answered, by region (none before routing) and status class",
    },
    Declared {
        name: REQUEST_DURATION_SECONDS,
        kind: Kind::Histogram,
        help: "Time from request head to response head, by region",
    },
    Declared {
        name: AUTH_FAILURES_TOTAL,
        kind: Kind::Counter,
        help: "Refused credentials, by reason",
    },
    Declared {
        name: TOKEN_CACHE_TOTAL,
        kind: Kind::Counter,
        help: "Verified-token cache lookups, by result (hit, miss)",
    },
    Declared {
        name: UPSTREAM_ERRORS_TOTAL,
        kind: Kind::Counter,
        help: "Failed upstream calls, by region and error kind (connect, timeout, io, no_upstream)",
    },
    Declared {
        name: JWKS_FETCHES_TOTAL,
        kind: Kind::Counter,
        help: "JWKS fetches, by result (ok, error)",
    },
    Declared {
        name: CONNECTIONS_OPEN,
        kind: Kind::Gauge,
        help: "Client connections currently open on the public listener",
    },
    Declared {
        name: CONNECTIONS_PARKED,
        kind: Kind::Gauge,
        help: "Open client connections parked while idle (HTTP/1, no HTTP buffers held)",
    },
    Declared {
        name: CONNECTIONS_REFUSED_TOTAL,
        kind: Kind::Counter,
        help: "Client connections closed as soon as they were accepted, by reason",
    },
    Declared {
        name: DIRECTORY_LOOKUPS_TOTAL,
        kind: Kind::Counter,
        help: "Directory cache lookups, by result (hit, miss, negative, too_stale)",
    },
    Declared {
        name: DIRECTORY_STALENESS_SECONDS,
        kind: Kind::Gauge,
        help: "Seconds the directory data has possibly been out of date (0 while LISTEN is connected and the last full load succeeded)",
    },
    Declared {
        name: DIRECTORY_LOADS_TOTAL,
        kind: Kind::Counter,
        help: "Directory loads, by kind (full, tenant, api_key, domain) and result (ok, error)",
    },
    Declared {
        name: DOMAIN_REFUSALS_TOTAL,
        kind: Kind::Counter,
        help: "Requests refused because of a custom domain, by reason (tenant_mismatch, misdirected)",
    },
    Declared {
        name: HEALTH_CHECKS_TOTAL,
        kind: Kind::Counter,
        help: "Active health checks of upstreams, by region and result (ok, error)",
    },
    Declared {
        name: UPSTREAM_EJECTIONS_TOTAL,
        kind: Kind::Counter,
        help: "Upstreams taken out of rotation, by region and cause (connect, health_check)",
    },
    Declared {
        name: DIRECTORY_CACHED_TENANTS,
        kind: Kind::Gauge,
        help: "Tenants cached (negative entries included); in bounded mode at most directory.capacity rows plus the negative entries",
    },
    Declared {
        name: DIRECTORY_EVICTIONS_TOTAL,
        kind: Kind::Counter,
        help: "Tenants evicted to keep a bounded directory within directory.capacity",
    },
    Declared {
        name: DIRECTORY_MISS_JOINS_TOTAL,
        kind: Kind::Counter,
        help: "Tenant misses that joined a directory query already in flight for the same tenant (single-flight)",
    },
    Declared {
        name: ADMIN_REQUESTS_TOTAL,
        kind: Kind::Counter,
        help: "Admin listener requests, by route template and status class",
    },
    Declared {
        name: ORG_AUDIT_INCOMPLETE_TOTAL,
        kind: Kind::Counter,
        help: "Regions left out of an organization audit search's answer (no answer in time or an error), by region",
    },
    Declared {
        name: SIGNUPS_TOTAL,
        kind: Kind::Counter,
        help: "Public signups, by outcome (approved, provisional, manual_review, rejected, rate_limited)",
    },
    Declared {
        name: TENANT_MOVE_PHASES_TOTAL,
        kind: Kind::Counter,
        help: "Tenant move steps run by this gateway, by phase (and failed, rolled_back outcomes)",
    },
    Declared {
        name: TENANT_MOVE_ROWS_TOTAL,
        kind: Kind::Counter,
        help: "Rows copied to target nodes by this gateway's tenant moves",
    },
    Declared {
        name: RATELIMIT_DECISIONS_TOTAL,
        kind: Kind::Counter,
        help: "Rate-limit decisions, by decision (allowed, limited) and the backend that decided (local, redis)",
    },
    Declared {
        name: RATELIMIT_FALLBACK_TOTAL,
        kind: Kind::Counter,
        help: "Requests limited locally although the backend is redis, by reason (timeout, tls, error, cooldown)",
    },
];

/// Installs the process-wide Prometheus recorder once ([`residency_http::prom::install`]: help
/// text, `_seconds` buckets, `residency_build_info{component="gateway"}`, upkeep every 5 s) and
/// returns its handle.
///
/// Several gateways in one process (tests) share the recorder, so counters add up across them.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            prom::install(
                DECLARED,
                BuildInfo {
                    component: "gateway",
                    version: env!("CARGO_PKG_VERSION"),
                },
            )
        })
        .clone()
}

/// The request counters and latency histogram of one `region` label, registered once so the
/// response filter does an atomic add and a histogram record per request, never a registry
/// look-up (which hashes the labels and takes a shard lock).
pub(crate) struct RequestMetrics {
    /// `REQUESTS_TOTAL` by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    by_class: [metrics::Counter; 5],
    duration: metrics::Histogram,
}

impl RequestMetrics {
    /// The handles of `region` (`none` for requests refused before routing).
    pub(crate) fn new(region: &metrics::SharedString) -> Self {
        let by_class = STATUS_CLASSES.map(|class| {
            metrics::counter!(REQUESTS_TOTAL, "region" => region.clone(), "status_class" => class)
        });
        Self {
            by_class,
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, "region" => region.clone()),
        }
    }

    /// Counts one answered request and its time from arrival to response head.
    pub(crate) fn record(&self, status: u16, elapsed: std::time::Duration) {
        self.by_class[class_index(status)].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// The `status_class` label values, in the order [`class_index`] numbers them.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The position of a status code's class in [`STATUS_CLASSES`].
fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The `status_class` label of a status code.
#[must_use]
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[class_index(status)]
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

    #[test]
    fn every_metric_is_declared_by_the_conventions() {
        assert_eq!(prom::violations(DECLARED), Vec::<String>::new());
    }
}
