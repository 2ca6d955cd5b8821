//! `/v1/workflows`: workflow definitions and `POST /v1/workflows/{id}/runs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{
    CreateWorkflow, Execution, JsonObject, RunWorkflow, UpdateWorkflow, Workflow,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, parse_json, Body, P};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::Page;
use super::resource::{self, object, Filters, Key, Order, Resource};
use super::{executions, text_field};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::workflow::definition::StepKind;

const COLUMNS: &str =
    "id, name, description, definition, connection_id, enabled, version, created_at, updated_at";
pub(crate) const WORKFLOW: Resource<Workflow> = Resource {
    what: "workflow",
    table: "workflows",
    key: Key::Id,
    columns: COLUMNS,
    joins: "",
    order: Order::Asc,
    read: Permission::WorkflowsRead,
    render,
};

fn render(r: &Row) -> Result<Workflow, ApiError> {
    Ok(Workflow {
        id: r.get("id"),
        name: r.get("name"),
        description: r.get("description"),
        definition: object(r, "definition")?,
        connection_id: r.get("connection_id"),
        enabled: r.get("enabled"),
        version: r.get("version"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Its standard operations in the customer API document (deleting one deletes its
/// executions).
pub(crate) const DOC: Standard = Standard {
    tag: "workflows",
    path: "/v1/workflows",
    noun: "workflow",
    schema: "Workflow",
    key: PathKey::Id,
    ops: &[
        Op::List(|| ListQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(None),
    ],
};

/// Query of `GET /v1/workflows`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) workflows.
    enabled: Option<bool>,
}

impl resource::ListQuery for ListQuery {
    const CONDITION: &'static str = "$3::bool IS NULL OR enabled = $3";

    fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.limit, self.cursor.as_deref())
    }

    fn filters(self) -> Filters {
        vec![Box::new(self.enabled)]
    }
}

/// Checks that `connection_id` names a connection of the caller's tenant. Another tenant's
/// connection is invisible under RLS, so it is reported exactly like a missing one.
async fn check_connection(tx: &Tx<'_>, id: Option<Uuid>) -> Result<(), ApiError> {
    if let Some(id) = id {
        let found = tx
            .query_opt("SELECT 1 FROM connections WHERE id = $1", &[&id])
            .await?;
        if found.is_none() {
            return Err(ApiError::invalid("connection_id", "no such connection"));
        }
    }
    Ok(())
}

/// Validates a definition (the step language, [`crate::workflow::definition`]) and each
/// action step's connection and action against this tenant's connections and the catalogue.
/// `connection` is the workflow's own connection, the default of action steps.
///
/// # Errors
/// 422 naming the step and field (`definition.steps[2].action`).
pub(super) async fn check_definition(
    tx: &Tx<'_>,
    definition: &JsonObject,
    connection: Option<Uuid>,
) -> Result<(), ApiError> {
    let parsed = crate::workflow::definition::parse(definition)
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    for (i, step) in parsed.steps.iter().enumerate() {
        if let StepKind::Action {
            connection_id,
            action,
            ..
        } = &step.kind
        {
            crate::workflow::action::check_step(
                tx,
                &format!("definition.steps[{i}]"),
                connection_id.or(connection),
                action,
            )
            .await?;
        }
    }
    Ok(())
}

/// `POST /v1/workflows`.
#[utoipa::path(
    post,
    path = "/v1/workflows",
    operation_id = "createWorkflow",
    tag = "workflows",
    summary = "Create a workflow",
    request_body = CreateWorkflow,
    responses(
        (status = 201, description = "Created", body = Workflow),
        (status = 409, description = "A workflow with this name exists"),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateWorkflow>,
) -> Result<(StatusCode, Json<Workflow>), ApiError> {
    text_field("name", &body.name, 1, 200)?;
    text_field("description", &body.description, 0, 2000)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WorkflowsCreate)?;
                check_connection(tx, body.connection_id).await?;
                check_definition(tx, &body.definition, body.connection_id).await?;
                let id = Uuid::now_v7();
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO workflows (tenant_id, id, name, description, definition, connection_id, enabled) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                        ),
                        &[
                            &tx.tenant(),
                            &id,
                            &body.name,
                            &body.description,
                            &Value::Object(body.definition),
                            &body.connection_id,
                            &body.enabled,
                        ],
                    )
                    .await?;
                tx.audit("workflow.create", "workflow", &id.to_string(), json!({ "name": body.name }))
                    .await?;
                render(&row)
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /v1/workflows/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/workflows/{id}",
    operation_id = "updateWorkflow",
    tag = "workflows",
    summary = "Change a workflow",
    request_body = UpdateWorkflow,
    responses(
        (status = 200, description = "Changed", body = Workflow),
        (status = 409, description = "A workflow with this name exists"),
    )
)]
pub(super) async fn update(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Body(body): Body<UpdateWorkflow>,
) -> Result<Json<Workflow>, ApiError> {
    let id = parse_id(&id, WORKFLOW.what)?;
    if let Some(n) = &body.name {
        text_field("name", n, 1, 200)?;
    }
    if let Some(d) = &body.description {
        text_field("description", d, 0, 2000)?;
    }
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WorkflowsUpdate)?;
                if let Some(conn) = body.connection_id {
                    check_connection(tx, conn).await?;
                }
                if body.definition.is_some() || body.connection_id.is_some() {
                    let stored = tx
                        .query_opt(
                            "SELECT definition, connection_id FROM workflows WHERE id = $1 FOR UPDATE",
                            &[&id],
                        )
                        .await?
                        .ok_or(ApiError::NotFound("workflow"))?;
                    let stored_def = object(&stored, "definition")?;
                    let definition = body.definition.as_ref().unwrap_or(&stored_def);
                    let connection = body
                        .connection_id
                        .unwrap_or_else(|| stored.get("connection_id"));
                    check_definition(tx, definition, connection).await?;
                }
                let definition = body.definition.map(Value::Object);
                let row = tx
                    .query_opt(
                        &format!(
                            "UPDATE workflows SET \
                               name = coalesce($2, name), \
                               description = coalesce($3, description), \
                               definition = coalesce($4, definition), \
                               connection_id = CASE WHEN $5 THEN $6 ELSE connection_id END, \
                               enabled = coalesce($7, enabled), \
                               version = version + 1, updated_at = now() \
                             WHERE id = $1 RETURNING {COLUMNS}"
                        ),
                        &[
                            &id,
                            &body.name,
                            &body.description,
                            &definition,
                            &body.connection_id.is_some(),
                            &body.connection_id.flatten(),
                            &body.enabled,
                        ],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("workflow"))?;
                tx.audit("workflow.update", "workflow", &id.to_string(), json!({}))
                    .await?;
                render(&row)
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/workflows/{id}` (its executions go with it).
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, WORKFLOW.what)?;
    WORKFLOW
        .delete_one(&st, &caller, Permission::WorkflowsDelete, id)
        .await
}

/// `POST /v1/workflows/{id}/runs`: queues an execution (and its job, in the same
/// transaction) for the region's workers; an empty or `null` body runs with empty input. The
/// run acts as the caller: its subject and its role now.
#[utoipa::path(
    post,
    path = "/v1/workflows/{id}/runs",
    operation_id = "runWorkflow",
    tag = "workflows",
    summary = "Run a workflow",
    request_body = Option<RunWorkflow>,
    responses(
        (status = 201, description = "The queued execution", body = Execution),
        (status = 409, description = "The workflow is disabled, or its definition is not valid"),
    )
)]
pub(super) async fn run(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Execution>), ApiError> {
    let id = parse_id(&id, WORKFLOW.what)?;
    // The body is optional: an empty body runs with empty input.
    let input = if body.is_empty() {
        JsonObject::new()
    } else {
        parse_json::<Option<RunWorkflow>>(&body)?
            .unwrap_or_default()
            .input
    };
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WorkflowsRun)?;
                let wf = tx
                    .query_opt(
                        "SELECT enabled, definition FROM workflows WHERE id = $1 FOR SHARE",
                        &[&id],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("workflow"))?;
                if !wf.get::<_, bool>("enabled") {
                    return Err(ApiError::Conflict("the workflow is disabled".into()));
                }
                let definition: Value = wf.get("definition");
                // A definition saved before the step language existed (or edited in SQL) is
                // refused here rather than failing in the worker.
                if let Some(Err(e)) = definition.as_object().map(crate::workflow::definition::parse) {
                    return Err(ApiError::Conflict(format!(
                        "the workflow's definition is not valid: {}: {}",
                        e.field, e.reason
                    )));
                }
                let exec_id = Uuid::now_v7();
                // The run acts as its starter: this subject, with the role it has now (checked
                // again, live, at every step by the worker).
                tx.execute(
                    "INSERT INTO executions (tenant_id, id, workflow_id, status, trigger, input, created_by, run_by, run_role) \
                     VALUES ($1, $2, $3, 'queued', 'api', $4, $5, $5, $6)",
                    &[&tx.tenant(), &exec_id, &id, &Value::Object(input), &tx.caller().subject, &tx.principal().role],
                )
                .await?;
                let line = format!("run requested by {} through the api", tx.caller().subject);
                tx.execute(
                    "INSERT INTO execution_logs (tenant_id, execution_id, seq, level, message) \
                     VALUES ($1, $2, 1, 'info', $3)",
                    &[&tx.tenant(), &exec_id, &line],
                )
                .await?;
                crate::jobs::enqueue(tx, crate::workflow::worker::KIND, exec_id, None).await?;
                tx.audit("workflow.run", "execution", &exec_id.to_string(), json!({ "workflow_id": id }))
                    .await?;
                executions::load(tx, exec_id, true).await
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}
