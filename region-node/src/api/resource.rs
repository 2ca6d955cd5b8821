//! The bodies a resource's read, list and delete handlers share, so a handler states only what
//! differs: its permission, its SQL, its filters and how a row renders.
//!
//! Every helper runs in the caller's tenant transaction ([`crate::db::Db::tenant`]) and checks
//! the permission first. Handlers whose body differs (a guard before a delete, logs on a read)
//! call [`delete_row`] inside their own transaction, or do not use these at all.

use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::page::{by_id, Page};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

/// Renders one row as its JSON answer.
pub(crate) type Render = fn(&Row) -> Value;

/// Extra query parameters of a filtered list, bound as `$3`, `$4`, … in order.
pub(crate) type Filters = Vec<Box<dyn ToSql + Send + Sync>>;

/// A resource kept in one tenant table, as [`delete_row`] and [`delete_one`] see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource {
    /// Singular noun: the subject of its 404 (`workflow not found`), its audit target type,
    /// and the prefix of its audit actions (`workflow.delete`).
    pub what: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The column a path parameter names a row by (`id`; `key` for configurations).
    pub key: &'static str,
}

/// Reads one row in the caller's tenant transaction: checks `permission`, runs `sql` (with
/// `$1` = `key`) and renders the row; 404 naming `what` when it does not exist for this tenant
/// (another tenant's row included, which Row-Level Security hides).
///
/// # Errors
/// 404, 403, or database errors.
pub(crate) async fn fetch_one<K>(
    st: &AppState,
    caller: &Caller,
    permission: Permission,
    what: &'static str,
    sql: String,
    key: K,
    render: Render,
) -> Result<Json<Value>, ApiError>
where
    K: ToSql + Send + Sync + 'static,
{
    let out = st
        .db
        .tenant(caller, move |tx| {
            Box::pin(async move {
                tx.require(permission)?;
                let row = tx
                    .query_opt(&sql, &[&key])
                    .await?
                    .ok_or(ApiError::NotFound(what))?;
                Ok(render(&row))
            })
        })
        .await?;
    Ok(Json(out))
}

/// Lists rows keyed by a UUID id with keyset pagination in the caller's tenant transaction:
/// checks `permission`, runs `sql` with `$1` = the cursor's id or NULL, `$2` = the page size
/// plus one, and `$3`, `$4`, … = `filters`, and renders the page (the cursor is the last
/// item's `id`; the SQL's `WHERE`/`ORDER BY` on `$1` decides the direction).
///
/// # Errors
/// 400 for a cursor that holds no id, 403, or database errors.
pub(crate) async fn fetch_page(
    st: &AppState,
    caller: &Caller,
    permission: Permission,
    page: Page,
    sql: String,
    filters: Filters,
    render: Render,
) -> Result<Json<Value>, ApiError> {
    let after = page.after_uuid()?;
    let out = st
        .db
        .tenant(caller, move |tx| {
            Box::pin(async move {
                tx.require(permission)?;
                let fetch = page.fetch();
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &fetch];
                params.extend(filters.iter().map(|f| &**f as &(dyn ToSql + Sync)));
                let rows = tx.query(&sql, &params).await?;
                Ok(page.finish(rows.iter().map(render).collect(), by_id))
            })
        })
        .await?;
    Ok(Json(out))
}

/// Deletes the row of `resource` whose key is `key` and records `<what>.delete` in the audit,
/// inside the caller's transaction (the handler has checked the permission and its guards).
///
/// # Errors
/// 404 naming the resource when no such row exists for this tenant, or database errors.
pub(crate) async fn delete_row<K>(tx: &Tx<'_>, resource: Resource, key: &K) -> Result<(), ApiError>
where
    K: ToSql + Sync + std::fmt::Display,
{
    let Resource {
        what,
        table,
        key: column,
    } = resource;
    let n = tx
        .execute(&format!("DELETE FROM {table} WHERE {column} = $1"), &[key])
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound(what));
    }
    tx.audit(&format!("{what}.delete"), what, &key.to_string(), json!({}))
        .await
}

/// The whole `DELETE` handler of a resource without guards: checks `permission`, then
/// [`delete_row`]; 204 on success.
///
/// # Errors
/// 404, 403, or database errors.
pub(crate) async fn delete_one<K>(
    st: &AppState,
    caller: &Caller,
    permission: Permission,
    resource: Resource,
    key: K,
) -> Result<StatusCode, ApiError>
where
    K: ToSql + Send + Sync + std::fmt::Display + 'static,
{
    st.db
        .tenant(caller, move |tx| {
            Box::pin(async move {
                tx.require(permission)?;
                delete_row(tx, resource, &key).await
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
