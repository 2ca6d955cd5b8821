//! The customer API (`/v1`), the internal provisioning, role-check, tenant-move and
//! organization audit search endpoints (`/internal/v1`), and health and metrics endpoints,
//! assembled into one router; the health listener's router ([`health_router`]) has only the
//! latter.
//!
//! Every `/v1` route sits behind [`crate::auth::customer`]; every `/internal` route behind
//! [`crate::auth::system`]; only `/healthz`, `/readyz` and `/metrics` need no assertion.
//!
//! The `/v1` answers and request bodies are the typed `residency_core::wire::customer`
//! contracts; [`openapi`] generates the customer API's OpenAPI document from them and the
//! handlers' annotations.

mod account;
mod audit_events;
mod configurations;
mod connections;
mod executions;
pub mod extract;
mod members;
mod moves;
mod org_audit;
mod ownership;
pub(crate) use moves::Peers;
pub mod openapi;
mod page;
mod provision;
mod resource;
mod roles;
mod webhooks;
mod workflows;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use residency_core::wire::moves::node as mv;

/// Checks a text field's length in characters.
///
/// # Errors
/// 422 naming the field.
pub(crate) fn text_field(field: &str, v: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(
            field,
            format!("must be {min}-{max} characters"),
        ));
    }
    Ok(())
}

pub use residency_http::nullable;

/// Builds the node's router.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/me", get(account::me))
        .route("/v1/usage", get(account::usage))
        .route("/v1/connectors", account::CONNECTOR.list_route())
        .route("/v1/connectors/{id}", account::CONNECTOR.get_route())
        .route(
            "/v1/connections",
            connections::CONNECTION
                .list_route_with::<connections::ListQuery>()
                .post(connections::create),
        )
        .route(
            "/v1/connections/{id}",
            connections::CONNECTION
                .get_route()
                .patch(connections::update)
                .delete(connections::delete),
        )
        .route(
            "/v1/workflows",
            workflows::WORKFLOW
                .list_route_with::<workflows::ListQuery>()
                .post(workflows::create),
        )
        .route(
            "/v1/workflows/{id}",
            workflows::WORKFLOW
                .get_route()
                .patch(workflows::update)
                .delete(workflows::delete),
        )
        .route("/v1/workflows/{id}/runs", post(workflows::run))
        .route(
            "/v1/connections/{id}/actions/{action}/invoke",
            post(connections::invoke),
        )
        .route("/v1/executions", get(executions::list))
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/retry", post(executions::retry))
        .route(
            "/v1/configurations",
            configurations::CONFIGURATION.list_route(),
        )
        .route(
            "/v1/configurations/{key}",
            get(configurations::get)
                .put(configurations::put)
                .delete(configurations::delete),
        )
        .route(
            "/v1/members",
            members::MEMBER.list_route().post(members::create),
        )
        .route(
            "/v1/members/{id}",
            members::MEMBER
                .get_route()
                .patch(members::update)
                .delete(members::delete),
        )
        .route("/v1/roles", roles::ROLE.list_route().post(roles::create))
        .route(
            "/v1/roles/{id}",
            roles::ROLE
                .get_route()
                .patch(roles::update)
                .delete(roles::delete),
        )
        .route(
            "/v1/ownership-transfers",
            get(ownership::list).post(ownership::create),
        )
        .route(
            "/v1/ownership-transfers/{id}",
            axum::routing::delete(ownership::cancel),
        )
        .route(
            "/v1/ownership-transfers/{id}/accept",
            post(ownership::accept),
        )
        .route(
            "/v1/ownership-transfers/{id}/decline",
            post(ownership::decline),
        )
        .route(
            "/v1/webhooks",
            webhooks::WEBHOOK.list_route().post(webhooks::create),
        )
        .route(
            "/v1/webhooks/{id}",
            webhooks::WEBHOOK
                .get_route()
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/ping", post(webhooks::ping))
        .route("/v1/audit-events", get(audit_events::list))
        .route_layer(from_fn_with_state(state.clone(), crate::auth::customer));
    let internal = Router::new()
        .route("/internal/v1/provision", post(provision::provision))
        .route("/internal/v1/roles/check", post(provision::check_role))
        .route(
            residency_core::wire::org_audit::SEARCH_PATH,
            post(org_audit::search),
        )
        .route(
            residency_core::wire::provision::KEY_REVOKED_PATH,
            post(provision::key_revoked),
        )
        .route(mv::PLAN_PATH, post(moves::plan))
        .route(mv::FREEZE_PATH, post(moves::freeze))
        .route(mv::EXPORT_PATH, post(moves::export))
        .route(mv::COPY_PATH, post(moves::copy))
        .route(mv::CHECKSUM_PATH, post(moves::checksum))
        .route(mv::PURGE_PATH, post(moves::purge))
        .route(mv::ARRIVE_PATH, post(moves::arrive))
        .route_layer(from_fn_with_state(state.clone(), crate::auth::system));
    operations(Router::new().merge(v1).merge(internal), state)
}

/// The router of the node's health listener (`node.health`): `/healthz`, `/readyz` and
/// `/metrics` only, without an assertion; every other path is the same 404 problem as on the
/// main listener, so the customer and internal APIs are never reachable there.
pub fn health_router(state: Arc<AppState>) -> Router {
    operations(Router::new(), state)
}

/// Adds the operations endpoints, the problem+json fallbacks and the request id and metrics
/// layers to `routes`.
fn operations(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    routes
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            crate::error::render(&residency_http::Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            ))
        })
        .layer(from_fn(crate::metrics::track))
        .layer(from_fn(crate::request_id::scope))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if crate::db::pool::ping(st.db.pool()).await {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::Unavailable("readiness ping failed".into()).into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}
