//! `GET /v1/me`, `GET /v1/usage` and the shared connector catalogue (`/v1/connectors`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use residency_core::wire::customer::{Connector, Me, Usage, UsageCounts};
use tokio_postgres::Row;
use utoipa::IntoParams;

use super::openapi::standard::{Op, PathKey, Standard};
use super::page::PageQuery;
use super::resource::{Key, Order, Resource};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

/// `GET /v1/me`: who the credential is, in which region, with which permissions.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "getMe",
    tag = "account",
    summary = "Who the credential is",
    responses(
        (status = 200, description = "The caller", body = Me),
    )
)]
pub(super) async fn me(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Me>, ApiError> {
    let region = st.region.id.to_string();
    let principal = st.db.principal(&caller).await?;
    Ok(Json(Me {
        tenant_id: caller.tenant.as_uuid(),
        permissions: crate::rbac::names(&principal.permissions)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        role: principal.role,
        subject: caller.subject,
        region,
    }))
}

/// `GET /v1/usage`: per-entity row counts of the caller's tenant.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "getUsage",
    tag = "account",
    summary = "Row counts of the caller's tenant",
    responses(
        (status = 200, description = "The counts", body = Usage),
    )
)]
pub(super) async fn usage(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Usage>, ApiError> {
    let out = st
        .db
        .read(&caller, move |tx| {
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
                let counts = UsageCounts {
                    members: r.get("members"),
                    roles: r.get("roles"),
                    connections: r.get("connections"),
                    workflows: r.get("workflows"),
                    executions: r.get("executions"),
                    configurations: r.get("configurations"),
                    audit_events: r.get("audit_events"),
                };
                Ok(Usage {
                    tenant_id: tx.tenant(),
                    counts,
                })
            })
        })
        .await?;
    Ok(Json(out))
}

pub(crate) const CONNECTOR: Resource<Connector> = Resource {
    what: "connector",
    table: "connectors",
    key: Key::Text("id"),
    columns: "connectors.id, connectors.name, connectors.category, connectors.auth_type, \
              connectors.description, \
              ARRAY(SELECT a.action FROM connector_actions a \
                    WHERE a.connector_id = connectors.id ORDER BY a.action) AS actions",
    joins: "",
    order: Order::Asc,
    read: Permission::ConnectorsRead,
    render: connector,
};

fn connector(r: &Row) -> Result<Connector, ApiError> {
    Ok(Connector {
        id: r.get("id"),
        name: r.get("name"),
        category: r.get("category"),
        auth_type: r.get("auth_type"),
        description: r.get("description"),
        actions: r.get("actions"),
    })
}

/// The catalogue's standard operations in the customer API document.
pub(crate) const CONNECTORS_DOC: Standard = Standard {
    tag: "connectors",
    path: "/v1/connectors",
    noun: "connector",
    schema: "Connector",
    key: PathKey::Text {
        name: "id",
        pattern: None,
    },
    ops: &[Op::List(|| PageQuery::into_params(|| None)), Op::Get],
};
