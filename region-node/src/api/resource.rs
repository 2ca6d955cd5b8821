//! The bodies a resource's read, list and delete handlers share, so a handler states only what
//! differs: its filters and its guards. A resource is described once by a [`Resource`]
//! constant in its module: its table, key, `SELECT`, read permission and how a row renders as
//! its typed answer (a `residency_core::wire::customer` type). A plain get or unfiltered list
//! is not even a handler: the router mounts [`Resource::get_route`] / [`Resource::list_route`],
//! and a list filtered by its query string [`Resource::list_route_with`].
//!
//! Every helper runs in the caller's tenant transaction and checks the permission: the get
//! and the lists as one pipelined read ([`crate::db::tenant_tx::Db::read_rows`]), the
//! delete in [`crate::db::tenant_tx::Db::tenant`] before it writes. Handlers whose body
//! differs (a guard before a delete, logs on a read) call [`Resource::delete_row`] or
//! [`Resource::load`] inside their own transaction.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{self, MethodRouter};
use axum::Json;
use residency_core::wire::customer::{JsonObject, Page as PageOf};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::extract::{parse_id, P, Q};
use super::page::{Page, PageQuery};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

/// Extra query parameters of a filtered list, bound as `$3`, `$4`, … in order.
pub(crate) type Filters = Vec<Box<dyn ToSql + Send + Sync>>;

/// The query string of a list route ([`Resource::list_route_with`]): the page parameters and
/// the filters it adds.
pub(crate) trait ListQuery: DeserializeOwned + Send + 'static {
    /// The SQL condition over the filters (`$3`, `$4`, …), as [`Resource::list`] takes it.
    const CONDITION: &'static str;

    /// The page size and cursor.
    ///
    /// # Errors
    /// 400 for a page size out of range or a cursor that is not one.
    fn page(&self) -> Result<Page, ApiError>;

    /// The filter values bound in [`ListQuery::CONDITION`], in order.
    fn filters(self) -> Filters;
}

/// An unfiltered list: the page parameters only.
impl ListQuery for PageQuery {
    const CONDITION: &'static str = "TRUE";

    fn page(&self) -> Result<Page, ApiError> {
        Page::from_query(self)
    }

    fn filters(self) -> Filters {
        Vec::new()
    }
}

/// The column of `table` a resource's rows are named (in paths) and paged (in cursors) by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    /// The UUID column `id`.
    Id,
    /// A text column (`key` of configurations, `id` of connectors).
    Text(&'static str),
}

impl Key {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Text(column) => column,
        }
    }
}

/// The order of a list: by key ascending, or newest (largest key) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Ascending key.
    Asc,
    /// Descending key: the next page is strictly older.
    Desc,
}

/// A resource kept in one tenant table, as the generic handlers see it.
pub(crate) struct Resource<T: 'static> {
    /// Singular noun: the subject of its 404 (`workflow not found`), its audit target type,
    /// and the prefix of its audit actions (`workflow.delete`).
    pub what: &'static str,
    /// Its table.
    pub table: &'static str,
    /// Its key column.
    pub key: Key,
    /// The select list of its reads (`SELECT <columns> FROM <table> <joins>`): what
    /// [`Resource::render`] reads.
    pub columns: &'static str,
    /// Joins after `FROM <table>` (usually none). The key is referred to as
    /// `<table>.<key column>`, so the table is not aliased.
    pub joins: &'static str,
    /// The order of its lists.
    pub order: Order,
    /// The permission that reads it (its get and its lists).
    pub read: Permission,
    /// Renders one row as its answer.
    pub render: fn(&Row) -> Result<T, ApiError>,
}

impl<T> Clone for Resource<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Resource<T> {}

