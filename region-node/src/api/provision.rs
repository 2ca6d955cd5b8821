//! `POST /internal/v1/provision`: creates a customer's home record in this region, its six
//! system roles and its first owner member. Called by the gateway's admin API with a system
//! assertion whose `tid` is the new customer. Idempotent: re-running changes nothing that
//! exists and answers 200 instead of 201.
//!
//! `POST /internal/v1/roles/check` answers whether a role exists for the tenant (the admin
//! API asks before it creates an API key naming that role).
//!
//! `POST /internal/v1/events/api-key-revoked` records an API key's revocation (done in the
//! directory by the admin API) in the tenant's home region: an `api_key.revoke` audit event
//! and the `api_key.revoked` webhook event, once per key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::provision::{
    KeyRevoked, KeyRevokedRecorded, ProvisionRequest, ProvisionResponse, RoleCheckRequest,
    RoleCheckResponse,
};
use serde_json::json;
use uuid::Uuid;

use super::extract::Body;
use super::text_field;
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::SystemRole;
use crate::state::AppState;

/// `POST /internal/v1/provision`.
pub(super) async fn provision(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<ProvisionRequest>,
) -> Result<(StatusCode, Json<ProvisionResponse>), ApiError> {
    text_field("name", &body.name, 1, 200)?;
    if let Some(o) = &body.owner {
        text_field("owner.subject", &o.subject, 1, 256)?;
        if !o.email.contains('@') {
            return Err(ApiError::invalid("owner.email", "must be an email address"));
        }
    }
    let region = st.region.id.to_string();
    let (created, out) = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                let created = tx
                    .execute(
                        "INSERT INTO tenants (tenant_id, name, region) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING",
                        &[&tx.tenant(), &body.name, &region],
                    )
                    .await?
                    == 1;
                for role in SystemRole::ALL {
                    let perms = crate::rbac::names(role.permissions());
                    tx.execute(
                        "INSERT INTO roles (tenant_id, id, name, description, is_system, permissions) \
                         VALUES ($1, $2, $3, $4, true, $5) \
                         ON CONFLICT (tenant_id, name) DO UPDATE SET permissions = EXCLUDED.permissions, \
                           description = EXCLUDED.description, updated_at = now() \
                         WHERE roles.is_system",
                        &[&tx.tenant(), &Uuid::now_v7(), &role.name(), &role.description(), &perms],
                    )
                    .await?;
                }
                if let Some(o) = &body.owner {
                    tx.execute(
                        "INSERT INTO members (tenant_id, id, subject, email, display_name, role_id) \
                         SELECT $1, $2, $3, $4, $5, id FROM roles WHERE name = 'owner' \
                         ON CONFLICT DO NOTHING",
                        &[&tx.tenant(), &Uuid::now_v7(), &o.subject, &o.email, &o.display_name.as_deref().unwrap_or_default()],
                    )
                    .await?;
                }
                if created {
                    tx.audit("tenant.provision", "tenant", &tx.tenant().to_string(), json!({ "region": region }))
                        .await?;
                }
                Ok((created, ProvisionResponse { tenant_id: tx.tenant(), region, created }))
            })
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

/// `POST /internal/v1/roles/check`: whether the role `name` (system or custom) exists for the
/// assertion's tenant, so the gateway's admin API can refuse an API key naming a role this
/// customer does not have. Answers 200 `{ "name", "exists" }`; a tenant not provisioned here
/// has no roles.
pub(super) async fn check_role(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<RoleCheckRequest>,
) -> Result<Json<RoleCheckResponse>, ApiError> {
    text_field("name", &body.name, 1, 64)?;
    let out = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                let exists: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM roles WHERE name = $1)",
                        &[&body.name],
                    )
                    .await?
                    .get(0);
                Ok(RoleCheckResponse {
                    name: body.name,
                    exists,
                })
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /internal/v1/events/api-key-revoked`: 404 when the tenant is not provisioned here,
/// 503 while it is frozen for a move (nothing is written to a tenant being copied away).
pub(super) async fn key_revoked(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<KeyRevoked>,
) -> Result<Json<KeyRevokedRecorded>, ApiError> {
    text_field("prefix", &body.prefix, 1, 64)?;
    text_field("name", &body.name, 0, 200)?;
    text_field("actor", &body.actor, 1, 256)?;
    let out = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                let frozen: Option<bool> = tx
                    .query_opt("SELECT frozen FROM tenants", &[])
                    .await?
                    .map(|r| r.get(0));
                match frozen {
                    None => return Err(ApiError::NotFound("tenant")),
                    Some(true) => return Err(ApiError::TenantMoving),
                    Some(false) => {}
                }
                let key = body.key_id.to_string();
                let seen: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE action = 'api_key.revoke' AND target_id = $1)",
                        &[&key],
                    )
                    .await?
                    .get(0);
                if seen {
                    return Ok(KeyRevokedRecorded {
                        recorded: false,
                        deliveries: 0,
                    });
                }
                tx.audit(
                    "api_key.revoke",
                    "api_key",
                    &key,
                    json!({ "prefix": body.prefix, "name": body.name, "revoked_by": body.actor }),
                )
                .await?;
                let n = crate::webhooks::emit(
                    tx,
                    crate::webhooks::EventType::ApiKeyRevoked,
                    json!({ "id": body.key_id, "prefix": body.prefix, "name": body.name }),
                )
                .await?;
                Ok(KeyRevokedRecorded {
                    recorded: true,
                    deliveries: u32::try_from(n).unwrap_or(u32::MAX),
                })
            })
        })
        .await?;
    Ok(Json(out))
}
