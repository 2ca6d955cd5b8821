//! The admin listener: operations endpoints and the admin API (SPEC §3.4, §6).
//!
//! - `GET /healthz` (process up), `GET /readyz` (config loaded and the directory can answer:
//!   loaded and not past `max_stale`), `GET /metrics` (Prometheus text), `GET /openapi.json`
//!   (this listener's OpenAPI 3.1 document, `admin/openapi.rs`). These need no token: probes and
//!   scrapers do not carry secrets, the pages hold no tenant data, and the listener binds to a
//!   private address (loopback by default).
//! - `/admin/v1/...` needs `Authorization: Bearer <admin token>` (compared in constant time:
//!   SHA-256 of both, then `subtle`); 401 otherwise. Organizations ([`orgs`]), tenants ([`tenants`]),
//!   API keys ([`keys`]), custom domains ([`domains`]), provisioning on the home region's node
//!   ([`provision`]), tenant moves between regions ([`moves`]), and the regions with their
//!   upstreams' health.
//!
//! Requests are parsed into and answers built from the wire types of
//! `residency_core::wire::admin`, which the CLI uses too.
//!
//! Every admin write is attributed to `admin:<token name>` in the directory history. Every
//! response carries `x-request-id`; problems carry the same id ([`error`]).

pub(crate) mod audit;
pub(crate) mod domains;
pub(crate) mod error;
pub(crate) mod keys;
pub(crate) mod moves;
mod openapi;
pub(crate) mod org_audit;
pub(crate) mod org_ownership;
pub(crate) mod org_tokens;
pub(crate) mod orgs;
pub(crate) mod principal;
pub(crate) mod provision;
pub(crate) mod signups;
mod status;
pub(crate) mod tenants;

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::digest::{digest, SHA256};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use residency_config::gateway::{DirectorySource, GatewayConfig, RegionEntry};
use residency_core::headers::REQUEST_ID;
use residency_core::wire::admin::{
    DirectoryHealth, HealthCheck, List, Readiness, Region as RegionView, Upstream,
};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::metrics as m;
use crate::proxy::Gateway;
pub(crate) use error::AdminError;
pub(crate) use principal::Principal;
use residency_http::extract::{BadInput, Rejects};
pub(crate) use residency_http::extract::{Body, Q};
use residency_http::json::JsonError;
use residency_http::{Problem, RequestId};

/// Largest admin request body.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the admin handlers share.
pub(crate) struct AdminState {
    gateway: Arc<Gateway>,
    /// SHA-256 of the admin token; `None` refuses every admin call.
    token_hash: Option<[u8; 32]>,
    actor: String,
    regions: Vec<RegionEntry>,
    prometheus: PrometheusHandle,
    provisioner: provision::Provisioner,
    audit: audit::Auditor,
    /// The directory as its writer role (`admin.directory_url`); every admin read and write
    /// goes through it, never through the public path's reader.
    writer: Option<residency_directory::Store>,
    /// The public listener's default certificate, whose names no customer may register.
    default_cert: Option<std::path::PathBuf>,
    /// Tenant move settings (`[admin] move_*`).
    moves: moves::MoveSettings,
    /// The gateway's shutdown: move drivers stop with it (resume continues them).
    shutdown: tokio_util::sync::CancellationToken,
    /// Where the tenants are listed from (the status page's customer counts).
    directory: DirectorySource,
    /// The status page's browser sessions.
    sessions: status::Sessions,
    /// The status page's request rates.
    rates: Arc<status::Rates>,
}

