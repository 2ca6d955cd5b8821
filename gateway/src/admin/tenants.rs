//! Tenants (customers) in the admin API, and the list plumbing (`Q`, `Page`) it shares with
//! [`super::orgs`].
//!
//! A tenant is created in the directory as `provisioning`, provisioned on a healthy node of
//! its home region ([`super::provision`]), then set `active`: the gateway serves only active
//! tenants, so a tenant whose provisioning failed is never half-visible, and
//! `POST /admin/v1/tenants/{id}/provision` finishes it (idempotently). Updates change name,
//! tier, status (`active`/`suspended`) and the per-minute limit; a region change is a tenant
//! move (409 pointing to `POST /admin/v1/tenants/{id}/move`, [`super::moves`]). Every write re-reads the row into this gateway's cache at once; other replicas
//! get it through `NOTIFY` within milliseconds.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use residency_core::wire::admin::{
    CreateTenant, LimitsPatch, List, Owner, Page as PageOf, Reprovision, Tenant,
    TenantHistoryEntry, UpdateTenant,
};
use residency_core::{RegionId, TenantId};
use residency_core::{TenantStatus, Tier};
use residency_directory::{NewTenant, Store, TenantFilter, TenantPatch, TenantRecord};
use residency_http::page;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use super::{parse_uuid, AdminError, AdminState, Body, Principal, RequestId, Q};

/// Largest per-minute limit override: one million requests a second, more than one gateway
/// serves, so in effect "unlimited" for a tenant that should never be limited (benchmarks).
pub(crate) const MAX_RATE_LIMIT_PER_MIN: u32 = 60_000_000;

/// A provisional organization (created by a `provisional` signup, not yet reviewed) holds at
/// most this many customers, on the `starter` tier only.
pub(crate) const PROVISIONAL_MAX_TENANTS: usize = 1;

type Result<T> = std::result::Result<T, AdminError>;

/// The tenant `id` in `store` as `p` may see it, or 404 `tenant`: another organization's
/// tenant answers exactly like a nonexistent one.
pub(super) async fn existing(store: &Store, p: &Principal, id: Uuid) -> Result<TenantRecord> {
    store
        .tenant(id)
        .await?
        .filter(|t| p.sees_org(t.org_id))
        .ok_or(AdminError::NotFound("tenant"))
}

/// `limit` and `cursor` of a keyset-paginated list.
pub(super) struct Page {
    limit: u32,
    pub(super) after: Option<Uuid>,
}

impl Page {
    pub(super) fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self> {
        let bad = |e: page::PageError| match e {
            page::PageError::Limit => AdminError::invalid(e.field(), e.detail()),
            page::PageError::Cursor => AdminError::bad_request(e.field(), e.detail()),
        };
        let limit = page::limit_text(limit).map_err(bad)?;
        let after = cursor
            .map(page::decode_uuid_cursor)
            .transpose()
            .map_err(bad)?;
        Ok(Self { limit, after })
    }

    /// One row more than the page is fetched to know whether another page follows.
    pub(super) fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row and answers `{ items, next_cursor }`.
    pub(super) fn answer<T, W>(
        &self,
        mut rows: Vec<T>,
        id: impl Fn(&T) -> Uuid,
        show: impl Fn(T) -> W,
    ) -> Json<PageOf<W>> {
        let next_cursor = page::finish(&mut rows, self.limit, |r| id(r).to_string());
        Json(PageOf {
            items: rows.into_iter().map(show).collect(),
            next_cursor,
        })
    }
}

pub(super) fn text(field: &str, v: &str, max: usize) -> Result<()> {
    let n = v.chars().count();
    if n == 0 || n > max || v.trim() != v {
        return Err(AdminError::invalid(
            field,
            format!("must be 1-{max} characters without leading or trailing spaces"),
        ));
    }
    Ok(())
}

