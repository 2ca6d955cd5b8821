//! `/v1/connections`: a tenant's connections to shared connectors.
//!
//! Credentials are write-only: accepted on create/update, sealed with the region's key bound
//! to (tenant, connection), and never returned — responses only say whether they are set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{
    ActionResult, Connection, CreateConnection, InvokeAction, JsonObject, UpdateConnection,
};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, parse_json, Body, P};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::Page;
use super::resource::{self, Filters, Key, Order, Resource};
use super::text_field;
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::webhooks::{self, EventType};

const COLUMNS: &str = "id, connector_id, name, enabled_actions, created_at, updated_at";
pub(crate) const CONNECTION: Resource<Connection> = Resource {
    what: "connection",
    table: "connections",
    key: Key::Id,
    columns: COLUMNS,
    joins: "",
    order: Order::Asc,
    read: Permission::ConnectionsRead,
    render,
};

fn render(r: &Row) -> Result<Connection, ApiError> {
    Ok(Connection {
        id: r.get("id"),
        connector_id: r.get("connector_id"),
        name: r.get("name"),
        enabled_actions: r.get("enabled_actions"),
        credentials_set: true,
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Its standard operations in the customer API document.
pub(crate) const DOC: Standard = Standard {
    tag: "connections",
    path: "/v1/connections",
    noun: "connection",
    schema: "Connection",
    key: PathKey::Id,
    ops: &[
        Op::List(|| ListQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(Some("A workflow uses the connection")),
    ],
};

/// Query of `GET /v1/connections`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only connections to this connector.
    connector_id: Option<String>,
}

impl resource::ListQuery for ListQuery {
    const CONDITION: &'static str = "$3::text IS NULL OR connector_id = $3";

    fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.limit, self.cursor.as_deref())
    }

    fn filters(self) -> Filters {
        vec![Box::new(self.connector_id)]
    }
}

/// Checks that every enabled action is one of the connector's actions.
async fn check_actions(tx: &Tx<'_>, connector: &str, actions: &[String]) -> Result<(), ApiError> {
    let known: Vec<String> = tx
        .query(
            "SELECT action FROM connector_actions WHERE connector_id = $1",
            &[&connector],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (i, a) in actions.iter().enumerate() {
        if !known.contains(a) {
            return Err(ApiError::invalid(
                format!("enabled_actions[{i}]"),
                format!("{connector} has no action {a:?}"),
            ));
        }
    }
    Ok(())
}

fn seal(st: &AppState, tenant: Uuid, id: Uuid, creds: &JsonObject) -> Result<Vec<u8>, ApiError> {
    if creds.is_empty() {
        return Err(ApiError::invalid("credentials", "must not be empty"));
    }
    let plain = serde_json::to_vec(creds).map_err(|e| ApiError::Unexpected(e.into()))?;
    st.cipher
        .seal(tenant, id, &plain)
        .map_err(|e| ApiError::Unexpected(e.into()))
}

/// `POST /v1/connections`.
#[utoipa::path(
    post,
    path = "/v1/connections",
    operation_id = "createConnection",
    tag = "connections",
    summary = "Create a connection",
    request_body = CreateConnection,
    responses(
        (status = 201, description = "Created", body = Connection),
        (status = 409, description = "A connection with this name exists"),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateConnection>,
) -> Result<(StatusCode, Json<Connection>), ApiError> {
    text_field("name", &body.name, 1, 200)?;
    let st2 = st.clone();
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ConnectionsCreate)?;
                let exists = tx
                    .query_opt("SELECT 1 FROM connectors WHERE id = $1", &[&body.connector_id])
                    .await?;
                if exists.is_none() {
                    return Err(ApiError::invalid("connector_id", "no such connector"));
                }
                check_actions(tx, &body.connector_id, &body.enabled_actions).await?;
                let id = Uuid::now_v7();
                let sealed = seal(&st2, tx.tenant(), id, &body.credentials)?;
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO connections (tenant_id, id, connector_id, name, enabled_actions, credentials, credentials_kid) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                        ),
                        &[
                            &tx.tenant(),
                            &id,
                            &body.connector_id,
                            &body.name,
                            &body.enabled_actions,
                            &sealed,
                            &st2.cipher.kid(),
                        ],
                    )
                    .await?;
                tx.audit(
                    "connection.create",
                    "connection",
                    &id.to_string(),
                    json!({ "connector_id": body.connector_id, "name": body.name }),
                )
                .await?;
                webhooks::emit(
                    tx,
                    EventType::ConnectionCreated,
                    json!({ "id": id, "connector_id": body.connector_id, "name": body.name }),
                )
                .await?;
                render(&row)
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /v1/connections/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/connections/{id}",
    operation_id = "updateConnection",
    tag = "connections",
    summary = "Change a connection",
    request_body = UpdateConnection,
    responses(
        (status = 200, description = "Changed", body = Connection),
        (status = 409, description = "A connection with this name exists"),
    )
)]
pub(super) async fn update(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Body(body): Body<UpdateConnection>,
) -> Result<Json<Connection>, ApiError> {
    let id = parse_id(&id, CONNECTION.what)?;
    if let Some(n) = &body.name {
        text_field("name", n, 1, 200)?;
    }
    let st2 = st.clone();
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ConnectionsUpdate)?;
                let connector: String = tx
                    .query_opt("SELECT connector_id FROM connections WHERE id = $1 FOR UPDATE", &[&id])
                    .await?
                    .ok_or(ApiError::NotFound("connection"))?
                    .get(0);
                if let Some(actions) = &body.enabled_actions {
                    check_actions(tx, &connector, actions).await?;
                }
                let sealed = body
                    .credentials
                    .as_ref()
                    .map(|c| seal(&st2, tx.tenant(), id, c))
                    .transpose()?;
                let row = tx
                    .query_one(
                        &format!(
                            "UPDATE connections SET \
                               name = coalesce($2, name), \
                               enabled_actions = coalesce($3, enabled_actions), \
                               credentials = coalesce($4, credentials), \
                               credentials_kid = CASE WHEN $4::bytea IS NULL THEN credentials_kid ELSE $5 END, \
                               updated_at = now() \
                             WHERE id = $1 RETURNING {COLUMNS}"
                        ),
                        &[&id, &body.name, &body.enabled_actions, &sealed, &st2.cipher.kid()],
                    )
                    .await?;
                tx.audit(
                    "connection.update",
                    "connection",
                    &id.to_string(),
                    json!({ "credentials_rotated": sealed.is_some() }),
                )
                .await?;
                render(&row)
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/connections/{id}`: refused with 409 while a workflow uses it (as its
/// connection or in a step).
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, CONNECTION.what)?;
    st.db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ConnectionsDelete)?;
                // Used as a workflow's connection, or named by one of its steps.
                let used = tx
                    .query_opt(
                        "SELECT 1 FROM workflows WHERE connection_id = $1 \
                         OR jsonb_path_exists(definition, '$.steps[*] ? (@.connection_id == $c)', \
                                              jsonb_build_object('c', $1::text)) LIMIT 1",
                        &[&id],
                    )
                    .await?;
                if used.is_some() {
                    return Err(ApiError::Conflict(
                        "the connection is used by a workflow".into(),
                    ));
                }
                CONNECTION.delete_row(tx, &id).await?;
                webhooks::emit(tx, EventType::ConnectionDeleted, json!({ "id": id })).await?;
                Ok(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Largest answer body returned by an invoke as is; a larger one is cut to a text summary.
const MAX_INVOKE_BODY: usize = 64 * 1024;

/// `POST /v1/connections/{id}/actions/{action}/invoke`: runs one action of the connection now,
/// with the same checks as a workflow step (`connections.use`, the action enabled on the
/// connection), an audit event written before the call, and the connector's status and body
/// in the answer (never the credential).
#[utoipa::path(
    post,
    path = "/v1/connections/{id}/actions/{action}/invoke",
    operation_id = "invokeConnectionAction",
    tag = "connections",
    summary = "Run one action of a connection",
    params(
        ("id" = Uuid, Path, description = "The connection"),
        ("action" = String, Path, description = "An action of its connector, enabled on it"),
    ),
    request_body = Option<InvokeAction>,
    responses(
        (status = 200, description = "The connector answered (its status may be an error)", body = ActionResult),
        (status = 502, description = "The connector could not be reached or did not answer in time"),
    )
)]
pub(super) async fn invoke(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P((id, action)): P<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ActionResult>, ApiError> {
    let id = parse_id(&id, CONNECTION.what)?;
    let input = if body.is_empty() {
        JsonObject::new()
    } else {
        parse_json::<Option<InvokeAction>>(&body)?
            .unwrap_or_default()
            .input
    };
    let st2 = st.clone();
    let ready = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                let ready = crate::workflow::action::ready(tx, &st2.cipher, id, &action).await?;
                tx.audit(
                    "connection.invoke",
                    "connection",
                    &id.to_string(),
                    json!({ "connector_id": ready.spec.connector, "action": ready.spec.action }),
                )
                .await?;
                Ok(ready)
            })
        })
        .await?;
    use crate::workflow::connector::CallError;
    let answer = match st
        .connectors
        .call(
            &ready.spec,
            &ready.credentials,
            &serde_json::Value::Object(input),
            st.connectors.call_timeout,
        )
        .await
    {
        Ok(a) | Err(CallError::Status(a)) => a,
        Err(e @ (CallError::Input(_) | CallError::Credentials(_))) => {
            return Err(ApiError::invalid("input", e.to_string()))
        }
        Err(e) => return Err(ApiError::Peer(e.to_string())),
    };
    let text = answer.body.to_string();
    let body = if text.len() > MAX_INVOKE_BODY {
        json!({ "truncated": crate::workflow::connector::truncate(&text, 2000) })
    } else {
        answer.body
    };
    Ok(Json(ActionResult {
        status: answer.status,
        ok: (200..300).contains(&answer.status),
        body,
    }))
}
