//! The signup review queue (platform admin only; submissions arrive on the public listener,
//! `crate::signup`):
//!
//! - `GET /admin/v1/signups?status=…`: keyset pages by id (oldest first);
//! - `GET /admin/v1/signups/{id}`: one signup with its audit trail (`events`);
//! - `POST /admin/v1/signups/{id}/approve|reject {"note"}`: only a signup waiting for review
//!   (`manual_review` or `provisional`; 409 `signup_not_pending` otherwise). Approving creates
//!   the organization (Free plan, the applicant as owner) or lifts a provisional one's
//!   reduced limits; both record the note and the reviewer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use residency_core::wire::admin::{Page as PageOf, ReviewSignup, Signup, SignupStatus};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::tenants::{text, Page};
use super::{parse_uuid, AdminError, AdminState, Body, Principal, Q};

type Result<T> = std::result::Result<T, AdminError>;

/// `GET /admin/v1/signups` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignupQuery {
    /// Only this outcome (`manual_review` is the review queue).
    #[param(value_type = Option<SignupStatus>)]
    status: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /admin/v1/signups`.
#[utoipa::path(get, path = "/admin/v1/signups", tag = "signups",
    security(("admin_token" = [])),
    params(SignupQuery),
    responses(
        (status = 200, description = "One page, by id", body = PageOf<Signup>),
        super::openapi::ListRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Q(q): Q<SignupQuery>,
) -> Result<Json<PageOf<Signup>>> {
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let status = q
        .status
        .map(|s| {
            SignupStatus::parse(&s).ok_or_else(|| {
                AdminError::invalid(
                    "status",
                    "must be approved, provisional, manual_review or rejected",
                )
            })
        })
        .transpose()?;
    let rows = st
        .store()?
        .list_signups(status, page.after, page.fetch())
        .await?;
    Ok(page.answer(rows, |s| s.id, |s| s))
}

/// `GET /admin/v1/signups/{id}`: the signup and its events, oldest first.
#[utoipa::path(get, path = "/admin/v1/signups/{id}", tag = "signups",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Signup id")),
    responses(
        (status = 200, description = "The signup with `events`", body = Object),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn get(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    let s = store
        .signup(id)
        .await?
        .ok_or(AdminError::NotFound("signup"))?;
    let mut v = serde_json::to_value(&s).map_err(|e| AdminError::Internal(e.to_string()))?;
    v["events"] = Value::Array(store.signup_events(id).await?);
    Ok(Json(v))
}

async fn review(
    st: &AdminState,
    p: &Principal,
    id: &str,
    approve: bool,
    note: &str,
) -> Result<Json<Signup>> {
    let id = parse_uuid(id, "id")?;
    text("note", note, 2000)?;
    let actor = p.actor();
    let reviewed = st
        .store()?
        .review_signup(&actor, id, approve, note)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("signup"),
            AdminError::Conflict { detail, .. } => AdminError::Conflict {
                kind: "domain_taken",
                detail,
                field: None,
            },
            other => other,
        })?
        .ok_or_else(|| AdminError::Conflict {
            kind: "signup_not_pending",
            detail: "only a signup in manual_review or provisional can be approved or rejected"
                .into(),
            field: None,
        })?;
    tracing::info!(signup = %id, status = reviewed.status.as_str(), actor = %actor, "signup reviewed");
    Ok(Json(reviewed))
}

/// `POST /admin/v1/signups/{id}/approve`.
#[utoipa::path(post, path = "/admin/v1/signups/{id}/approve", tag = "signups",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Signup id")),
    request_body = ReviewSignup,
    responses(
        (status = 200, description = "Approved: the organization exists on the Free plan", body = Signup),
        super::openapi::BodyRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn approve(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<ReviewSignup>,
) -> Result<Json<Signup>> {
    review(&st, &p, &id, true, &b.note).await
}

/// `POST /admin/v1/signups/{id}/reject`.
#[utoipa::path(post, path = "/admin/v1/signups/{id}/reject", tag = "signups",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Signup id")),
    request_body = ReviewSignup,
    responses(
        (status = 200, description = "Rejected", body = Signup),
        super::openapi::BodyRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn reject(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<ReviewSignup>,
) -> Result<Json<Signup>> {
    review(&st, &p, &id, false, &b.note).await
}