fn enum_value<T: DeserializeOwned>(field: &str, raw: &str) -> Result<T> {
    serde_json::from_value(Value::String(raw.to_owned()))
        .map_err(|e| AdminError::invalid(field, e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Tenants

fn check_limit(limits: Option<&LimitsPatch>) -> Result<Option<Option<u32>>> {
    let value = limits.and_then(|l| l.rate_limit_per_min);
    if let Some(Some(n)) = value {
        if n == 0 || n > MAX_RATE_LIMIT_PER_MIN {
            return Err(AdminError::invalid(
                "limits.rate_limit_per_min",
                format!("must be between 1 and {MAX_RATE_LIMIT_PER_MIN}"),
            ));
        }
    }
    Ok(value)
}

fn check_owner(owner: Option<&Owner>) -> Result<()> {
    if let Some(o) = owner {
        text("owner.subject", &o.subject, 256)?;
        if o.email.len() > 320 || !o.email.contains('@') {
            return Err(AdminError::invalid(
                "owner.email",
                "must be an email address",
            ));
        }
    }
    Ok(())
}

/// `POST /admin/v1/tenants`: directory row (`provisioning`) → home node → `active` → 201.
#[utoipa::path(post, path = "/admin/v1/tenants", tag = "tenants",
    security(("admin_token" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created, provisioned on its home node and active", body = Tenant),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 500, response = super::openapi::Internal),
        (status = 501, response = super::openapi::NotImplemented),
        (status = 502, response = super::openapi::BadGateway),
        (status = 503, response = super::openapi::Unavailable),
    ))]
pub(crate) async fn create_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Extension(p): Extension<Principal>,
    Body(b): Body<CreateTenant>,
) -> Result<Response> {
    text("name", &b.name, 200)?;
    let region =
        RegionId::new(&b.region).map_err(|e| AdminError::invalid("region", e.to_string()))?;
    if !st.regions.iter().any(|r| r.id == region) {
        let known: Vec<&str> = st.regions.iter().map(|r| r.id.as_str()).collect();
        return Err(AdminError::invalid(
            "region",
            format!(
                "{region} is not a configured region (configured: {})",
                known.join(", ")
            ),
        ));
    }
    check_owner(b.owner.as_ref())?;
    let quota = check_limit(b.limits.as_ref())?.flatten();
    if quota.is_some() {
        platform_term(&p, "limits")?;
    }
    let store = st.store()?;
    // An organization principal creates tenants in its own organization only: naming
    // another one is answered like naming one that does not exist.
    let org_id = match (p.org(), b.org_id) {
        (None, org) => org,
        (Some(mine), None) => Some(residency_core::OrgId::from_uuid(mine)),
        (Some(mine), Some(o)) if o.as_uuid() == mine => Some(o),
        (Some(_), Some(_)) => return Err(AdminError::NotFound("organization")),
    };
    if let Some(o) = org_id {
        provisional_limits(store, o, b.tier).await?;
    }
    let created = store
        .create_tenant(
            &p.actor(),
            &NewTenant {
                org_id,
                name: b.name,
                region,
                tier: b.tier,
                rate_limit_per_min: quota,
            },
        )
        .await?;
    tracing::info!(tenant = %created.id, region = %created.region, tier = created.tier.as_str(), "tenant created; provisioning");
    let active = activate(&st, &p, created, b.owner.as_ref(), &rid).await?;
    Ok((StatusCode::CREATED, Json(Tenant::from(&active))).into_response())
}

/// A customer's tier changes and rate-limit overrides are commercial terms: the platform
/// admin's, never an organization token's (403 `platform_admin_required` naming the field).
fn platform_term(p: &Principal, field: &str) -> Result<()> {
    if p.org().is_some() {
        return Err(AdminError::Forbidden {
            kind: "platform_admin_required",
            detail: format!("{field}: only the platform admin sets a customer's {field}"),
        });
    }
    Ok(())
}

/// The reduced limits of a provisional organization: 403 `provisional_org_limit` for a tier
/// above `starter` or a customer beyond [`PROVISIONAL_MAX_TENANTS`]. An unknown organization
/// is left to the insert (422 naming `org_id`).
async fn provisional_limits(store: &Store, org: residency_core::OrgId, tier: Tier) -> Result<()> {
    let Some(o) = store.org(org).await? else {
        return Ok(());
    };
    if !o.provisional {
        return Ok(());
    }
    let refuse = |detail: String| AdminError::Forbidden {
        kind: "provisional_org_limit",
        detail,
    };
    if tier != Tier::Starter {
        return Err(refuse(
            "this organization is provisional until a platform admin reviews its signup: starter tier only".into(),
        ));
    }
    let existing = store
        .list_tenants(&TenantFilter {
            region: None,
            tier: None,
            status: None,
            org_id: Some(org),
            after: None,
            limit: i64::try_from(PROVISIONAL_MAX_TENANTS).unwrap_or(i64::MAX) + 1,
        })
        .await?;
    let live = existing
        .iter()
        .filter(|t| t.status != TenantStatus::Deleted)
        .count();
    if live >= PROVISIONAL_MAX_TENANTS {
        return Err(refuse(format!(
            "this organization is provisional until a platform admin reviews its signup: at most {PROVISIONAL_MAX_TENANTS} customer"
        )));
    }
    Ok(())
}

/// Provisions `t` on its home node and, if it was `provisioning`, sets it `active`.
async fn activate(
    st: &AdminState,
    p: &Principal,
    t: TenantRecord,
    owner: Option<&Owner>,
    rid: &RequestId,
) -> Result<TenantRecord> {
    let id = TenantId::from_uuid(t.id);
    let region = RegionId::new(&t.region)
        .map_err(|e| AdminError::Internal(format!("stored region: {e}")))?;
    st.provisioner
        .provision(
            st.gateway.regions(),
            &region,
            id,
            &t.name,
            owner,
            rid.header_value(),
        )
        .await
        .map_err(|e| e.for_tenant(t.id))?;
    let t = if t.status == TenantStatus::Provisioning {
        let patch = TenantPatch {
            status: Some(TenantStatus::Active),
            ..TenantPatch::default()
        };
        st.store()?
            .update_tenant(&p.actor(), t.id, &patch)
            .await
            .map_err(|e| AdminError::from(e).for_tenant(t.id))?
    } else {
        t
    };
    st.gateway.directory().refresh_tenant(id).await;
    Ok(t)
}

/// `POST /admin/v1/tenants/{id}/provision`: retries provisioning (idempotent on the node)
/// and activates a tenant left `provisioning`; a no-op for an active or suspended one.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/provision", tag = "tenants",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body(content = Option<Reprovision>, description = "Optional: an empty body or `null` means no owner"),
    responses(
        (status = 200, description = "Provisioned (idempotent); active unless suspended", body = Tenant),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 500, response = super::openapi::Internal),
        (status = 501, response = super::openapi::NotImplemented),
        (status = 502, response = super::openapi::BadGateway),
        (status = 503, response = super::openapi::Unavailable),
    ))]
