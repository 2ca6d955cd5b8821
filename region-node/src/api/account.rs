//! `GET /v1/me`, `GET /v1/usage` and the shared connector catalogue (`/v1/connectors`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::extract::Q;
use super::page::{Page, PageQuery};
use super::resource::{Key, Resource};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

/// `GET /v1/me`: who the credential is, in which region, with which permissions.
pub async fn me(State(st): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let region = st.region.id.to_string();
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                Ok(json!({
                    "tenant_id": tx.tenant(),
                    "subject": tx.caller().subject,
                    "role": tx.principal().role,
                    "region": region,
                    "permissions": tx.principal().permissions,
                }))
            })
        })
        .await?;
    Ok(Json(out))
}

/// `GET /v1/usage`: per-entity row counts of the caller's tenant.
pub async fn usage(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::UsageRead)?;
                let r = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM members) AS members, \
                                (SELECT count(*) FROM roles) AS roles, \
                                (SELECT count(*) FROM connections) AS connections, \
                                (SELECT count(*) FROM workflows) AS workflows, \
                                (SELECT count(*) FROM executions) AS executions, \
                                (SELECT count(*) FROM configurations) AS configurations, \
                                (SELECT count(*) FROM audit_events) AS audit_events",
                        &[],
                    )
                    .await?;
                let mut counts = serde_json::Map::new();
                for c in r.columns() {
                    counts.insert(c.name().to_owned(), json!(r.get::<_, i64>(c.name())));
                }
                Ok(json!({ "tenant_id": tx.tenant(), "counts": counts }))
            })
        })
        .await?;
    Ok(Json(out))
}

const CONNECTOR_SELECT: &str = "SELECT c.id, c.name, c.category, c.auth_type, c.description, \
     coalesce(array_agg(a.action ORDER BY a.action) FILTER (WHERE a.action IS NOT NULL), '{}') AS actions \
     FROM connectors c LEFT JOIN connector_actions a ON a.connector_id = c.id";

const CONNECTOR: Resource = Resource {
    what: "connector",
    table: "connectors",
    key: Key::Text("id"),
    render: connector,
};

fn connector(r: &Row) -> Value {
    json!({
        "id": r.get::<_, String>("id"),
        "name": r.get::<_, String>("name"),
        "category": r.get::<_, String>("category"),
        "auth_type": r.get::<_, String>("auth_type"),
        "description": r.get::<_, String>("description"),
        "actions": r.get::<_, Vec<String>>("actions"),
    })
}

/// `GET /v1/connectors`.
pub async fn connectors(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::from_query(&q)?;
    let sql = format!(
        "{CONNECTOR_SELECT} WHERE ($1::text IS NULL OR c.id > $1) GROUP BY c.id ORDER BY c.id LIMIT $2"
    );
    CONNECTOR
        .fetch_page(
            &st,
            &caller,
            Permission::ConnectorsRead,
            page,
            sql,
            Vec::new(),
        )
        .await
}

/// `GET /v1/connectors/{id}`.
pub async fn connector_get(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Postgres text cannot hold a NUL, and no connector id has one: a malformed id is
    // reported exactly like a missing one.
    if id.contains('\0') {
        return Err(ApiError::NotFound(CONNECTOR.what));
    }
    let sql = format!("{CONNECTOR_SELECT} WHERE c.id = $1 GROUP BY c.id");
    CONNECTOR
        .fetch_one(&st, &caller, Permission::ConnectorsRead, sql, id)
        .await
}
