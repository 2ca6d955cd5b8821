//! `GET /admin/v1/audit`: the placement and posture audit of SPEC §3.5, run by the gateway
//! with the same engine and the same JSON as `residency audit --json`
//! ([`residency_audit::run_audit`], schema version 1).
//!
//! The input is built from what the gateway already has: its regions (id, display name,
//! location, upstreams), the `[audit]` section (each region database's **auditor** URL and
//! app role), the directory's tenants (the Postgres directory through the gateway's own
//! store, or the directory file, read afresh), and routing evidence from the gateway's own
//! counters (requests per region since start) and each upstream's `/metrics` (refused
//! misroutes), fetched with the region's TLS settings.
//!
//! Answers:
//! - `200` with the report whenever one was produced, and `x-audit-outcome: clean`,
//!   `violations` or `could-not-run` (a region database could not be audited: the report
//!   says which and why, exactly as the CLI's exit code 2 with its partial report);
//! - `404` problem `audit_not_configured` without `[audit]`;
//! - `429` problem `audit_in_progress` (+ `Retry-After`) while another audit runs: at most
//!   one at a time, so admin calls cannot pile scans onto the region databases;
//! - `503` problem `audit_unavailable` when the directory cannot be read (no report can be
//!   built without the tenants' home regions);
//! - `504` problem `audit_timeout` if the run outlives its bound (`audit.timeout` per region,
//!   plus a margin).
//!
//! The run happens in a spawned task that holds the single permit: a client that disconnects
//! does not cancel a scan half way, and a new audit cannot start before it ends.
//!
//! Security: the admin process holds only the auditor credentials (`SELECT (tenant_id)` and
//! the catalog), never an app or owner role; the public request path never touches them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_audit::{routing, AuditInput, Outcome, RegionInput, RoutingEvidence};
use residency_config::gateway::{AuditSection, DirectorySource, GatewayConfig};
use residency_core::TenantEntry;
use tokio::sync::Semaphore;

use residency_http::Problem;

use super::AdminState;
use crate::proxy::upstream::Region;

/// The directory's moves in flight, for the placement rules (none with a file directory or
/// when they cannot be read: the audit is then stricter, never laxer).
async fn moves_in_flight(st: &AdminState) -> Vec<residency_audit::MoveInFlight> {
    let Ok(store) = st.store() else {
        return Vec::new();
    };
    match store.moves_in_flight().await {
        Ok(moves) => moves
            .into_iter()
            .filter_map(|m| {
                residency_audit::MoveInFlight::from_record(
                    residency_core::TenantId::from_uuid(m.tenant_id),
                    &m.from,
                    &m.to,
                    m.phase,
                )
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "audit: cannot read the moves in flight");
            Vec::new()
        }
    }
}

/// The response header naming the audit's outcome.
pub(crate) const OUTCOME_HEADER: &str = "x-audit-outcome";
/// Time added to `audit.timeout` for the directory read and evidence before the whole run is
/// abandoned.
const MARGIN: Duration = Duration::from_secs(15);
/// Time one upstream's `/metrics` may take: evidence is best effort.
const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest node metrics page read.
const MAX_PAGE_BYTES: usize = 8 << 20;

/// What the audit endpoint needs, prepared at start.
pub(crate) struct Auditor {
    plan: Option<Plan>,
    running: Arc<Semaphore>,
    /// The last report this gateway produced, for the status page.
    last: std::sync::Mutex<Option<LastAudit>>,
}

/// The last audit run on this gateway, as the status page shows it.
#[derive(Debug, Clone)]
pub(crate) struct LastAudit {
    /// Unix seconds of its end.
    pub(crate) at: u64,
    /// `clean`, `violations` or `could-not-run`.
    pub(crate) outcome: &'static str,
    /// One line: the verdict ([`residency_audit::render::verdict`]) and what it counts.
    pub(crate) verdict: String,
    /// The self-contained HTML report ([`residency_audit::render::html::render`]).
    pub(crate) html: String,
}

struct Plan {
    regions: Vec<RegionInput>,
    timeout: Duration,
    directory: DirectorySource,
}

