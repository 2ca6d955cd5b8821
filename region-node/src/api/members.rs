//! `/v1/members`: people (subjects of the identity provider) with a role in this customer.
//!
//! A caller assigns only roles whose permissions are a subset of its own, and changes the role
//! of (or removes) only members whose current role it could grant
//! ([`crate::db::tenant_tx::Tx::require_grantable`]); nobody changes their own role. Only an
//! owner may grant the owner role or change an owner; the last owner cannot be removed or
//! demoted.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{CreateMember, Member, UpdateMember};
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, Body, P};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::PageQuery;
use super::resource::{Key, Order, Resource};
use super::text_field;
use crate::db::tenant_tx::{stored_permissions, Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::webhooks::{self, EventType};

pub(crate) const MEMBER: Resource<Member> = Resource {
    what: "member",
    table: "members",
    key: Key::Id,
    columns: "members.id, members.subject, members.email, members.display_name, r.name AS role, \
              members.created_at, members.updated_at",
    joins: "JOIN roles r ON r.tenant_id = members.tenant_id AND r.id = members.role_id",
    order: Order::Asc,
    read: Permission::MembersRead,
    render,
};

fn render(r: &Row) -> Result<Member, ApiError> {
    Ok(Member {
        id: r.get("id"),
        subject: r.get("subject"),
        email: r.get("email"),
        display_name: r.get("display_name"),
        role: r.get("role"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Its standard operations in the customer API document.
pub(crate) const DOC: Standard = Standard {
    tag: "members",
    path: "/v1/members",
    noun: "member",
    schema: "Member",
    key: PathKey::Id,
    ops: &[
        Op::List(|| PageQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(Some("The last owner cannot be removed")),
    ],
};

/// The id of the role `name`, after checking the caller may grant it.
async fn role_id(tx: &Tx<'_>, name: &str) -> Result<Uuid, ApiError> {
    let row = tx
        .query_opt(
            "SELECT id, permissions FROM roles WHERE name = $1",
            &[&name],
        )
        .await?
        .ok_or_else(|| ApiError::invalid("role", "no such role"))?;
    tx.require_grantable(
        name,
        &stored_permissions::<Vec<Permission>>(&row, "permissions")?,
    )?;
    Ok(row.get("id"))
}

/// Refuses changing the role of, or removing, a member whose current role the caller could
/// not grant (a developer cannot demote an admin).
async fn guard_grantable(tx: &Tx<'_>, id: Uuid) -> Result<(), ApiError> {
    let row = tx
        .query_opt(
            "SELECT r.name, r.permissions FROM members m \
             JOIN roles r ON r.tenant_id = m.tenant_id AND r.id = m.role_id WHERE m.id = $1",
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    tx.require_grantable(
        &row.get::<_, String>("name"),
        &stored_permissions::<Vec<Permission>>(&row, "permissions")?,
    )
}

async fn load(tx: &Tx<'_>, id: Uuid) -> Result<Member, ApiError> {
    MEMBER.load(tx, &id).await
}

/// Refuses changes to an owner by a non-owner, and removing the last owner.
async fn guard_owner(tx: &Tx<'_>, id: Uuid, demoting: bool) -> Result<(), ApiError> {
    let current = load(tx, id).await?;
    if current.role != "owner" {
        return Ok(());
    }
    if tx.principal().role != "owner" {
        return Err(ApiError::Forbidden(
            "only an owner can change an owner".into(),
        ));
    }
    if demoting {
        let owners: i64 = tx
            .query_one(
                "SELECT count(*) FROM members m JOIN roles r ON r.tenant_id = m.tenant_id AND r.id = m.role_id \
                 WHERE r.name = 'owner'",
                &[],
            )
            .await?
            .get(0);
        if owners <= 1 {
            return Err(ApiError::Conflict(
                "a customer must keep at least one owner".into(),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/members`.
#[utoipa::path(
    post,
    path = "/v1/members",
    operation_id = "createMember",
    tag = "members",
    summary = "Add a member",
    request_body = CreateMember,
    responses(
        (status = 201, description = "Created", body = Member),
        (status = 409, description = "A member with this subject or email exists"),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    text_field("subject", &body.subject, 1, 256)?;
    text_field("display_name", &body.display_name, 0, 200)?;
    if !(3..=320).contains(&body.email.len()) || !body.email.contains('@') {
        return Err(ApiError::invalid("email", "must be an email address"));
    }
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::MembersCreate)?;
                let role = role_id(tx, &body.role).await?;
                let id = Uuid::now_v7();
                tx.execute(
                    "INSERT INTO members (tenant_id, id, subject, email, display_name, role_id) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&tx.tenant(), &id, &body.subject, &body.email, &body.display_name, &role],
                )
                .await?;
                tx.audit("member.create", "member", &id.to_string(), json!({ "role": body.role }))
                    .await?;
                let member = load(tx, id).await?;
                let data = serde_json::to_value(&member).map_err(|e| ApiError::Unexpected(e.into()))?;
                webhooks::emit(tx, EventType::MemberAdded, data).await?;
                Ok(member)
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /v1/members/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/members/{id}",
    operation_id = "updateMember",
    tag = "members",
    summary = "Change a member's display name or role",
    request_body = UpdateMember,
    responses(
        (status = 200, description = "Changed", body = Member),
        (status = 409, description = "The last owner cannot be demoted"),
    )
)]
pub(super) async fn update(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Body(body): Body<UpdateMember>,
) -> Result<Json<Member>, ApiError> {
    let id = parse_id(&id, MEMBER.what)?;
    if let Some(d) = &body.display_name {
        text_field("display_name", d, 0, 200)?;
    }
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::MembersUpdate)?;
                let current = load(tx, id).await?;
                // Naming the role the member already holds changes nothing.
                let new_role = body.role.as_deref().filter(|r| current.role != *r);
                guard_owner(tx, id, new_role.is_some_and(|r| r != "owner")).await?;
                let role = match new_role {
                    Some(r) => {
                        if current.subject == tx.caller().subject {
                            return Err(ApiError::Forbidden(
                                "nobody can change their own role".into(),
                            ));
                        }
                        guard_grantable(tx, id).await?;
                        Some(role_id(tx, r).await?)
                    }
                    None => None,
                };
                tx.execute(
                    "UPDATE members SET display_name = coalesce($2, display_name), role_id = coalesce($3, role_id), \
                     updated_at = now() WHERE id = $1",
                    &[&id, &body.display_name, &role],
                )
                .await?;
                tx.audit("member.update", "member", &id.to_string(), json!({ "role": body.role }))
                    .await?;
                load(tx, id).await
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/members/{id}`.
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, MEMBER.what)?;
    st.db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::MembersDelete)?;
                guard_owner(tx, id, true).await?;
                guard_grantable(tx, id).await?;
                let gone = load(tx, id).await?;
                MEMBER.delete_row(tx, &id).await?;
                webhooks::emit(
                    tx,
                    EventType::MemberRemoved,
                    json!({ "id": gone.id, "subject": gone.subject, "role": gone.role }),
                )
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
