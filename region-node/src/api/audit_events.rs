//! `GET /v1/audit-events`: the tenant's append-only audit trail, newest first, filterable by
//! action, actor and time range.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::extract::Q;
use super::page::Page;
use super::resource::{self, Key, Resource};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

const AUDIT_EVENT: Resource = Resource {
    what: "audit_event",
    table: "audit_events",
    key: Key::Id,
    render: to_json,
};

fn to_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>("id"),
        "at": r.get::<_, DateTime<Utc>>("at"),
        "actor": r.get::<_, String>("actor"),
        "action": r.get::<_, String>("action"),
        "target_type": r.get::<_, String>("target_type"),
        "target_id": r.get::<_, String>("target_id"),
        "request_id": r.get::<_, String>("request_id"),
        "detail": r.get::<_, Value>("detail"),
    })
}

/// Query of `GET /v1/audit-events`.
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn time(field: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 timestamp"))
    })
    .transpose()
}

/// `GET /v1/audit-events`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    // Newest first: the cursor is the last id of the previous page, and the next page is
    // strictly older.
    let sql = "SELECT id, at, actor, action, target_type, target_id, request_id, detail FROM audit_events \
               WHERE ($1::uuid IS NULL OR id < $1) \
                 AND ($3::text IS NULL OR action = $3) \
                 AND ($4::text IS NULL OR actor = $4) \
                 AND ($5::timestamptz IS NULL OR at >= $5) \
                 AND ($6::timestamptz IS NULL OR at < $6) \
               ORDER BY id DESC LIMIT $2";
    let filters: resource::Filters = vec![
        Box::new(q.action),
        Box::new(q.actor),
        Box::new(from),
        Box::new(to),
    ];
    AUDIT_EVENT
        .fetch_page(
            &st,
            &caller,
            Permission::AuditRead,
            page,
            sql.to_owned(),
            filters,
        )
        .await
}