impl AdminState {
    /// Reads the admin token (file or config) and prepares the provisioning client.
    ///
    /// # Errors
    /// When `admin.token_file` cannot be read.
    pub(crate) fn new(
        cfg: &GatewayConfig,
        gateway: Arc<Gateway>,
        prometheus: PrometheusHandle,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let token = match (&cfg.admin.token_file, &cfg.admin.token) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(t)) => Some(t.expose().trim().to_owned()),
            (None, None) => None,
        };
        if token.is_none() {
            tracing::warn!("no admin token configured: the admin api refuses every call");
        }
        let writer = match (&cfg.directory, &cfg.admin.directory_url) {
            (DirectorySource::Postgres { .. }, Some(url)) => Some(
                residency_directory::Store::lazy(url.expose())
                    .map_err(|e| anyhow::anyhow!("admin.directory_url: {e}"))?,
            ),
            _ => None,
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(warn_about_directory_roles(
                gateway.directory().store().cloned(),
                writer.clone(),
            ));
        }
        Ok(Self {
            gateway,
            token_hash: token.map(|t| sha256(t.as_bytes())),
            actor: format!("admin:{}", cfg.admin.token_name),
            regions: cfg.regions.clone(),
            rates: status::Rates::start(prometheus.clone(), shutdown.clone()),
            prometheus,
            provisioner: provision::Provisioner::new(
                cfg.admin.provision_timeout,
                cfg.limits.upstream_connect_timeout,
                format!("admin:{}", cfg.admin.token_name),
            ),
            audit: audit::Auditor::new(cfg),
            writer,
            default_cert: cfg.tls.as_ref().map(|t| t.cert_file.clone()),
            moves: moves::MoveSettings {
                batch_rows: cfg.admin.move_batch_rows,
                purge_grace: cfg.admin.move_purge_grace,
                lease: cfg.admin.move_lease,
                hold_before_verify: cfg.admin.move_test_hold_before_verify,
            },
            shutdown,
            directory: cfg.directory.clone(),
            sessions: status::Sessions::default(),
        })
    }

    /// The DNS names of the default certificate as its file holds them now.
    fn default_names(&self) -> Vec<String> {
        self.default_cert
            .as_deref()
            .map(crate::tls::verify::names_in_pem)
            .unwrap_or_default()
    }

    /// The directory database as the writer role, or 501 for a file directory.
    fn store(&self) -> Result<&residency_directory::Store, AdminError> {
        self.writer.as_ref().ok_or(AdminError::ReadOnlyDirectory)
    }
}

