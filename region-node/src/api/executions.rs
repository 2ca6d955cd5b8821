//! `/v1/executions`: runs of workflows, with their log lines.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use residency_core::wire::customer::{Execution, ExecutionLog, Page as PageOf};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, P, Q};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::Page;
use super::resource::{object, Key, Order, Resource};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

const EXECUTION: Resource<Execution> = Resource {
    what: "execution",
    table: "executions",
    key: Key::Id,
    columns: "id, workflow_id, status, trigger, input, created_by, created_at, started_at, finished_at, error",
    joins: "",
    order: Order::Asc,
    read: Permission::ExecutionsRead,
    render,
};

fn render(r: &Row) -> Result<Execution, ApiError> {
    Ok(Execution {
        id: r.get("id"),
        workflow_id: r.get("workflow_id"),
        status: r.get("status"),
        trigger: r.get("trigger"),
        input: object(r, "input")?,
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        error: r.get("error"),
        logs: None,
    })
}

/// Loads one execution, with its log lines when `logs` is true and the caller may read them.
///
/// # Errors
/// 404 when it does not exist for this tenant.
pub(super) async fn load(tx: &Tx<'_>, id: Uuid, logs: bool) -> Result<Execution, ApiError> {
    let mut out = EXECUTION.load(tx, &id).await?;
    if logs && tx.require(Permission::ExecutionsLogsRead).is_ok() {
        let lines = tx
            .query(
                "SELECT seq, at, level, message FROM execution_logs WHERE execution_id = $1 ORDER BY seq",
                &[&id],
            )
            .await?;
        out.logs = Some(
            lines
                .iter()
                .map(|l| ExecutionLog {
                    seq: l.get("seq"),
                    at: l.get("at"),
                    level: l.get("level"),
                    message: l.get("message"),
                })
                .collect(),
        );
    }
    Ok(out)
}

/// Its standard operations in the customer API document (`get` answers the log lines too).
pub(crate) const DOC: Standard = Standard {
    tag: "executions",
    path: "/v1/executions",
    noun: "execution",
    schema: "Execution",
    key: PathKey::Id,
    ops: &[Op::List(|| ListQuery::into_params(|| None)), Op::Get],
};

/// Query of `GET /v1/executions`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only executions of this workflow.
    workflow_id: Option<Uuid>,
    /// Only executions in this status: `queued`, `running`, `succeeded`, `failed` or
    /// `cancelled`.
    status: Option<String>,
}

/// `GET /v1/executions`.
pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<ListQuery>,
) -> Result<Json<PageOf<Execution>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "status",
                format!("must be one of {}", STATUSES.join(", ")),
            ));
        }
    }
    EXECUTION
        .list(
            &st,
            &caller,
            page,
            "($3::uuid IS NULL OR workflow_id = $3) AND ($4::text IS NULL OR status = $4)",
            vec![Box::new(q.workflow_id), Box::new(q.status)],
        )
        .await
}

/// `GET /v1/executions/{id}` (with log lines).
pub(super) async fn get(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<Json<Execution>, ApiError> {
    let id = parse_id(&id, EXECUTION.what)?;
    let out = st
        .db
        .read(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ExecutionsRead)?;
                load(tx, id, true).await
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /v1/executions/{id}/cancel`: cancels a queued or running execution.
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/cancel",
    operation_id = "cancelExecution",
    tag = "executions",
    summary = "Cancel a queued or running execution",
    responses(
        (status = 200, description = "Cancelled", body = Execution),
        (status = 409, description = "The execution has already finished"),
    )
)]
pub(super) async fn cancel(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<Json<Execution>, ApiError> {
    let id = parse_id(&id, EXECUTION.what)?;
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
                // Its job goes too: a delayed or backing-off run is not woken for nothing. A
                // worker in the middle of a step sees the status when it commits and drops
                // its result.
                tx.execute(
                    "DELETE FROM jobs WHERE kind = $1 AND subject_id = $2",
                    &[&crate::workflow::worker::KIND, &id],
                )
                .await?;
                let line = format!("cancelled by {}", tx.caller().subject);
                crate::workflow::worker::log(tx, id, "info", &line).await?;
                tx.audit("execution.cancel", "execution", &id.to_string(), json!({}))
                    .await?;
                crate::workflow::worker::announce(tx, id, "cancelled", None).await?;
                load(tx, id, false).await
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /v1/executions/{id}/retry`: queues a failed or cancelled execution again. It goes on
/// from the step that did not finish (the outputs of the steps done are kept), acting as the
/// caller (its subject and role now).
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/retry",
    operation_id = "retryExecution",
    tag = "executions",
    summary = "Run a failed or cancelled execution again",
    responses(
        (status = 200, description = "Queued again", body = Execution),
        (status = 409, description = "The execution is queued, running or succeeded"),
    )
)]
pub(super) async fn retry(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<Json<Execution>, ApiError> {
    let id = parse_id(&id, EXECUTION.what)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ExecutionsRetry)?;
                let row = tx
                    .query_opt(
                        "SELECT status, state FROM executions WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("execution"))?;
                let status: String = row.get("status");
                if status != "failed" && status != "cancelled" {
                    return Err(ApiError::Conflict(format!(
                        "only a failed or cancelled execution is retried; this one is {status}"
                    )));
                }
                // Keep what was done; forget the failed step's attempts, waits and lost workers.
                let mut state: serde_json::Value = row.get("state");
                if let Some(o) = state.as_object_mut() {
                    for k in ["attempt", "in_step", "lost", "delay_until"] {
                        o.remove(k);
                    }
                }
                tx.execute(
                    "UPDATE executions SET status = 'queued', error = NULL, finished_at = NULL, \
                     state = $2, run_by = $3, run_role = $4 WHERE id = $1",
                    &[&id, &state, &tx.caller().subject, &tx.principal().role],
                )
                .await?;
                let line = format!("retry requested by {}", tx.caller().subject);
                crate::workflow::worker::log(tx, id, "info", &line).await?;
                crate::jobs::enqueue(tx, crate::workflow::worker::KIND, id, None).await?;
                tx.audit("execution.retry", "execution", &id.to_string(), json!({}))
                    .await?;
                load(tx, id, false).await
            })
        })
        .await?;
    Ok(Json(out))
}
