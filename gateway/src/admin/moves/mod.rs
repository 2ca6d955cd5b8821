//! Tenant moves between regions in the admin API (issue 13):
//!
//! - `POST /admin/v1/tenants/{id}/move {"to", "dry_run"?}`: 422 naming `to` for an unknown
//!   or the current region, 409 `move_in_progress` when one is in flight, 503 when the target
//!   (or source) region has no healthy node, before anything changes; a dry run answers 200
//!   with the plan; otherwise the move is recorded (`planned`), a [`driver::Driver`] starts
//!   and the answer is 202 with the record;
//! - `GET /admin/v1/moves/{move_id}`, `GET /admin/v1/tenants/{id}/moves`;
//! - `POST /admin/v1/moves/{move_id}/resume` (a driver continues from the record: after a
//!   failure or after the driving process died; 409 `move_running` while another driver's
//!   lease is current) and `/abort` (before the flip: the target's rows are deleted, the
//!   tenant thawed on its source, `rolled_back`).

pub(crate) mod driver;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use residency_core::wire::admin::List;
use residency_core::wire::moves::node::{Plan, PLAN_PATH};
use residency_core::wire::moves::{Move, MovePhase, MovePlan, MoveRequest};
use residency_core::{RegionId, TenantId, TenantStatus};
use residency_directory::{MoveRecord, StoreError};

use super::provision::NodeCall;
use super::tenants::existing;
use super::{parse_uuid, AdminError, AdminState, Body, Principal, RequestId};
use axum::Extension;
use driver::Driver;

type Result<T> = std::result::Result<T, AdminError>;

/// The `[admin] move_*` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoveSettings {
    /// Rows per copy batch.
    pub(crate) batch_rows: u32,
    /// Wait after the flip before the purge.
    pub(crate) purge_grace: Duration,
    /// A driver's lease.
    pub(crate) lease: Duration,
    /// Test hook: stop after the copy.
    pub(crate) hold_before_verify: bool,
}

fn in_progress(detail: impl Into<String>) -> AdminError {
    AdminError::Conflict {
        kind: "move_in_progress",
        detail: detail.into(),
        field: None,
    }
}

async fn the_move(st: &AdminState, id: &str) -> Result<MoveRecord> {
    let id = parse_uuid(id, "move_id")?;
    st.store()?
        .get_move(id)
        .await?
        .ok_or(AdminError::NotFound("move"))
}

/// `POST /admin/v1/tenants/{id}/move`.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/move", tag = "moves",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = MoveRequest,
    responses(
        (status = 200, description = "Dry run: the plan; nothing changed", body = MovePlan),
        (status = 202, description = "Recorded and started; follow it at /admin/v1/moves/{move_id}", body = Move),
        super::openapi::BodyRefusals,
        (status = 409, response = super::openapi::Conflict),
        (status = 502, response = super::openapi::BadGateway),
    ))]
pub(crate) async fn start(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<MoveRequest>,
) -> Result<Response> {
    let id = parse_uuid(&id, "id")?;
    let to = RegionId::new(&b.to).map_err(|e| AdminError::invalid("to", e.to_string()))?;
    if !st.regions.iter().any(|r| r.id == to) {
        let known: Vec<&str> = st.regions.iter().map(|r| r.id.as_str()).collect();
        return Err(AdminError::invalid(
            "to",
            format!(
                "{to} is not a configured region (configured: {})",
                known.join(", ")
            ),
        ));
    }
    let store = st.store()?;
    let t = existing(store, &p, id).await?;
    if t.region == to.as_str() {
        return Err(AdminError::invalid(
            "to",
            format!("the tenant is already in {to}"),
        ));
    }
    if let Some(m) = store
        .moves_of(id)
        .await?
        .into_iter()
        .find(|m| !m.phase.is_final())
    {
        return Err(in_progress(format!(
            "move {} of this tenant is {}; resume or abort it first",
            m.id,
            m.phase.as_str()
        )));
    }
    if t.status != TenantStatus::Active {
        return Err(AdminError::Conflict {
            kind: "tenant_not_movable",
            detail: "only an active tenant can be moved".into(),
            field: None,
        });
    }
    let from = RegionId::new(&t.region)
        .map_err(|e| AdminError::Internal(format!("stored region: {e}")))?;
    for (which, r) in [("target", &to), ("source", &from)] {
        st.provisioner.ready(st.gateway.regions(), r, which).await?;
    }
    let plan: Plan = st
        .provisioner
        .move_call(
            st.gateway.regions(),
            &from,
            TenantId::from_uuid(id),
            &NodeCall {
                path: PLAN_PATH,
                what: "the move plan",
                kind: "move_plan_failed",
            },
            &serde_json::json!({}),
            rid.header_value(),
        )
        .await?;
    if b.dry_run {
        return Ok(Json(MovePlan {
            tenant_id: TenantId::from_uuid(id),
            from: from.to_string(),
            to: to.to_string(),
            rows_total: plan.tables.iter().map(|t| t.rows).sum(),
            estimated_bytes: plan.tables.iter().map(|t| t.estimated_bytes).sum(),
            tables: plan.tables,
        })
        .into_response());
    }
    let driver = Driver::new(Arc::clone(&st));
    let m = store
        .create_move(
            &st.actor,
            id,
            from.as_str(),
            to.as_str(),
            &plan.tables,
            driver.lease(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(why) => in_progress(why),
            other => AdminError::from(other),
        })?;
    tracing::info!(move_id = %m.id, tenant = %id, from = %from, to = %to, actor = %st.actor, "tenant move started");
    tokio::spawn(driver.run(m.id));
    Ok((StatusCode::ACCEPTED, Json(m.view())).into_response())
}

