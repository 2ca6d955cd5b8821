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
use chrono::{DateTime, Utc};
use http::StatusCode;
use residency_core::TenantStatus;
use residency_core::{RegionId, TenantId};
use residency_directory::{ApiKeyRecord, DEFAULT_API_KEY_ROLE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_uuid, AdminError, AdminState, Body, RequestId};
use residency_core::assertion::SYSTEM_ROLE;

type Result<T> = std::result::Result<T, AdminError>;

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "tenant_id": k.tenant_id,
        "name": k.name,
        "prefix": k.prefix,
        "role": k.role,
        "created_at": k.created_at.to_rfc3339(),
        "expires_at": k.expires_at.map(|t| t.to_rfc3339()),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
    })
}

/// `POST /admin/v1/tenants/{id}/api-keys` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    /// Role granted to requests made with the key (a system or custom role of the tenant);
    /// absent means [`DEFAULT_API_KEY_ROLE`].
    #[serde(default)]
    role: Option<String>,
    /// Optional expiry (RFC 3339).
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// `POST /admin/v1/tenants/{id}/api-keys` → 201 `{ id, api_key, prefix, ... }`.
pub async fn create(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    Body(b): Body<CreateKey>,
) -> Result<Response> {
    let id = parse_uuid(&id, "id")?;
    let n = b.name.chars().count();
    if n == 0 || n > 200 {
        return Err(AdminError::invalid("name", "must be 1-200 characters"));
    }
    let role = b.role.unwrap_or_else(|| DEFAULT_API_KEY_ROLE.to_owned());
    let role_ok = !role.is_empty()
        && role.len() <= 64
        && role.as_bytes()[0].is_ascii_lowercase()
        && role
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
    if !role_ok {
        return Err(AdminError::invalid(
            "role",
            "must be a role name (a-z, 0-9, '_' and '-', starting with a letter)",
        ));
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
    let tenant = store
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
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
        .create_api_key(&st.actor, id, &b.name, &role, b.expires_at)
        .await?;
    st.gateway.directory().refresh_api_key(&record.prefix).await;
    tracing::info!(tenant = %id, key_id = %record.id, actor = %st.actor, "api key created");
    let mut body = key_json(&record);
    // The only time the plaintext leaves the gateway; it is not logged.
    body["api_key"] = Value::String(plaintext);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /admin/v1/tenants/{id}/api-keys`: the tenant's keys without secrets or hashes.
pub async fn list(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    store
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
    let keys = store.list_api_keys(id).await?;
    Ok(Json(json!({
        "items": keys.iter().map(key_json).collect::<Vec<_>>(),
        "next_cursor": Value::Null,
    })))
}

/// `DELETE /admin/v1/tenants/{id}/api-keys/{key_id}`: revokes (idempotent), effective here
/// before the answer.
pub async fn revoke(
    State(st): State<Arc<AdminState>>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let key_id = parse_uuid(&key_id, "key_id")?;
    let record = st
        .store()?
        .revoke_api_key(&st.actor, id, key_id)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("api key"),
            other => other,
        })?;
    st.gateway.directory().refresh_api_key(&record.prefix).await;
    tracing::info!(tenant = %id, key_id = %key_id, actor = %st.actor, "api key revoked");
    Ok(Json(key_json(&record)))
}