pub(crate) async fn provision_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Tenant>> {
    let id = parse_uuid(&id, "id")?;
    // The body is optional: empty or `null` means no owner.
    let b: Reprovision = if body.is_empty() {
        Reprovision::default()
    } else {
        super::parse_json::<Option<Reprovision>>(&body)?.unwrap_or_default()
    };
    check_owner(b.owner.as_ref())?;
    let t = existing(st.store()?, &p, id).await?;
    if matches!(t.status, TenantStatus::Moving | TenantStatus::Deleted) {
        return Err(AdminError::Conflict {
            kind: "tenant_not_provisionable",
            detail: format!(
                "the tenant is {}; it cannot be provisioned",
                status_str(t.status)
            ),
            field: None,
        });
    }
    let t = activate(&st, &p, t, b.owner.as_ref(), &rid).await?;
    Ok(Json(Tenant::from(&t)))
}

fn status_str(s: TenantStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /admin/v1/tenants` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantQuery {
    /// Only this home region.
    region: Option<String>,
    /// Only this tier.
    #[param(value_type = Option<Tier>)]
    tier: Option<String>,
    /// Only this status.
    #[param(value_type = Option<TenantStatus>)]
    status: Option<String>,
    /// Only this organization.
    #[param(value_type = Option<Uuid>)]
    org_id: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /admin/v1/tenants`: filters `region`, `tier`, `status`, `org_id`; keyset pages.
#[utoipa::path(get, path = "/admin/v1/tenants", tag = "tenants",
    security(("admin_token" = [])),
    params(TenantQuery),
    responses(
        (status = 200, description = "One page, by id", body = PageOf<Tenant>),
        super::openapi::ListRefusals,
    ))]
