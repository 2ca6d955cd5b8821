//! Organizations (SaaS partners owning tenants) in the admin API: create with a unique
//! domain, list by keyset pages, get one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use residency_core::wire::admin::{CreateOrganization, Organization, Page as PageOf};
use serde::Deserialize;
use utoipa::IntoParams;

use super::tenants::{text, Page};
use super::Q;
use super::{parse_uuid, AdminError, AdminState, Body, Principal};
use axum::Extension;

type Result<T> = std::result::Result<T, AdminError>;

/// `POST /admin/v1/organizations`: name, unique domain, plan (`free` by default).
#[utoipa::path(post, path = "/admin/v1/organizations", tag = "organizations",
    security(("admin_token" = [])),
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Created", body = Organization),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 500, response = super::openapi::Internal),
        (status = 501, response = super::openapi::NotImplemented),
        (status = 503, response = super::openapi::Unavailable),
    ))]
pub(crate) async fn create_org(
    State(st): State<Arc<AdminState>>,
    Body(b): Body<CreateOrganization>,
) -> Result<Response> {
    text("name", &b.name, 200)?;
    let domain_ok = b.domain.len() <= 253
        && b.domain.contains('.')
        && b.domain
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    if !domain_ok {
        return Err(AdminError::invalid(
            "domain",
            "must be a lowercase dns name",
        ));
    }
    let plan = b.plan.as_deref().unwrap_or("free");
    let plan_ok = (1..=32).contains(&plan.len())
        && plan.as_bytes()[0].is_ascii_lowercase()
        && plan
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
    if !plan_ok {
        return Err(AdminError::invalid(
            "plan",
            "must be 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter",
        ));
    }
    let org = st
        .store()?
        .create_org(&st.actor, &b.name, &b.domain, plan)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::Conflict { detail, .. } => AdminError::Conflict {
                kind: "domain_taken",
                detail,
                field: Some("domain".into()),
            },
            other => other,
        })?;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

/// `GET /admin/v1/organizations` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /admin/v1/organizations`: keyset-paginated by id.
#[utoipa::path(get, path = "/admin/v1/organizations", tag = "organizations",
    security(("admin_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page, by id", body = PageOf<Organization>),
        super::openapi::ListRefusals,
    ))]
pub(crate) async fn list_orgs(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Q(q): Q<PageQuery>,
) -> Result<Json<PageOf<Organization>>> {
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let store = st.store()?;
    let rows = match p.org() {
        None => store.list_orgs(page.after, page.fetch()).await?,
        // An organization principal's list is its own organization.
        Some(mine) => store
            .org(residency_core::OrgId::from_uuid(mine))
            .await?
            .filter(|o| page.after.is_none_or(|a| o.id.as_uuid() > a))
            .into_iter()
            .collect(),
    };
    Ok(page.answer(rows, |o| o.id.as_uuid(), |o| o))
}

/// `GET /admin/v1/organizations/{id}`.
#[utoipa::path(get, path = "/admin/v1/organizations/{id}", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization", body = Organization),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn get_org(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Organization>> {
    let id = visible_org(&p, &id)?;
    let org = st
        .store()?
        .org(residency_core::OrgId::from_uuid(id))
        .await?
        .ok_or(AdminError::NotFound("organization"))?;
    Ok(Json(org))
}

/// The organization id from a path, or 404 `organization` when `p` may not see it (another
/// organization's answers like one that does not exist).
pub(super) fn visible_org(p: &Principal, raw: &str) -> Result<uuid::Uuid> {
    let id = parse_uuid(raw, "id")?;
    if p.sees_org(Some(id)) {
        Ok(id)
    } else {
        Err(AdminError::NotFound("organization"))
    }
}
