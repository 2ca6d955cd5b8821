//! Organization admin tokens in the admin API: the platform admin (or the organization's
//! `owner`) creates them with a role (`owner`, `admin`, `member`; an org principal never
//! above its own), the secret `rog_<prefix>_<secret>` is returned once and stored nowhere
//! (the directory keeps a SHA-256 and the public prefix), lists never show secrets, and a
//! revocation is effective at once on every gateway (tokens are looked up per request,
//! [`super::principal`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use residency_core::wire::admin::{CreateOrgToken, CreatedOrgToken, OrgToken, Page};

use super::orgs::visible_org;
use super::principal::role_required;
use super::tenants::text;
use super::{parse_uuid, AdminError, AdminState, Body, Principal};

type Result<T> = std::result::Result<T, AdminError>;

/// `POST /admin/v1/organizations/{id}/tokens` → 201 `{ id, secret, prefix, role, ... }`.
#[utoipa::path(post, path = "/admin/v1/organizations/{id}/tokens", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id")),
    request_body = CreateOrgToken,
    responses(
        (status = 201, description = "Created; `secret` is shown only here", body = CreatedOrgToken),
        super::openapi::BodyRefusals,
    ))]
pub(crate) async fn create(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<CreateOrgToken>,
) -> Result<Response> {
    let id = visible_org(&p, &id)?;
    text("name", &b.name, 200)?;
    if !p.may_grant(b.role) {
        if let Principal::Org { role, .. } = &p {
            return Err(role_required(*role, b.role));
        }
    }
    let actor = p.actor();
    let (token, secret) = st
        .store()?
        .create_org_token(&actor, id, &b.name, b.role)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("organization"),
            other => other,
        })?;
    tracing::info!(org = %id, token_id = %token.id, role = b.role.as_str(), actor = %actor, "organization token created");
    // The only time the secret leaves the gateway; it is not logged.
    let body = CreatedOrgToken { token, secret };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /admin/v1/organizations/{id}/tokens`: the organization's tokens, without secrets.
#[utoipa::path(get, path = "/admin/v1/organizations/{id}/tokens", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Every token of the organization (one page)", body = Page<OrgToken>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Page<OrgToken>>> {
    let id = visible_org(&p, &id)?;
    let store = st.store()?;
    store
        .org(residency_core::OrgId::from_uuid(id))
        .await?
        .ok_or(AdminError::NotFound("organization"))?;
    Ok(Json(Page {
        items: store.list_org_tokens(id).await?,
        next_cursor: None,
    }))
}

/// `DELETE /admin/v1/organizations/{id}/tokens/{token_id}`: revokes (idempotent), effective
/// on every gateway before the answer. An org `owner` may revoke any token of its
/// organization, its own included.
#[utoipa::path(delete, path = "/admin/v1/organizations/{id}/tokens/{token_id}", tag = "organizations",
    security(("admin_token" = [])),
    params(
        ("id" = Uuid, Path, description = "Organization id"),
        ("token_id" = Uuid, Path, description = "Token id"),
    ),
    responses(
        (status = 200, description = "Revoked (idempotent)", body = OrgToken),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn revoke(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<Json<OrgToken>> {
    let id = visible_org(&p, &id)?;
    let token_id = parse_uuid(&token_id, "token_id")?;
    let actor = p.actor();
    let token = st
        .store()?
        .revoke_org_token(&actor, id, token_id)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("token"),
            other => other,
        })?;
    tracing::info!(org = %id, token_id = %token_id, actor = %actor, "organization token revoked");
    Ok(Json(token))
}