pub(crate) async fn list_tenants(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Q(q): Q<TenantQuery>,
) -> Result<Json<PageOf<Tenant>>> {
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let region = q
        .region
        .map(|r| {
            RegionId::new(&r)
                .map(|r| r.as_str().to_owned())
                .map_err(|e| AdminError::invalid("region", e.to_string()))
        })
        .transpose()?;
    let asked = q
        .org_id
        .map(|o| parse_uuid(&o, "org_id").map(residency_core::OrgId::from_uuid))
        .transpose()?;
    // An organization principal lists its own organization's tenants only; asking for
    // another organization's is an empty list, as for one without tenants.
    let org_id = match (p.org(), asked) {
        (None, asked) => asked,
        (Some(mine), Some(o)) if o.as_uuid() != mine => {
            return Ok(page.answer(Vec::new(), |t: &TenantRecord| t.id, |t| Tenant::from(&t)))
        }
        (Some(mine), _) => Some(residency_core::OrgId::from_uuid(mine)),
    };
    let filter = TenantFilter {
        region,
        tier: q.tier.map(|t| enum_value("tier", &t)).transpose()?,
        status: q.status.map(|s| enum_value("status", &s)).transpose()?,
        org_id,
        after: page.after,
        limit: page.fetch(),
    };
    let rows = st.store()?.list_tenants(&filter).await?;
    Ok(page.answer(rows, |t| t.id, |t| Tenant::from(&t)))
}

/// `GET /admin/v1/tenants/{id}`.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}", tag = "tenants",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn get_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Tenant>> {
    let id = parse_uuid(&id, "id")?;
    let t = existing(st.store()?, &p, id).await?;
    Ok(Json(Tenant::from(&t)))
}

/// `PATCH /admin/v1/tenants/{id}`: name, tier, status (`active`/`suspended`), limits.
/// Effective at this gateway at once and at every replica within a second (`NOTIFY`).
#[utoipa::path(patch, path = "/admin/v1/tenants/{id}", tag = "tenants",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "Updated", body = Tenant),
        super::openapi::BodyRefusals,
        (status = 409, response = super::openapi::Conflict),
    ))]
pub(crate) async fn update_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Body(raw): Body<Map<String, Value>>,
) -> Result<Json<Tenant>> {
    let id = parse_uuid(&id, "id")?;
    if raw.contains_key("region") {
        return Err(AdminError::Conflict {
            kind: "tenant_move_required",
            detail: format!(
                "a tenant's region is changed by a tenant move, not an update: the data must move \
                 with it. Use POST /admin/v1/tenants/{id}/move {{\"to\": \"<region>\"}}"
            ),
            field: Some("region".into()),
        });
    }
    let p: UpdateTenant = serde_path_to_error::deserialize(Value::Object(raw)).map_err(|e| {
        let path = e.path().to_string();
        AdminError::invalid(
            if path == "." { "body".to_owned() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    if let Some(n) = &p.name {
        text("name", n, 200)?;
    }
    let quota = check_limit(p.limits.as_ref())?;
    if p.tier.is_some() {
        platform_term(&who, "tier")?;
    }
    if quota.is_some() {
        platform_term(&who, "limits")?;
    }
    if p.name.is_none() && p.tier.is_none() && p.status.is_none() && quota.is_none() {
        return Err(AdminError::invalid(
            "body",
            "nothing to update: send name, tier, status or limits",
        ));
    }
    let store = st.store()?;
    let current = existing(store, &who, id).await?;
    if !matches!(
        current.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        return Err(AdminError::Conflict {
            kind: "tenant_not_updatable",
            detail: format!(
                "the tenant is {}; only active or suspended tenants can be updated{}",
                status_str(current.status),
                if current.status == TenantStatus::Provisioning {
                    format!(" (finish it with POST /admin/v1/tenants/{id}/provision)")
                } else {
                    String::new()
                }
            ),
            field: p.status.map(|_| "status".to_owned()),
        });
    }
    let patch = TenantPatch {
        name: p.name,
        tier: p.tier,
        status: p.status.map(TenantStatus::from),
        rate_limit_per_min: quota,
    };
    let actor = who.actor();
    let t = store.update_tenant(&actor, id, &patch).await?;
    st.gateway
        .directory()
        .refresh_tenant(TenantId::from_uuid(id))
        .await;
    tracing::info!(tenant = %id, actor = %actor, "tenant updated");
    Ok(Json(Tenant::from(&t)))
}

/// `GET /admin/v1/tenants/{id}/history`: every change, oldest first, with its actor.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/history", tag = "tenants",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Every change, oldest first", body = List<TenantHistoryEntry>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn history(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<List<TenantHistoryEntry>>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    existing(store, &p, id).await?;
    Ok(Json(List {
        items: store.history(id).await?,
    }))
}
