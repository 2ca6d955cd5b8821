//! `/v1/roles`: the six system roles and custom roles.
//!
//! A custom role is a copy of a system role with permissions added or removed; every
//! permission must be in the catalogue ([`crate::rbac::Permission`]). System roles cannot be
//! changed or deleted, and their names (and `system`) are reserved.
//!
//! A caller creates or edits only roles whose permissions (before and after the edit) are a
//! subset of its own ([`crate::db::tenant_tx::Tx::require_grantable`]); only an owner copies
//! the owner role.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{CreateRole, Role, UpdateRole};
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, Body, P};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::PageQuery;
use super::resource::{Key, Order, Resource};
use crate::db::tenant_tx::{stored_permissions, Caller, Tx};
use crate::error::ApiError;
use crate::rbac::{self, Permission, SystemRole};
use crate::state::AppState;

const COLUMNS: &str =
    "id, name, description, is_system, based_on, permissions, created_at, updated_at";

pub(crate) const ROLE: Resource<Role> = Resource {
    what: "role",
    table: "roles",
    key: Key::Id,
    columns: COLUMNS,
    joins: "",
    order: Order::Asc,
    read: Permission::RolesRead,
    render,
};

fn render(r: &Row) -> Result<Role, ApiError> {
    Ok(Role {
        id: r.get("id"),
        name: r.get("name"),
        description: r.get("description"),
        system: r.get("is_system"),
        based_on: r.get("based_on"),
        permissions: r.get("permissions"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Parses the permission names of `field` (`add` or `remove`) through [`Permission`]'s
/// `FromStr`: 422 naming the element for a name outside the catalogue.
fn parse_permissions(field: &str, names: &[String]) -> Result<Vec<Permission>, ApiError> {
    names
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse().map_err(|e: rbac::UnknownPermission| {
                ApiError::invalid(format!("{field}[{i}]"), e.to_string())
            })
        })
        .collect()
}

/// `base` plus `add` minus `remove`, in catalogue order.
fn apply(base: &[Permission], add: &[Permission], remove: &[Permission]) -> Vec<Permission> {
    Permission::ALL
        .into_iter()
        .filter(|p| (base.contains(p) || add.contains(p)) && !remove.contains(p))
        .collect()
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if !residency_core::wire::provision::is_role_name(name) {
        return Err(ApiError::invalid(
            "name",
            residency_core::wire::provision::ROLE_NAME_RULE,
        ));
    }
    if SystemRole::from_name(name).is_some() || name == crate::auth::SYSTEM_ROLE {
        return Err(ApiError::invalid("name", "is reserved for a system role"));
    }
    Ok(())
}

/// Its standard operations in the customer API document.
pub(crate) const DOC: Standard = Standard {
    tag: "roles",
    path: "/v1/roles",
    noun: "role",
    schema: "Role",
    key: PathKey::Id,
    ops: &[
        Op::List(|| PageQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(Some("A system role, or a role a member holds")),
    ],
};

async fn load(tx: &Tx<'_>, id: Uuid) -> Result<Row, ApiError> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM roles WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(ApiError::NotFound(ROLE.what))
}

/// `POST /v1/roles`.
#[utoipa::path(
    post,
    path = "/v1/roles",
    operation_id = "createRole",
    tag = "roles",
    summary = "Create a custom role",
    request_body = CreateRole,
    responses(
        (status = 201, description = "Created", body = Role),
        (status = 409, description = "A role with this name exists"),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateRole>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    check_name(&body.name)?;
    let base = SystemRole::from_name(&body.based_on)
        .ok_or_else(|| ApiError::invalid("based_on", "must name a system role"))?;
    let add = parse_permissions("add", &body.add)?;
    let remove = parse_permissions("remove", &body.remove)?;
    let permissions = apply(base.permissions(), &add, &remove);
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::RolesCreate)?;
                tx.require_grantable(&body.based_on, &permissions)?;
                let id = Uuid::now_v7();
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO roles (tenant_id, id, name, description, is_system, based_on, permissions) \
                             VALUES ($1, $2, $3, $4, false, $5, $6) RETURNING {COLUMNS}"
                        ),
                        &[&tx.tenant(), &id, &body.name, &body.description, &body.based_on, &rbac::names(&permissions)],
                    )
                    .await?;
                tx.audit(
                    "role.create",
                    "role",
                    &id.to_string(),
                    json!({ "name": body.name, "based_on": body.based_on, "permissions": permissions }),
                )
                .await?;
                render(&row)
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /v1/roles/{id}`: custom roles only.
#[utoipa::path(
    patch,
    path = "/v1/roles/{id}",
    operation_id = "updateRole",
    tag = "roles",
    summary = "Change a custom role",
    request_body = UpdateRole,
    responses(
        (status = 200, description = "Changed", body = Role),
        (status = 409, description = "System roles cannot be changed"),
    )
)]
pub(super) async fn update(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Body(body): Body<UpdateRole>,
) -> Result<Json<Role>, ApiError> {
    let id = parse_id(&id, ROLE.what)?;
    let add = parse_permissions("add", &body.add)?;
    let remove = parse_permissions("remove", &body.remove)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::RolesUpdate)?;
                let row = load(tx, id).await?;
                if row.get::<_, bool>("is_system") {
                    return Err(ApiError::Conflict("system roles cannot be changed".into()));
                }
                let name: String = row.get("name");
                let current: Vec<Permission> = stored_permissions(&row, "permissions")?;
                // A role the caller could not create, it cannot edit; and the result must stay
                // within the caller's own permissions (members holding it gain them at once).
                tx.require_grantable(&name, &current)?;
                let permissions = apply(&current, &add, &remove);
                tx.require_grantable(&name, &permissions)?;
                let row = tx
                    .query_one(
                        &format!(
                            "UPDATE roles SET description = coalesce($2, description), permissions = $3, updated_at = now() \
                             WHERE id = $1 RETURNING {COLUMNS}"
                        ),
                        &[&id, &body.description, &rbac::names(&permissions)],
                    )
                    .await?;
                tx.audit("role.update", "role", &id.to_string(), json!({ "permissions": permissions }))
                    .await?;
                render(&row)
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/roles/{id}`: custom roles no member holds.
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ROLE.what)?;
    st.db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::RolesDelete)?;
                let row = load(tx, id).await?;
                if row.get::<_, bool>("is_system") {
                    return Err(ApiError::Conflict("system roles cannot be deleted".into()));
                }
                let held = tx
                    .query_opt("SELECT 1 FROM members WHERE role_id = $1 LIMIT 1", &[&id])
                    .await?;
                if held.is_some() {
                    return Err(ApiError::Conflict("the role is held by a member".into()));
                }
                ROLE.delete_row(tx, &id).await
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_adds_removes_in_catalogue_order() {
        let base = [Permission::WorkflowsRead, Permission::WorkflowsDelete];
        let out = apply(
            &base,
            &[Permission::TenantRead],
            &[Permission::WorkflowsDelete],
        );
        assert_eq!(out, [Permission::TenantRead, Permission::WorkflowsRead]);
    }

    #[test]
    fn unknown_permissions_are_a_422_naming_the_element() {
        let names = ["tenant.read".to_owned(), "tenant.own".to_owned()];
        let err = parse_permissions("add", &names).unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { field, detail } if field == "add[1]" && detail == "unknown permission \"tenant.own\""),
            "{err:?}"
        );
        assert_eq!(
            parse_permissions("remove", &names[..1]).unwrap(),
            [Permission::TenantRead]
        );
    }

    #[test]
    fn reserved_names() {
        assert!(check_name("owner").is_err());
        assert!(check_name("system").is_err());
        assert!(check_name("Bad Name").is_err());
        assert!(check_name("release-manager").is_ok());
    }
}
