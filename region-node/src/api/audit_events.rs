//! `GET /v1/audit-events`: the tenant's append-only audit trail, newest first, filterable by
//! action, actor and time range.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use residency_core::wire::customer::{AuditEvent, Page as PageOf};
use serde::Deserialize;
use tokio_postgres::Row;
use utoipa::IntoParams;

use super::extract::Q;
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::Page;
use super::resource::{self, object, Key, Order, Resource};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

/// Newest first: the cursor is the last id of the previous page, and the next page is
/// strictly older.
const AUDIT_EVENT: Resource<AuditEvent> = Resource {
    what: "audit_event",
    table: "audit_events",
    key: Key::Id,
    columns: "id, at, actor, action, target_type, target_id, request_id, detail",
    joins: "",
    order: Order::Desc,
    read: Permission::AuditRead,
    render,
};

fn render(r: &Row) -> Result<AuditEvent, ApiError> {
    Ok(AuditEvent {
        id: r.get("id"),
        at: r.get("at"),
        actor: r.get("actor"),
        action: r.get("action"),
        target_type: r.get("target_type"),
        target_id: r.get("target_id"),
        request_id: r.get("request_id"),
        detail: object(r, "detail")?,
    })
}

/// Its one operation in the customer API document (newest first).
pub(crate) const DOC: Standard = Standard {
    tag: "audit",
    path: "/v1/audit-events",
    noun: "audit event",
    schema: "AuditEvent",
    key: PathKey::Id,
    ops: &[Op::List(|| ListQuery::into_params(|| None))],
};

/// Query of `GET /v1/audit-events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only events of this action (`workflow.create`).
    action: Option<String>,
    /// Only events of this actor (subject).
    actor: Option<String>,
    /// Only events at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Only events before this RFC 3339 time.
    #[param(format = DateTime)]
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
pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<ListQuery>,
) -> Result<Json<PageOf<AuditEvent>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    let condition = "($3::text IS NULL OR action = $3) \
                     AND ($4::text IS NULL OR actor = $4) \
                     AND ($5::timestamptz IS NULL OR at >= $5) \
                     AND ($6::timestamptz IS NULL OR at < $6)";
    let filters: resource::Filters = vec![
        Box::new(q.action),
        Box::new(q.actor),
        Box::new(from),
        Box::new(to),
    ];
    AUDIT_EVENT
        .list(&st, &caller, page, condition, filters)
        .await
}
