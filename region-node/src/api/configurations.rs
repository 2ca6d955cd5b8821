//! `/v1/configurations/{key}`: a tenant's key → JSON settings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{Configuration, PutConfiguration};
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;

use super::extract::{Body, P};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::PageQuery;
use super::resource::{Key, Order, Resource};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

const COLUMNS: &str = "key, value, version, updated_by, updated_at";
pub(crate) const CONFIGURATION: Resource<Configuration> = Resource {
    what: "configuration",
    table: "configurations",
    key: Key::Text("key"),
    columns: COLUMNS,
    joins: "",
    order: Order::Asc,
    read: Permission::ConfigurationsRead,
    render,
};

fn render(r: &Row) -> Result<Configuration, ApiError> {
    Ok(Configuration {
        key: r.get("key"),
        value: r.get("value"),
        version: r.get("version"),
        updated_by: r.get("updated_by"),
        updated_at: r.get("updated_at"),
    })
}

/// Its standard operations in the customer API document.
pub(crate) const DOC: Standard = Standard {
    tag: "configurations",
    path: "/v1/configurations",
    noun: "configuration",
    schema: "Configuration",
    key: PathKey::Text {
        name: "key",
        pattern: Some(KEY_PATTERN),
    },
    ops: &[
        Op::List(|| PageQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(None),
    ],
};

/// What [`check_key`] accepts, as a regular expression for the document.
const KEY_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

fn check_key(key: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "key",
            "must be 1-128 characters of [A-Za-z0-9._:-]",
        ))
    }
}

/// `GET /v1/configurations/{key}`.
pub(super) async fn get(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(key): P<String>,
) -> Result<Json<Configuration>, ApiError> {
    // A malformed key is reported exactly like a missing one.
    check_key(&key).map_err(|_| ApiError::NotFound(CONFIGURATION.what))?;
    CONFIGURATION.get(&st, &caller, key).await
}

/// `PUT /v1/configurations/{key}`: creates (201) or replaces (200) the value.
#[utoipa::path(
    put,
    path = "/v1/configurations/{key}",
    operation_id = "putConfiguration",
    tag = "configurations",
    summary = "Create or replace a configuration",
    request_body = PutConfiguration,
    responses(
        (status = 200, description = "Replaced", body = Configuration),
        (status = 201, description = "Created", body = Configuration),
        (status = 422, description = "The key or a field of the body is invalid (`field` names it)"),
    )
)]
pub(super) async fn put(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(key): P<String>,
    Body(body): Body<PutConfiguration>,
) -> Result<(StatusCode, Json<Configuration>), ApiError> {
    check_key(&key)?;
    let (created, out) = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::ConfigurationsWrite)?;
                let row = tx
                    .query_one(
                        "INSERT INTO configurations (tenant_id, key, value, updated_by) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value, \
                           version = configurations.version + 1, updated_by = EXCLUDED.updated_by, updated_at = now() \
                         RETURNING key, value, version, updated_by, updated_at",
                        &[&tx.tenant(), &key, &body.value, &tx.caller().subject],
                    )
                    .await?;
                let version: i32 = row.get("version");
                tx.audit("configuration.put", "configuration", &key, json!({ "version": version }))
                    .await?;
                Ok((version == 1, render(&row)?))
            })
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

/// `DELETE /v1/configurations/{key}`.
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(key): P<String>,
) -> Result<StatusCode, ApiError> {
    check_key(&key).map_err(|_| ApiError::NotFound(CONFIGURATION.what))?;
    CONFIGURATION
        .delete_one(&st, &caller, Permission::ConfigurationsDelete, key)
        .await
}