impl Auditor {
    /// The audit of `cfg`'s regions, or an endpoint that answers 404 without `[audit]`.
    #[must_use]
    pub(crate) fn new(cfg: &GatewayConfig) -> Self {
        let plan = cfg.audit.as_ref().map(|a: &AuditSection| Plan {
            // Config validation guarantees an entry per region.
            regions: cfg
                .regions
                .iter()
                .filter_map(|r| {
                    let entry = a.regions.get(&r.id)?;
                    Some(RegionInput {
                        id: r.id.clone(),
                        display_name: r.display_name.clone(),
                        location: r.location.clone(),
                        auditor_url: entry.database_url.expose().as_str().to_owned(),
                        app_role: entry.app_role.clone(),
                        upstreams: r.upstreams.clone(),
                        routing: None,
                    })
                })
                .collect(),
            timeout: a.timeout,
            directory: cfg.directory.clone(),
        });
        Self {
            plan,
            running: Arc::new(Semaphore::new(1)),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether `[audit]` is configured.
    pub(crate) fn configured(&self) -> bool {
        self.plan.is_some()
    }

    /// The last audit's result, if one ran since start.
    pub(crate) fn last(&self) -> Option<LastAudit> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, report: &residency_audit::Report, outcome: &'static str) {
        let last = LastAudit {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            outcome,
            verdict: match report.outcome() {
                Outcome::Clean => "CLEAN: no violation".to_owned(),
                Outcome::Violations(n) => format!("VIOLATIONS: {n} found"),
                Outcome::Incomplete(failed) => format!(
                    "INCOMPLETE: could not audit {}",
                    failed
                        .iter()
                        .map(|(r, _)| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            html: residency_audit::render::html::render(report),
        };
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
    }
}

fn problem(status: StatusCode, kind: &'static str, detail: &str, retry: Option<u64>) -> Response {
    let mut resp = status.into_response();
    let p = Problem::new(status, kind, detail);
    resp.extensions_mut().insert(match retry {
        Some(secs) => p.with_retry_after(secs),
        None => p,
    });
    resp
}

/// `GET /admin/v1/audit`.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The report (also when a region could not be audited); \
            `x-audit-outcome`: `clean`, `violations` or `could-not-run`", body = residency_audit::Report,
            headers(("x-audit-outcome" = String, description = "clean, violations or could-not-run"))),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 500, response = super::openapi::Internal),
        (status = 503, response = super::openapi::Unavailable),
        (status = 504, response = super::openapi::GatewayTimeout),
    ))]
pub(crate) async fn audit(State(st): State<Arc<AdminState>>) -> Response {
    let Some(plan) = &st.audit.plan else {
        return problem(
            StatusCode::NOT_FOUND,
            "audit_not_configured",
            "this gateway has no [audit] section: add audit.regions.<region id> with database_url (the region's read-only auditor role) and app_role for every region",
            None,
        );
    };
    let Ok(permit) = Arc::clone(&st.audit.running).try_acquire_owned() else {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "audit_in_progress",
            "an audit is already running on this gateway; retry when it has finished",
            Some(5),
        );
    };
    let tenants = match tenants(&st, &plan.directory).await {
        Ok(t) => t,
        Err(why) => {
            tracing::warn!(error = %why, "audit: cannot read the directory");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the directory could not be read, so tenants' home regions are unknown; retry later",
                Some(5),
            );
        }
    };
    let mut regions = plan.regions.clone();
    evidence(&st, &mut regions).await;
    let input = AuditInput {
        regions,
        tenants,
        region_timeout: plan.timeout,
        moves: moves_in_flight(&st).await,
    };
    let task = tokio::spawn(async move {
        let _permit = permit;
        residency_audit::run_audit(&input, &residency_audit::no_progress).await
    });
    let abort = task.abort_handle();
    let report = match tokio::time::timeout(plan.timeout + MARGIN, task).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit task failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the gateway could not handle the request",
                None,
            );
        }
        Err(_) => {
            abort.abort();
            return problem(
                StatusCode::GATEWAY_TIMEOUT,
                "audit_timeout",
                "the audit did not finish in time; raise audit.timeout or retry",
                None,
            );
        }
    };
    let outcome = match report.outcome() {
        Outcome::Clean => "clean",
        Outcome::Violations(n) => {
            tracing::warn!(violations = n, "audit found violations");
            "violations"
        }
        Outcome::Incomplete(failed) => {
            for (region, why) in &failed {
                tracing::warn!(%region, error = %why, "audit could not audit a region");
            }
            "could-not-run"
        }
    };
    st.audit.remember(&report, outcome);
    let mut resp = (StatusCode::OK, Json(report)).into_response();
    let h = resp.headers_mut();
    h.insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Every tenant of the directory: from the gateway's Postgres store, or the file read now.
