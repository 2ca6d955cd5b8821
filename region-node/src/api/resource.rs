//! The bodies a resource's read, list and delete handlers share, so a handler states only what
//! differs: its permission, its SQL and its filters. A resource is described once by a
//! [`Resource`] constant in its module.
//!
//! Every helper runs in the caller's tenant transaction
//! ([`crate::db::tenant_tx::Db::tenant`]) and checks the permission first. Handlers whose body
//! differs (a guard before a delete, logs on a read) call [`Resource::delete_row`] inside their
//! own transaction, or do not use these at all.

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

/// Extra query parameters of a filtered list, bound as `$3`, `$4`, … in order.
pub(crate) type Filters = Vec<Box<dyn ToSql + Send + Sync>>;

/// The column a resource's rows are named (in paths) and paged (in cursors) by. The rendered
/// row has a field of the same name holding the key as a string.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    /// The UUID column `id`.
    Id,
    /// A text column (`key` of configurations, `id` of connectors).
    Text(&'static str),
}

/// A resource kept in one tenant table, as the generic handlers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource {
    /// Singular noun: the subject of its 404 (`workflow not found`), its audit target type,
    /// and the prefix of its audit actions (`workflow.delete`).
    pub what: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its key column.
    pub key: Key,
    /// Renders one row as its JSON answer.
    pub render: fn(&Row) -> Value,
}

impl Resource {
    /// Reads one row: checks `permission`, runs `sql` (with `$1` = `key`) and renders the row;
    /// 404 naming the resource when it does not exist for this tenant (another tenant's row
    /// included, which Row-Level Security hides).
    ///
    /// # Errors
    /// 404, 403, or database errors.
    pub(crate) async fn fetch_one<K>(
        self,
        st: &AppState,
        caller: &Caller,
        permission: Permission,
        sql: String,
        key: K,
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
                        .ok_or(ApiError::NotFound(self.what))?;
                    Ok((self.render)(&row))
                })
            })
            .await?;
        Ok(Json(out))
    }

    /// Lists rows with keyset pagination: checks `permission`, runs `sql` with `$1` = the
    /// cursor's key or NULL, `$2` = the page size plus one, and `$3`, `$4`, … = `filters`, and
    /// renders the page; the next cursor is the last item's key. The SQL's `WHERE`/`ORDER BY`
    /// on `$1` decides the direction.
    ///
    /// # Errors
    /// 400 for a cursor that does not hold a key of this resource, 403, or database errors.
    pub(crate) async fn fetch_page(
        self,
        st: &AppState,
        caller: &Caller,
        permission: Permission,
        page: Page,
        sql: String,
        filters: Filters,
    ) -> Result<Json<Value>, ApiError> {
        let after: Box<dyn ToSql + Send + Sync> = match self.key {
            Key::Id => Box::new(page.after_uuid()?),
            Key::Text(_) => Box::new(page.after.clone()),
        };
        let out = st
            .db
            .tenant(caller, move |tx| {
                Box::pin(async move {
                    tx.require(permission)?;
                    let fetch = page.fetch();
                    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&*after, &fetch];
                    params.extend(filters.iter().map(|f| &**f as &(dyn ToSql + Sync)));
                    let rows = tx.query(&sql, &params).await?;
                    let items = rows.iter().map(self.render).collect();
                    Ok(match self.key {
                        Key::Id => page.finish(items, by_id),
                        Key::Text(field) => {
                            page.finish(items, |v| v[field].as_str().unwrap_or_default().to_owned())
                        }
                    })
                })
            })
            .await?;
        Ok(Json(out))
    }

    /// Deletes the row whose key is `key` and records `<what>.delete` in the audit, inside the
    /// caller's transaction (the handler has checked the permission and its own guards).
    ///
    /// # Errors
    /// 404 naming the resource when no such row exists for this tenant, or database errors.
    pub(crate) async fn delete_row<K>(self, tx: &Tx<'_>, key: &K) -> Result<(), ApiError>
    where
        K: ToSql + Sync + std::fmt::Display,
    {
        let column = match self.key {
            Key::Id => "id",
            Key::Text(column) => column,
        };
        let n = tx
            .execute(
                &format!("DELETE FROM {} WHERE {column} = $1", self.table),
                &[key],
            )
            .await?;
        if n == 0 {
            return Err(ApiError::NotFound(self.what));
        }
        let action = format!("{}.delete", self.what);
        tx.audit(&action, self.what, &key.to_string(), json!({}))
            .await
    }

    /// The whole `DELETE` handler of a resource without guards: checks `permission`, then
    /// [`Resource::delete_row`]; 204 on success.
    ///
    /// # Errors
    /// 404, 403, or database errors.
    pub(crate) async fn delete_one<K>(
        self,
        st: &AppState,
        caller: &Caller,
        permission: Permission,
        key: K,
    ) -> Result<StatusCode, ApiError>
    where
        K: ToSql + Send + Sync + std::fmt::Display + 'static,
    {
        st.db
            .tenant(caller, move |tx| {
                Box::pin(async move {
                    tx.require(permission)?;
                    self.delete_row(tx, &key).await
                })
            })
            .await?;
        Ok(StatusCode::NO_CONTENT)
    }
}