/// `GET /admin/v1/moves/{move_id}`.
#[utoipa::path(get, path = "/admin/v1/moves/{move_id}", tag = "moves",
    security(("admin_token" = [])),
    params(("move_id" = Uuid, Path, description = "Move id")),
    responses(
        (status = 200, description = "The move record", body = Move),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn get(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Move>> {
    Ok(Json(the_move(&st, &id).await?.view()))
}

/// `GET /admin/v1/tenants/{id}/moves`: newest first.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/moves", tag = "moves",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant's moves, newest first", body = List<Move>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<List<Move>>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    existing(store, &p, id).await?;
    Ok(Json(List {
        items: store
            .moves_of(id)
            .await?
            .iter()
            .map(MoveRecord::view)
            .collect(),
    }))
}

/// Starts a driver for `m` unless another one holds it.
async fn drive(st: &Arc<AdminState>, m: &MoveRecord) -> Result<bool> {
    let driver = Driver::new(Arc::clone(st));
    if !st.store()?.claim_move(m.id, driver.lease()).await? {
        return Ok(false);
    }
    tokio::spawn(driver.run(m.id));
    Ok(true)
}

/// `POST /admin/v1/moves/{move_id}/resume`.
#[utoipa::path(post, path = "/admin/v1/moves/{move_id}/resume", tag = "moves",
    security(("admin_token" = [])),
    params(("move_id" = Uuid, Path, description = "Move id")),
    responses(
        (status = 202, description = "A driver continues the move from its record", body = Move),
        super::openapi::ByIdRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn resume(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let m = the_move(&st, &id).await?;
    if m.phase.is_final() {
        return Err(AdminError::Conflict {
            kind: "move_finished",
            detail: format!("the move is {}", m.phase.as_str()),
            field: None,
        });
    }
    if !drive(&st, &m).await? {
        return Err(AdminError::Conflict {
            kind: "move_running",
            detail: "a driver is working on this move; retry once its lease expires".into(),
            field: None,
        });
    }
    tracing::info!(move_id = %m.id, actor = %st.actor, "tenant move resumed");
    Ok((StatusCode::ACCEPTED, Json(m.view())).into_response())
}

/// `POST /admin/v1/moves/{move_id}/abort`: before the flip only.
#[utoipa::path(post, path = "/admin/v1/moves/{move_id}/abort", tag = "moves",
    security(("admin_token" = [])),
    params(("move_id" = Uuid, Path, description = "Move id")),
    responses(
        (status = 202, description = "The abort is recorded; the driver rolls the move back", body = Move),
        super::openapi::ByIdRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn abort(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let m = the_move(&st, &id).await?;
    if m.phase.is_final() || driver::effective(&m) >= MovePhase::Flipped {
        return Err(AdminError::Conflict {
            kind: "move_not_abortable",
            detail: format!(
                "the move is {}: only a move before its flip can be aborted",
                m.phase.as_str()
            ),
            field: None,
        });
    }
    let m = st.store()?.request_abort(m.id).await?;
    // A running driver sees the request at its next step; otherwise one is started for it.
    drive(&st, &m).await?;
    tracing::info!(move_id = %m.id, actor = %st.actor, "tenant move abort requested");
    Ok((StatusCode::ACCEPTED, Json(m.view())).into_response())
}