/// Warns (once, at start) when the directory roles are more powerful than their jobs: a
/// reader that may write, or a reader or writer that is a superuser, owns the tables (the
/// owner) or may delete. Only a warning: the directory may be down at start, and refusing
/// to start on a later check would make the gateway's availability depend on it.
async fn warn_about_directory_roles(
    reader: Option<residency_directory::Store>,
    writer: Option<residency_directory::Store>,
) {
    for (what, key, store) in [
        ("reader", "directory.url", reader),
        ("writer", "admin.directory_url", writer),
    ] {
        let Some(store) = store else { continue };
        match store.role_powers().await {
            Ok(p) => {
                let too_much =
                    p.superuser || p.owns_tables || p.deletes || (what == "reader" && p.writes);
                if too_much {
                    tracing::warn!(
                        key,
                        role = %p.role,
                        superuser = p.superuser,
                        owns_tables = p.owns_tables,
                        writes = p.writes,
                        deletes = p.deletes,
                        "the directory {what} role has more privileges than it needs; \
                         give {key} the {what} role created by the directory bootstrap"
                    );
                }
            }
            Err(e) => tracing::debug!(key, error = %e, "directory role check skipped"),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// The admin listener's router.
pub(crate) fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route(
            "/admin/v1/organizations",
            post(orgs::create_org).get(orgs::list_orgs),
        )
        .route("/admin/v1/organizations/{id}", get(orgs::get_org))
        .route(
            "/admin/v1/organizations/{id}/tokens",
            post(org_tokens::create).get(org_tokens::list),
        )
        .route(
            "/admin/v1/organizations/{id}/tokens/{token_id}",
            axum::routing::delete(org_tokens::revoke),
        )
        .route(
            "/admin/v1/organizations/{id}/audit-events",
            get(org_audit::search),
        )
        .route(
            "/admin/v1/organizations/{id}/ownership-transfers",
            post(org_ownership::offer).get(org_ownership::list),
        )
        .route(
            "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}",
            axum::routing::delete(org_ownership::cancel),
        )
        .route(
            "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept",
            post(org_ownership::accept),
        )
        .route(
            "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline",
            post(org_ownership::decline),
        )
        .route("/admin/v1/signups", get(signups::list))
        .route("/admin/v1/signups/{id}", get(signups::get))
        .route("/admin/v1/signups/{id}/approve", post(signups::approve))
        .route("/admin/v1/signups/{id}/reject", post(signups::reject))
        .route(
            "/admin/v1/tenants",
            post(tenants::create_tenant).get(tenants::list_tenants),
        )
        .route(
            "/admin/v1/tenants/{id}",
            get(tenants::get_tenant).patch(tenants::update_tenant),
        )
        .route(
            "/admin/v1/tenants/{id}/provision",
            post(tenants::provision_tenant),
        )
        .route("/admin/v1/tenants/{id}/history", get(tenants::history))
        .route("/admin/v1/tenants/{id}/move", post(moves::start))
        .route("/admin/v1/tenants/{id}/moves", get(moves::list))
        .route("/admin/v1/moves/{move_id}", get(moves::get))
        .route("/admin/v1/moves/{move_id}/resume", post(moves::resume))
        .route("/admin/v1/moves/{move_id}/abort", post(moves::abort))
        .route(
            "/admin/v1/tenants/{id}/api-keys",
            post(keys::create).get(keys::list),
        )
        .route(
            "/admin/v1/tenants/{id}/api-keys/{key_id}",
            axum::routing::delete(keys::revoke),
        )
        .route(
            "/admin/v1/tenants/{id}/domains",
            post(domains::add).get(domains::list),
        )
        .route(
            "/admin/v1/tenants/{id}/domains/{hostname}",
            axum::routing::delete(domains::remove),
        )
        .route(
            "/admin/v1/tenants/{id}/domains/{hostname}/verify",
            post(domains::verify_domain),
        )
        .route("/admin/v1/domains/{hostname}", get(domains::get_domain))
        .route("/admin/v1/regions", get(regions))
        .route("/admin/v1/audit", get(audit::audit))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/admin/status", get(status::status))
        .route("/admin/status/audit", get(status::last_audit))
        .route("/admin/status/login", post(status::login))
        .route("/admin/status/logout", post(status::logout))
        .merge(api)
        .fallback(|| async { AdminError::NotFound("admin endpoint") })
        .layer(middleware::from_fn(finish))
        .with_state(state)
}

/// Outermost layer: request id in and out, problem rendering, metrics.
async fn finish(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let rid = RequestId::from_headers_or_new(req.headers());
    let id = rid.header_value().clone();
    req.extensions_mut().insert(rid);
    let mut resp = next.run(req).await;
    if let Some(problem) = resp.extensions_mut().remove::<Problem>() {
        resp = problem.render(&id).map(axum::body::Body::new);
    } else if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        // The router's own 405 has an empty body; answer it as a problem like the rest.
        let allow = resp.headers().get(http::header::ALLOW).cloned();
        resp = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
        .render(&id)
        .map(axum::body::Body::new);
        if let Some(allow) = allow {
            resp.headers_mut().insert(http::header::ALLOW, allow);
        }
    }
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0);
    let class = m::status_class(resp.status().as_u16());
    metrics::counter!(m::ADMIN_REQUESTS_TOTAL, "route" => route, "status_class" => class)
        .increment(1);
    tracing::debug!(
        request_id = id.to_str().unwrap_or_default(),
        route,
        status = resp.status().as_u16(),
        elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        "admin request"
    );
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// The matched route template, carried from [`authorize`] to [`finish`] for the metric label.
#[derive(Debug, Clone, Copy)]
struct RouteLabel(&'static str);

/// The admin API routes, as `'static` labels (the matched path is not `'static`).
const ROUTES: &[&str] = &[
    "/admin/v1/organizations",
    "/admin/v1/organizations/{id}",
    "/admin/v1/organizations/{id}/tokens",
    "/admin/v1/organizations/{id}/tokens/{token_id}",
    "/admin/v1/organizations/{id}/audit-events",
    "/admin/v1/organizations/{id}/ownership-transfers",
    "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}",
    "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept",
    "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline",
    "/admin/v1/signups",
    "/admin/v1/signups/{id}",
    "/admin/v1/signups/{id}/approve",
    "/admin/v1/signups/{id}/reject",
    "/admin/v1/tenants",
    "/admin/v1/tenants/{id}",
    "/admin/v1/tenants/{id}/provision",
    "/admin/v1/tenants/{id}/history",
    "/admin/v1/tenants/{id}/move",
    "/admin/v1/tenants/{id}/moves",
    "/admin/v1/moves/{move_id}",
    "/admin/v1/moves/{move_id}/resume",
    "/admin/v1/moves/{move_id}/abort",
    "/admin/v1/tenants/{id}/api-keys",
    "/admin/v1/tenants/{id}/api-keys/{key_id}",
    "/admin/v1/tenants/{id}/domains",
    "/admin/v1/tenants/{id}/domains/{hostname}",
    "/admin/v1/tenants/{id}/domains/{hostname}/verify",
    "/admin/v1/domains/{hostname}",
    "/admin/v1/regions",
    "/admin/v1/audit",
];

/// Authenticates every `/admin/v1` route once ([`Principal`]), checks what the route needs
/// of it ([`principal::access`]) and hands it to the handler as an extension.
async fn authorize(State(st): State<Arc<AdminState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()))
        .copied()
        .unwrap_or("unmatched");
    let need = principal::access(route, req.method());
    let who = match authenticate(&st, req.headers().get(AUTHORIZATION)).await {
        Ok(p) => principal::check(&p, need).map(|()| p),
        Err(e) => Err(e),
    };
    let mut resp = match who {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(RouteLabel(route));
    resp
}

/// The bearer token of an `Authorization` header.
fn bearer(header: Option<&HeaderValue>) -> Result<&str, AdminError> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(AdminError::Unauthorized(
            "send 'Authorization: Bearer <admin token>'",
        ))
}

