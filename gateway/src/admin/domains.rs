//! Custom domains in the admin API: a customer's own hostnames, each with the name of its
//! certificate under `tls.domains_dir` (`cert_ref`; private keys never enter the directory).
//!
//! - `POST /admin/v1/tenants/{id}/domains`: registers a hostname (lowercase DNS name, no
//!   wildcard, no IP address, no trailing dot, not a name of the gateway's default
//!   certificate; 422 naming `hostname` otherwise), unique across all customers (409 that
//!   does not say who holds it), and verifies its certificate at once: `active` when it is
//!   good, `pending` when it is not there yet, `failed` with the reason otherwise;
//! - `GET …/domains`: the customer's domains;
//! - `POST …/domains/{hostname}/verify`: checks the certificate again (after cert-manager
//!   issued or renewed it) and stores the outcome;
//! - `DELETE …/domains/{hostname}`: removes it (200 with the domain in state `removed`);
//! - `GET /admin/v1/domains/{hostname}`: which customer a hostname belongs to (404 when it is
//!   not registered or was removed).
//!
//! Every change is a directory write attributed to `admin:<token name>` (the history trigger
//! appends it to the tenant's history), re-read into this gateway at once and announced to
//! every other gateway by `NOTIFY`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use residency_core::domain::{is_cert_ref, parse_hostname, CERT_REF_RULE};
use residency_core::wire::admin::{AddDomain, Domain, Page};
use residency_core::TenantStatus;
use residency_directory::DomainVerdict;

use super::{parse_uuid, tenants, AdminError, AdminState, Body, Principal};
use crate::tls::verify;
use axum::Extension;

type Result<T> = std::result::Result<T, AdminError>;

/// The certificate verdict for `hostname`, read off the async threads.
async fn check(st: &AdminState, hostname: &str, cert_ref: &str) -> Result<DomainVerdict> {
    let dir = st.gateway.directory().domains().cert_dir().cloned();
    let (hostname, cert_ref) = (hostname.to_owned(), cert_ref.to_owned());
    tokio::task::spawn_blocking(move || {
        verify::check(
            dir.as_ref(),
            &hostname,
            &cert_ref,
            chrono::Utc::now().timestamp(),
        )
    })
    .await
    .map_err(|e| AdminError::Internal(format!("certificate check: {e}")))
}

/// A hostname from a path: one that cannot be registered is simply not found.
fn path_hostname(raw: &str) -> Result<String> {
    parse_hostname(raw).map_err(|_| AdminError::NotFound("domain"))
}

fn not_found_domain(e: residency_directory::StoreError) -> AdminError {
    match AdminError::from(e) {
        AdminError::NotFound(_) => AdminError::NotFound("domain"),
        other => other,
    }
}

/// `POST /admin/v1/tenants/{id}/domains` → 201 with the domain and its verified state.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/domains", tag = "domains",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = AddDomain,
    responses(
        (status = 201, description = "Registered; `state` says whether it is served yet", body = Domain),
        super::openapi::BodyRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn add(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<AddDomain>,
) -> Result<Response> {
    let id = parse_uuid(&id, "id")?;
    let hostname = match parse_hostname(&b.hostname) {
        Ok(h) if !b.hostname.ends_with('.') => h,
        _ => {
            return Err(AdminError::invalid(
                "hostname",
                residency_core::domain::HOSTNAME_RULE,
            ))
        }
    };
    if verify::covers(&st.default_names(), &hostname) {
        return Err(AdminError::invalid(
            "hostname",
            "is a name of the gateway's own certificate",
        ));
    }
    let cert_ref = b.cert_ref.unwrap_or_else(|| hostname.clone());
    if !is_cert_ref(&cert_ref) {
        return Err(AdminError::invalid("cert_ref", CERT_REF_RULE));
    }
    let store = st.store()?;
    let tenant = tenants::existing(store, &p, id).await?;
    if tenant.status == TenantStatus::Deleted {
        return Err(AdminError::NotFound("tenant"));
    }
    let verdict = check(&st, &hostname, &cert_ref).await?;
    let domain = store
        .add_domain(&p.actor(), id, &hostname, &cert_ref, &verdict)
        .await
        .map_err(|e| match e {
            residency_directory::StoreError::Conflict(detail) => AdminError::Conflict {
                kind: "domain_taken",
                detail,
                field: Some("hostname".to_owned()),
            },
            residency_directory::StoreError::NotFound => AdminError::NotFound("tenant"),
            other => other.into(),
        })?;
    st.gateway.directory().refresh_domain(&hostname).await;
    tracing::info!(tenant = %id, hostname, state = domain.state.as_str(), actor = %p.actor(), "custom domain added");
    Ok((StatusCode::CREATED, Json(domain)).into_response())
}

/// `GET /admin/v1/tenants/{id}/domains`: the tenant's domains (removed ones are not listed).
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/domains", tag = "domains",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Every domain of the tenant (one page)", body = Page<Domain>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Page<Domain>>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    tenants::existing(store, &p, id).await?;
    Ok(Json(Page {
        items: store.list_domains(id).await?,
        next_cursor: None,
    }))
}

