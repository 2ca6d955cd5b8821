//! API keys in the admin API: only for tenants on a tier that allows them (`scale`,
//! `enterprise`); every key names a role of its tenant (default `developer`; any other name is
//! checked on the tenant's home node, `system` is reserved); the plaintext is returned once, at creation, and stored nowhere (the
//! directory keeps a SHA-256 and a public prefix); lists never show secrets; a revocation is
//! effective at this gateway before the response is sent and at every replica within a
//! second (`NOTIFY`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use http::StatusCode;
use residency_core::wire::admin::{ApiKey, CreateApiKey, CreatedApiKey, Page};
use residency_core::wire::provision::{is_role_name, KeyRevoked, ROLE_NAME_RULE};
use residency_core::TenantStatus;
use residency_core::{RegionId, TenantId};
use residency_directory::DEFAULT_API_KEY_ROLE;

use super::{parse_uuid, tenants, AdminError, AdminState, Body, Principal, RequestId};
use residency_core::assertion::SYSTEM_ROLE;

type Result<T> = std::result::Result<T, AdminError>;

/// `POST /admin/v1/tenants/{id}/api-keys` → 201 `{ id, api_key, prefix, ... }`.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/api-keys", tag = "api-keys",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `api_key` is shown only here", body = CreatedApiKey),
        super::openapi::BodyRefusals,
        (status = 502, response = super::openapi::BadGateway),
    ))]
pub(crate) async fn create(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<CreateApiKey>,
) -> Result<Response> {
    let id = parse_uuid(&id, "id")?;
    let n = b.name.chars().count();
    if n == 0 || n > 200 {
        return Err(AdminError::invalid("name", "must be 1-200 characters"));
    }
    let role = b.role.unwrap_or_else(|| DEFAULT_API_KEY_ROLE.to_owned());
    // The node's rule for role names: a longer name can never exist there.
    if !is_role_name(&role) {
        return Err(AdminError::invalid("role", ROLE_NAME_RULE));
    }
    if role == SYSTEM_ROLE {
        return Err(AdminError::invalid(
            "role",
            "is reserved for internal calls",
        ));
    }
    if b.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(AdminError::invalid("expires_at", "must be in the future"));
    }
    let store = st.store()?;
    let tenant = tenants::existing(store, &p, id).await?;
    if tenant.status == TenantStatus::Deleted {
        return Err(AdminError::NotFound("tenant"));
    }
    if !tenant.tier.allows_api_keys() {
        return Err(AdminError::Forbidden {
            kind: "tier_forbids_api_keys",
            detail: format!(
                "api keys are only available on the scale and enterprise tiers; this tenant is on {}",
                tenant.tier.as_str()
            ),
        });
    }
    // The default is a system role every tenant has; any other name must exist on the
    // tenant's home node (system or custom role). Never created unchecked: an unreachable
    // home region is a 503.
    if role != DEFAULT_API_KEY_ROLE {
        let region = RegionId::new(&tenant.region)
            .map_err(|e| AdminError::Internal(format!("stored region: {e}")))?;
        let exists = st
            .provisioner
            .role_exists(
                st.gateway.regions(),
                &region,
                TenantId::from_uuid(id),
                &role,
                rid.header_value(),
            )
            .await?;
        if !exists {
            return Err(AdminError::invalid(
                "role",
                format!("this customer has no role {role:?}"),
            ));
        }
    }
    let (record, plaintext) = store
        .create_api_key(&p.actor(), id, &b.name, &role, b.expires_at)
        .await?;
    st.gateway.directory().refresh_api_key(&record.prefix).await;
    tracing::info!(tenant = %id, key_id = %record.id, actor = %p.actor(), "api key created");
    // The only time the plaintext leaves the gateway; it is not logged.
    let body = CreatedApiKey {
        key: record,
        api_key: plaintext,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /admin/v1/tenants/{id}/api-keys`: the tenant's keys without secrets or hashes.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/api-keys", tag = "api-keys",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Every key of the tenant (one page)", body = Page<ApiKey>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Page<ApiKey>>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    tenants::existing(store, &p, id).await?;
    Ok(Json(Page {
        items: store.list_api_keys(id).await?,
        next_cursor: None,
    }))
}

/// `DELETE /admin/v1/tenants/{id}/api-keys/{key_id}`: revokes (idempotent), effective here
/// before the answer.
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}/api-keys/{key_id}", tag = "api-keys",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "Tenant id"),
        ("key_id" = Uuid, Path, description = "Key id"),
    ),
    responses(
        (status = 200, description = "Revoked (idempotent)", body = ApiKey),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn revoke(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Extension(p): Extension<Principal>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<ApiKey>> {
    let id = parse_uuid(&id, "id")?;
    let key_id = parse_uuid(&key_id, "key_id")?;
    let store = st.store()?;
    let tenant = tenants::existing(store, &p, id).await?;
    let record = store
        .revoke_api_key(&p.actor(), id, key_id)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("api key"),
            other => other,
        })?;
    st.gateway.directory().refresh_api_key(&record.prefix).await;
    tracing::info!(tenant = %id, key_id = %key_id, actor = %p.actor(), "api key revoked");
    // The revocation is effective above, in the directory. The home node records it (audit
    // event, `api_key.revoked` webhook) once per key; when the home region cannot be reached
    // now, the key stays revoked and the event is missing (logged here).
    let event = KeyRevoked {
        key_id,
        prefix: record.prefix.clone(),
        name: record.name.clone(),
        actor: p.actor(),
    };
    let recorded = match RegionId::new(&tenant.region) {
        Ok(region) => st
            .provisioner
            .key_revoked(
                st.gateway.regions(),
                &region,
                TenantId::from_uuid(id),
                &event,
                rid.header_value(),
            )
            .await
            .map(|_| ()),
        Err(e) => Err(AdminError::Internal(format!("stored region: {e}"))),
    };
    if let Err(e) = recorded {
        tracing::warn!(tenant = %id, key_id = %key_id, error = %e, "api key revoked, but its home region did not record the event");
    }
    Ok(Json(record))
}