pub(crate) async fn tenants(
    st: &AdminState,
    source: &DirectorySource,
) -> Result<Vec<TenantEntry>, String> {
    match source {
        DirectorySource::File { path } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                residency_audit::sources::load_directory_file(&path)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        }
        DirectorySource::Postgres { timeout, .. } => {
            let store = st
                .gateway
                .directory()
                .store()
                .ok_or("the directory store is not loaded")?;
            // A full read can take longer than one lookup; allow a few lookup timeouts.
            tokio::time::timeout(*timeout * 5, store.tenants())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())
        }
    }
}

/// Fills each region's routing evidence: requests the gateway answered for it since start
/// (its own counter), and refused misroutes and reachability from each upstream's `/metrics`
/// over the region's own TLS settings. Anything unreadable is left out and said in `source`.
async fn evidence(st: &AdminState, regions: &mut [RegionInput]) {
    let page = st.prometheus.render();
    let requests = routing::sum_by_label(&page, routing::GATEWAY_REQUESTS, "region");
    let fetches = regions.iter().map(|r| async {
        match st.gateway.regions().get(&r.id) {
            Some(region) => node_evidence(region).await,
            None => (None, 0, vec!["region not loaded".to_owned()]),
        }
    });
    let nodes = futures_util::future::join_all(fetches).await;
    for (r, (misroutes, reachable, notes)) in regions.iter_mut().zip(nodes) {
        let mut source = vec!["requests from the gateway's counters since start".to_owned()];
        source.extend(notes);
        r.routing = Some(RoutingEvidence {
            requests_total: Some(requests.get(r.id.as_str()).copied().unwrap_or(0)),
            misroutes_refused: misroutes,
            upstreams_reachable: Some(reachable),
            source: source.join("; "),
        });
    }
}

/// `(misroutes refused, upstreams that answered, notes)` of one region's nodes.
async fn node_evidence(region: &Region) -> (Option<u64>, usize, Vec<String>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(region.tls().connector(EVIDENCE_TIMEOUT));
    let mut misroutes: Option<u64> = None;
    let mut reachable = 0;
    let mut notes = Vec::new();
    for up in region.upstreams() {
        let url = format!("{}/metrics", up.url());
        match tokio::time::timeout(EVIDENCE_TIMEOUT, fetch(&client, &url)).await {
            Ok(Ok(text)) => {
                reachable += 1;
                let n = routing::sum(&text, routing::NODE_MISROUTES).unwrap_or(0);
                misroutes = Some(misroutes.unwrap_or(0) + n);
            }
            Ok(Err(e)) => notes.push(format!("{url}: {e}")),
            Err(_) => notes.push(format!("{url}: no answer within {EVIDENCE_TIMEOUT:?}")),
        }
    }
    if reachable > 0 {
        notes.insert(0, "misroutes from the nodes' /metrics".to_owned());
    }
    (misroutes, reachable, notes)
}

async fn fetch(
    client: &Client<crate::proxy::tls::NodeConnector, Empty<Bytes>>,
    url: &str,
) -> Result<String, String> {
    let req = Request::get(url)
        .header(http::header::USER_AGENT, "residency-gateway-audit")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        if crate::proxy::tls::is_tls_error(&e) {
            "tls error".to_owned()
        } else {
            "unreachable".to_owned()
        }
    })?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status().as_u16()));
    }
    let body = Limited::new(resp.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