/// `POST /admin/v1/tenants/{id}/domains/{hostname}/verify`: checks the certificate again.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/domains/{hostname}/verify", tag = "domains",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "Tenant id"),
        ("hostname" = String, Path, description = "The domain's hostname"),
    ),
    responses(
        (status = 200, description = "The domain with the outcome of the check", body = Domain),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn verify_domain(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, hostname)): Path<(String, String)>,
) -> Result<Json<Domain>> {
    let id = parse_uuid(&id, "id")?;
    let hostname = path_hostname(&hostname)?;
    let store = st.store()?;
    in_scope(store, &p, id).await?;
    let current = store
        .list_domains(id)
        .await?
        .into_iter()
        .find(|d| d.hostname == hostname)
        .ok_or(AdminError::NotFound("domain"))?;
    let verdict = check(&st, &hostname, &current.cert_ref).await?;
    let domain = store
        .set_domain_state(&p.actor(), id, &hostname, &verdict)
        .await
        .map_err(not_found_domain)?;
    st.gateway.directory().refresh_domain(&hostname).await;
    tracing::info!(tenant = %id, hostname, state = domain.state.as_str(), actor = %p.actor(), "custom domain verified");
    Ok(Json(domain))
}

/// `DELETE /admin/v1/tenants/{id}/domains/{hostname}`: removes the domain; effective here
/// before the answer and on every gateway within a second.
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}/domains/{hostname}", tag = "domains",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "Tenant id"),
        ("hostname" = String, Path, description = "The domain's hostname"),
    ),
    responses(
        (status = 200, description = "Removed: the domain in state `removed`", body = Domain),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn remove(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, hostname)): Path<(String, String)>,
) -> Result<Json<Domain>> {
    let id = parse_uuid(&id, "id")?;
    let hostname = path_hostname(&hostname)?;
    let store = st.store()?;
    in_scope(store, &p, id).await?;
    let domain = store
        .remove_domain(&p.actor(), id, &hostname)
        .await
        .map_err(not_found_domain)?;
    st.gateway.directory().refresh_domain(&hostname).await;
    tracing::info!(tenant = %id, hostname, actor = %p.actor(), "custom domain removed");
    Ok(Json(domain))
}

/// `GET /admin/v1/domains/{hostname}`: the registered domain, whichever customer holds it.
#[utoipa::path(get, path = "/admin/v1/domains/{hostname}", tag = "domains",
    security(("admin_token" = [])),
    params(("hostname" = String, Path, description = "The hostname")),
    responses(
        (status = 200, description = "The domain and its customer", body = Domain),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::Internal),
        (status = 501, response = super::openapi::NotImplemented),
        (status = 503, response = super::openapi::Unavailable),
    ))]
pub(crate) async fn get_domain(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(hostname): Path<String>,
) -> Result<Json<Domain>> {
    let hostname = path_hostname(&hostname)?;
    let store = st.store()?;
    let domain = store
        .domain(&hostname)
        .await?
        .filter(|d| d.state != residency_core::domain::DomainState::Removed)
        .ok_or(AdminError::NotFound("domain"))?;
    // Another organization's domain is not found, like one nobody registered.
    in_scope(store, &p, domain.tenant_id.as_uuid()).await?;
    Ok(Json(domain))
}

/// 404 `domain` unless `p` sees the tenant `id` (the same answer as for an unknown domain).
async fn in_scope(store: &residency_directory::Store, p: &Principal, id: uuid::Uuid) -> Result<()> {
    match tenants::existing(store, p, id).await {
        Ok(_) => Ok(()),
        Err(AdminError::NotFound(_)) => Err(AdminError::NotFound("domain")),
        Err(e) => Err(e),
    }
}
