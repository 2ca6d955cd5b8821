//! `/v1/executions`: runs of workflows, with their log lines.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::extract::{parse_id, Q};
use super::page::Page;
use super::resource::{self, Key, Resource};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

const COLUMNS: &str =
    "id, workflow_id, status, trigger, input, created_by, created_at, finished_at";
const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

const EXECUTION: Resource = Resource {
    what: "execution",
    table: "executions",
    key: Key::Id,
    render: to_json,
};

fn to_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, Uuid>("id"),
        "workflow_id": r.get::<_, Uuid>("workflow_id"),
        "status": r.get::<_, String>("status"),
        "trigger": r.get::<_, String>("trigger"),
        "input": r.get::<_, Value>("input"),
        "created_by": r.get::<_, String>("created_by"),
        "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>("created_at"),
        "finished_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("finished_at"),
    })
}

/// Loads one execution, with its log lines when `logs` is true and the caller may read them.
///
/// # Errors
/// 404 when it does not exist for this tenant.
pub async fn load(tx: &Tx<'_>, id: Uuid, logs: bool) -> Result<Value, ApiError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM executions WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound("execution"))?;
    let mut out = to_json(&row);
    if logs && tx.require(Permission::ExecutionsLogsRead).is_ok() {
        let lines = tx
            .query(
                "SELECT seq, at, level, message FROM execution_logs WHERE execution_id = $1 ORDER BY seq",
                &[&id],
            )
            .await?;
        out["logs"] = lines
            .iter()
            .map(|l| {
                json!({
                    "seq": l.get::<_, i32>("seq"),
                    "at": l.get::<_, chrono::DateTime<chrono::Utc>>("at"),
                    "level": l.get::<_, String>("level"),
                    "message": l.get::<_, String>("message"),
                })
            })
            .collect();
    }
    Ok(out)
}

/// Query of `GET /v1/executions`.
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    workflow_id: Option<Uuid>,
    status: Option<String>,
}

/// `GET /v1/executions`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            ));
        }
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM executions \
         WHERE ($1::uuid IS NULL OR id > $1) \
           AND ($3::uuid IS NULL OR workflow_id = $3) \
           AND ($4::text IS NULL OR status = $4) \
         ORDER BY id LIMIT $2"
    );
    let filters: resource::Filters = vec![Box::new(q.workflow_id), Box::new(q.status)];
    EXECUTION
        .fetch_page(&st, &caller, Permission::ExecutionsRead, page, sql, filters)
        .await
}

/// `GET /v1/executions/{id}` (with log lines).
pub async fn get(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "execution")?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ExecutionsRead)?;
                load(tx, id, true).await
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /v1/executions/{id}/cancel`: cancels a queued or running execution.
pub async fn cancel(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "execution")?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ExecutionsCancel)?;
                let status: String = tx
                    .query_opt(
                        "SELECT status FROM executions WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("execution"))?
                    .get(0);
                if status != "queued" && status != "running" {
                    return Err(ApiError::Conflict(format!(
                        "the execution is already {status}"
                    )));
                }
                tx.execute(
                    "UPDATE executions SET status = 'cancelled', finished_at = now() WHERE id = $1",
                    &[&id],
                )
                .await?;
                tx.audit("execution.cancel", "execution", &id.to_string(), json!({}))
                    .await?;
                load(tx, id, false).await
            })
        })
        .await?;
    Ok(Json(out))
}