/// Whether `presented` is the platform admin token, compared in constant time (hashing first
/// makes the comparison independent of the token's length too).
fn is_platform_token(st: &AdminState, presented: &str) -> bool {
    st.token_hash
        .as_ref()
        .is_some_and(|expected| bool::from(sha256(presented.as_bytes()).ct_eq(expected)))
}

/// The platform admin token only (the status page: organization credentials do not open it).
///
/// # Errors
/// [`AdminError::Unauthorized`] without a bearer token or with any other one.
pub(crate) fn check_token(st: &AdminState, header: Option<&HeaderValue>) -> Result<(), AdminError> {
    if is_platform_token(st, bearer(header)?) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized("the admin token is not valid"))
    }
}

/// The platform admin token (compared in constant time), else an organization token (looked
/// up in the directory on every request), else a JWT with organization claims.
async fn authenticate(
    st: &AdminState,
    header: Option<&HeaderValue>,
) -> Result<Principal, AdminError> {
    let presented = bearer(header)?;
    if is_platform_token(st, presented) {
        return Ok(Principal::Platform {
            actor: st.actor.clone(),
        });
    }
    let jwt_shaped = presented.bytes().filter(|b| *b == b'.').count() == 2;
    match (
        &st.writer,
        residency_directory::keys::split_org_token(presented),
    ) {
        (Some(store), Some(_)) => principal::org_token(store, presented).await,
        (Some(store), None) if jwt_shaped => {
            principal::org_jwt(st.gateway.jwt(), store, presented).await
        }
        _ if st.token_hash.is_none() => Err(AdminError::Unauthorized(
            "no admin token is configured on this gateway",
        )),
        _ => Err(AdminError::Unauthorized("the admin token is not valid")),
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /openapi.json`: this listener's OpenAPI 3.1 document (no token: it carries no data).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The admin API's OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Response {
    let mut resp = openapi::document().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `GET /readyz`: 200 once the configuration is loaded (always, when this serves) and the
/// directory can answer; 503 while it was never loaded or is older than `max_stale`.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "The directory was never loaded or is too stale", body = Readiness),
))]
async fn readyz(State(st): State<Arc<AdminState>>) -> Response {
    let d = st.gateway.directory().health();
    let ready = d.loaded && d.serving;
    let body = Readiness {
        ready,
        config: "loaded".to_owned(),
        directory: DirectoryHealth {
            source: d.source.to_owned(),
            loaded: d.loaded,
            fresh: d.stale_for.is_none(),
            stale_seconds: d.stale_for.map(|s| s.as_secs_f64()),
            serving: d.serving,
            tenants_cached: d.tenants,
            api_keys_cached: d.api_keys,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics_page(State(st): State<Arc<AdminState>>) -> Response {
    let mut resp = st.prometheus.render().into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// `GET /admin/v1/regions`: every configured region, its upstreams and their health.
#[utoipa::path(get, path = "/admin/v1/regions", tag = "regions",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every configured region", body = List<RegionView>),
        (status = 401, response = openapi::Unauthorized),
        (status = 403, response = openapi::Forbidden),
    ))]
async fn regions(State(st): State<Arc<AdminState>>) -> Json<List<RegionView>> {
    Json(List {
        items: region_views(&st),
    })
}

/// Every configured region with its upstreams' health (the regions endpoint, the status page).
fn region_views(st: &AdminState) -> Vec<RegionView> {
    st.regions
        .iter()
        .filter_map(|entry| {
            let region = st.gateway.regions().get(&entry.id)?;
            let upstreams: Vec<Upstream> = region
                .health()
                .into_iter()
                .map(|u| Upstream {
                    url: u.url,
                    available: u.available,
                    healthy: u.healthy,
                    ejected_for_ms: u.ejected_for_ms,
                    ejections: u.ejections,
                    last_check: u.last_check.map(|c| HealthCheck {
                        at: chrono::DateTime::from_timestamp(i64::try_from(c.at).unwrap_or(0), 0)
                            .map(|t| t.to_rfc3339()),
                        ok: c.ok,
                        detail: c.detail,
                    }),
                })
                .collect();
            Some(RegionView {
                id: entry.id.to_string(),
                display_name: entry.display_name.clone(),
                location: entry.location.clone(),
                available_upstreams: upstreams.iter().filter(|u| u.available).count(),
                upstreams,
            })
        })
        .collect()
}

/// A malformed query is a 400 naming the field `query`; a body is 415 without a JSON content
/// type, 413 over [`MAX_BODY_BYTES`], 400 for invalid JSON, 422 naming the field for a value
/// of the wrong shape.
impl Rejects for AdminState {
    type Rejection = AdminError;

    fn reject(bad: BadInput) -> AdminError {
        match bad {
            BadInput::Query(why) => AdminError::bad_request("query", why),
            BadInput::QueryField { field, detail } => AdminError::invalid(field, detail),
            BadInput::NotJson => AdminError::UnsupportedMediaType,
            BadInput::TooLarge => AdminError::PayloadTooLarge,
            BadInput::Json(e) => from_json(e),
        }
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }
}

/// Parses JSON with errors naming the field.
///
/// # Errors
/// 400 for syntax, 422 naming the field for shape.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    residency_http::json::parse(bytes).map_err(from_json)
}

fn from_json(e: JsonError) -> AdminError {
    match e {
        JsonError::Syntax(why) => {
            AdminError::bad_request("body", format!("not valid json ({why})"))
        }
        JsonError::Shape { field, detail } => AdminError::invalid(field, detail),
    }
}

/// Parses a UUID from a path or query, naming `field` when it is not one.
///
/// # Errors
/// 400 naming `field`.
pub(crate) fn parse_uuid(raw: &str, field: &str) -> Result<uuid::Uuid, AdminError> {
    uuid::Uuid::parse_str(raw).map_err(|_| AdminError::bad_request(field, "must be a uuid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(bad: BadInput) -> Problem {
        <AdminState as Rejects>::reject(bad).problem()
    }

    #[test]
    fn bad_input_is_answered_as_before_the_kit() {
        let q = problem(BadInput::Query("unknown field `x`".into()));
        assert_eq!(
            (q.status, q.kind, q.detail.as_str(), q.field.as_deref()),
            (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "query: unknown field `x`",
                Some("query")
            )
        );
        let p = problem(BadInput::NotJson);
        assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let p = problem(BadInput::TooLarge);
        assert_eq!(p.status, StatusCode::PAYLOAD_TOO_LARGE);
        let p = problem(BadInput::Json(JsonError::Syntax("eof".into())));
        assert_eq!(
            (p.status, p.detail.as_str(), p.field.as_deref()),
            (
                StatusCode::BAD_REQUEST,
                "body: not valid json (eof)",
                Some("body")
            )
        );
        let p = problem(BadInput::Json(JsonError::Shape {
            field: "tier".into(),
            detail: "unknown variant".into(),
        }));
        assert_eq!(
            (p.status, p.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("tier"))
        );
    }
}