impl<T: Send + 'static> Resource<T> {
    /// The key column, qualified by the table.
    fn key_column(self) -> String {
        format!("{}.{}", self.table, self.key.column())
    }

    /// `SELECT <columns> FROM <table> <joins>`.
    fn select(self) -> String {
        format!("SELECT {} FROM {} {}", self.columns, self.table, self.joins)
    }

    /// The key named by a path segment: a UUID for [`Key::Id`], the text itself otherwise. A
    /// malformed key is a 404, like a missing one: no stored key holds a NUL (Postgres text
    /// cannot), so a text key with one names nothing.
    fn path_key(self, raw: String) -> Result<Box<dyn ToSql + Send + Sync>, ApiError> {
        Ok(match self.key {
            Key::Id => Box::new(parse_id(&raw, self.what)?),
            Key::Text(_) if raw.contains('\0') => return Err(ApiError::NotFound(self.what)),
            Key::Text(_) => Box::new(raw),
        })
    }

    /// Reads the row whose key is `key` inside the caller's transaction; 404 naming the
    /// resource when it does not exist for this tenant (another tenant's row included, which
    /// Row-Level Security hides).
    ///
    /// # Errors
    /// 404, or database errors.
    pub(crate) async fn load(self, tx: &Tx<'_>, key: &(dyn ToSql + Sync)) -> Result<T, ApiError> {
        let row = tx.query_opt(&self.select_one(), &[key]).await?;
        self.found(row)
    }

    /// `SELECT … WHERE <key> = $1`.
    fn select_one(self) -> String {
        format!("{} WHERE {} = $1", self.select(), self.key_column())
    }

    /// The rendered row, or 404 naming the resource.
    fn found(self, row: Option<Row>) -> Result<T, ApiError> {
        (self.render)(&row.ok_or(ApiError::NotFound(self.what))?)
    }

    /// The whole `GET /v1/<resources>/{key}` handler: checks the read permission and reads
    /// the row named by the path segment `raw`.
    ///
    /// # Errors
    /// 404, 403, or database errors.
    pub(crate) async fn get(
        self,
        st: &AppState,
        caller: &Caller,
        raw: String,
    ) -> Result<Json<T>, ApiError> {
        let key = self.path_key(raw)?;
        // At most one row: the key is the table's key within the tenant.
        let rows = st
            .db
            .read_rows(caller, self.read, &self.select_one(), &[&*key])
            .await?;
        Ok(Json(self.found(rows.into_iter().next())?))
    }

    /// The `GET /v1/<resources>/{key}` route: [`Resource::get`].
    pub(crate) fn get_route(self) -> MethodRouter<Arc<AppState>>
    where
        T: Serialize,
    {
        routing::get(
            move |State(st): State<Arc<AppState>>, caller: Caller, P(raw): P<String>| async move {
                self.get(&st, &caller, raw).await
            },
        )
    }

    /// The `GET /v1/<resources>` route of an unfiltered list: [`Resource::list`] with the
    /// page parameters only.
    pub(crate) fn list_route(self) -> MethodRouter<Arc<AppState>>
    where
        T: Serialize,
    {
        self.list_route_with::<PageQuery>()
    }

    /// The `GET /v1/<resources>` route of a list filtered by the query string `L`:
    /// [`Resource::list`] with `L`'s page, condition and filters.
    pub(crate) fn list_route_with<L: ListQuery>(self) -> MethodRouter<Arc<AppState>>
    where
        T: Serialize,
    {
        routing::get(
            move |State(st): State<Arc<AppState>>, caller: Caller, Q(q): Q<L>| async move {
                let page = q.page()?;
                self.list(&st, &caller, page, L::CONDITION, q.filters())
                    .await
            },
        )
    }

    /// Lists rows with keyset pagination in the resource's order: checks the read permission, reads
    /// the rows after the cursor's key (`$1`, NULL on the first page) that match `condition`
    /// (SQL over `$3`, `$4`, … = `filters`), at most the page size plus one (`$2`), and renders
    /// the page; the next cursor is the last item's key.
    ///
    /// # Errors
    /// 400 for a cursor that does not hold a key of this resource, 403, or database errors.
    pub(crate) async fn list(
        self,
        st: &AppState,
        caller: &Caller,
        page: Page,
        condition: &str,
        filters: Filters,
    ) -> Result<Json<PageOf<T>>, ApiError> {
        let (after, cast): (Box<dyn ToSql + Send + Sync>, &str) = match self.key {
            Key::Id => (Box::new(page.after_uuid()?), "uuid"),
            Key::Text(_) => (Box::new(page.after.clone()), "text"),
        };
        let (cmp, dir) = match self.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let k = self.key_column();
        let sql = format!(
            "{} WHERE ($1::{cast} IS NULL OR {k} {cmp} $1) AND ({condition}) ORDER BY {k} {dir} LIMIT $2",
            self.select()
        );
        let fetch = page.fetch();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&*after, &fetch];
        params.extend(filters.iter().map(|f| &**f as &(dyn ToSql + Sync)));
        let mut rows = st.db.read_rows(caller, self.read, &sql, &params).await?;
        let next_cursor = page.cut(&mut rows, |r| self.row_key(r));
        let items = rows.iter().map(self.render).collect::<Result<_, _>>()?;
        Ok(Json(PageOf { items, next_cursor }))
    }

    /// A row's key as text, for its cursor.
    fn row_key(self, row: &Row) -> String {
        match self.key {
            Key::Id => row.get::<_, uuid::Uuid>("id").to_string(),
            Key::Text(column) => row.get(column),
        }
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
        let n = tx
            .execute(
                &format!(
                    "DELETE FROM {} WHERE {} = $1",
                    self.table,
                    self.key.column()
                ),
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

/// A `jsonb` column that holds a JSON object (a workflow's definition, an execution's input,
/// an audit event's detail). Anything else is a corrupt row: a 500 whose detail is logged.
///
/// # Errors
/// [`ApiError::Unexpected`] naming the column.
pub(crate) fn object(row: &Row, column: &str) -> Result<JsonObject, ApiError> {
    match row.try_get::<_, Value>(column) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Unexpected(anyhow::anyhow!(
            "column {column} does not hold a json object"
        ))),
        Err(e) => Err(ApiError::Unexpected(anyhow::anyhow!(
            "column {column}: {e}"
        ))),
    }
}
