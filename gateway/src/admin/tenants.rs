//! Organizations and tenants (customers) in the admin API.
//!
//! A tenant is created in the directory as `provisioning`, provisioned on a healthy node of
//! its home region ([`super::provision`]), then set `active`: the gateway serves only active
//! tenants, so a tenant whose provisioning failed is never half-visible, and
//! `POST /admin/v1/tenants/{id}/provision` finishes it (idempotently). Updates change name,
//! tier, status (`active`/`suspended`) and the per-minute limit; a region change is a tenant
//! move (409). Every write re-reads the row into this gateway's cache at once; other replicas
//! get it through `NOTIFY` within milliseconds.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use residency_core::{RegionId, TenantId};
use residency_core::{TenantStatus, Tier};
use residency_directory::{NewTenant, Organization, TenantFilter, TenantPatch, TenantRecord};
use residency_http::page;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::provision::Owner;
use super::{parse_uuid, AdminError, AdminState, Body, RequestId, Q};

/// Largest per-minute limit override.
pub const MAX_RATE_LIMIT_PER_MIN: u32 = 1_000_000;

type Result<T> = std::result::Result<T, AdminError>;

/// `limit` and `cursor` of a keyset-paginated list.
struct Page {
    limit: u32,
    after: Option<Uuid>,
}

impl Page {
    fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self> {
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
    fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row and answers `{ items, next_cursor }`.
    fn answer<T>(
        &self,
        mut rows: Vec<T>,
        id: impl Fn(&T) -> Uuid,
        show: impl Fn(&T) -> Value,
    ) -> Json<Value> {
        let next = page::finish(&mut rows, self.limit, |r| id(r).to_string());
        Json(json!({ "items": rows.iter().map(show).collect::<Vec<_>>(), "next_cursor": next }))
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<()> {
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
// Organizations

/// `POST /admin/v1/organizations` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    name: String,
    domain: String,
    #[serde(default)]
    plan: Option<String>,
}

fn org_json(o: &Organization) -> Value {
    json!({
        "id": o.id, "name": o.name, "domain": o.domain, "plan": o.plan,
        "created_at": o.created_at.to_rfc3339(),
    })
}

/// `POST /admin/v1/organizations`: name, unique domain, plan (`free` by default).
pub async fn create_org(
    State(st): State<Arc<AdminState>>,
    Body(b): Body<CreateOrg>,
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
    Ok((StatusCode::CREATED, Json(org_json(&org))).into_response())
}

/// `GET /admin/v1/organizations` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /admin/v1/organizations`: keyset-paginated by id.
pub async fn list_orgs(
    State(st): State<Arc<AdminState>>,
    Q(q): Q<PageQuery>,
) -> Result<Json<Value>> {
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let rows = st.store()?.list_orgs(page.after, page.fetch()).await?;
    Ok(page.answer(rows, |o| o.id, org_json))
}

/// `GET /admin/v1/organizations/{id}`.
pub async fn get_org(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let org = st
        .store()?
        .org(id)
        .await?
        .ok_or(AdminError::NotFound("organization"))?;
    Ok(Json(org_json(&org)))
}

// ---------------------------------------------------------------------------------------
// Tenants

/// The admin view of a tenant.
#[must_use]
pub fn tenant_json(t: &TenantRecord) -> Value {
    json!({
        "id": t.id,
        "org_id": t.org_id,
        "name": t.name,
        "region": t.region,
        "tier": t.tier.as_str(),
        "status": t.status,
        "rate_limit_per_min": t.rate_limit_per_min.unwrap_or_else(|| t.tier.default_rate_per_min()),
        "limits": { "rate_limit_per_min": t.rate_limit_per_min },
        "version": t.version,
        "created_at": t.created_at.to_rfc3339(),
        "updated_at": t.updated_at.to_rfc3339(),
    })
}

/// `limits` in a create or update body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per-minute quota override; `null` in an update returns to the tier's default.
    #[serde(default, deserialize_with = "residency_http::nullable")]
    rate_limit_per_min: Option<Option<u32>>,
}

fn check_limit(limits: Option<&Limits>) -> Result<Option<Option<u32>>> {
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

/// `POST /admin/v1/tenants` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    name: String,
    region: String,
    tier: Tier,
    #[serde(default)]
    org_id: Option<Uuid>,
    #[serde(default)]
    owner: Option<Owner>,
    #[serde(default)]
    limits: Option<Limits>,
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
pub async fn create_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
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
    let store = st.store()?;
    let created = store
        .create_tenant(
            &st.actor,
            &NewTenant {
                org_id: b.org_id,
                name: b.name,
                region,
                tier: b.tier,
                rate_limit_per_min: quota,
            },
        )
        .await?;
    tracing::info!(tenant = %created.id, region = %created.region, tier = created.tier.as_str(), "tenant created; provisioning");
    let active = activate(&st, created, b.owner.as_ref(), &rid).await?;
    Ok((StatusCode::CREATED, Json(tenant_json(&active))).into_response())
}

/// Provisions `t` on its home node and, if it was `provisioning`, sets it `active`.
async fn activate(
    st: &AdminState,
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
            .update_tenant(&st.actor, t.id, &patch)
            .await
            .map_err(|e| AdminError::from(e).for_tenant(t.id))?
    } else {
        t
    };
    st.gateway.directory().refresh_tenant(id).await;
    Ok(t)
}

/// `POST /admin/v1/tenants/{id}/provision` body (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Reprovision {
    #[serde(default)]
    owner: Option<Owner>,
}

/// `POST /admin/v1/tenants/{id}/provision`: retries provisioning (idempotent on the node)
/// and activates a tenant left `provisioning`; a no-op for an active or suspended one.
pub async fn provision_tenant(
    State(st): State<Arc<AdminState>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let b: Reprovision = if body.is_empty() {
        Reprovision::default()
    } else {
        super::parse_json(&body)?
    };
    check_owner(b.owner.as_ref())?;
    let t = st
        .store()?
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
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
    let t = activate(&st, t, b.owner.as_ref(), &rid).await?;
    Ok(Json(tenant_json(&t)))
}

fn status_str(s: TenantStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /admin/v1/tenants` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    region: Option<String>,
    tier: Option<String>,
    status: Option<String>,
    org_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /admin/v1/tenants`: filters `region`, `tier`, `status`, `org_id`; keyset pages.
pub async fn list_tenants(
    State(st): State<Arc<AdminState>>,
    Q(q): Q<TenantQuery>,
) -> Result<Json<Value>> {
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let region = q
        .region
        .map(|r| {
            RegionId::new(&r)
                .map(|r| r.as_str().to_owned())
                .map_err(|e| AdminError::invalid("region", e.to_string()))
        })
        .transpose()?;
    let filter = TenantFilter {
        region,
        tier: q.tier.map(|t| enum_value("tier", &t)).transpose()?,
        status: q.status.map(|s| enum_value("status", &s)).transpose()?,
        org_id: q.org_id.map(|o| parse_uuid(&o, "org_id")).transpose()?,
        after: page.after,
        limit: page.fetch(),
    };
    let rows = st.store()?.list_tenants(&filter).await?;
    Ok(page.answer(rows, |t| t.id, tenant_json))
}

/// `GET /admin/v1/tenants/{id}`.
pub async fn get_tenant(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let t = st
        .store()?
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
    Ok(Json(tenant_json(&t)))
}

/// The statuses an update may set.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum PatchStatus {
    Active,
    Suspended,
}

/// `PATCH /admin/v1/tenants/{id}` body (after the `region` check).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    status: Option<PatchStatus>,
    #[serde(default)]
    limits: Option<Limits>,
}

/// `PATCH /admin/v1/tenants/{id}`: name, tier, status (`active`/`suspended`), limits.
/// Effective at this gateway at once and at every replica within a second (`NOTIFY`).
pub async fn update_tenant(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Body(raw): Body<Map<String, Value>>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    if raw.contains_key("region") {
        return Err(AdminError::Conflict {
            kind: "tenant_move_required",
            detail: format!(
                "a tenant's region is changed by a tenant move, not an update: the data must move \
                 with it. Tenant moves are not built yet (planned as POST /admin/v1/tenants/{id}/move)"
            ),
            field: Some("region".into()),
        });
    }
    let p: Patch = serde_path_to_error::deserialize(Value::Object(raw)).map_err(|e| {
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
    if p.name.is_none() && p.tier.is_none() && p.status.is_none() && quota.is_none() {
        return Err(AdminError::invalid(
            "body",
            "nothing to update: send name, tier, status or limits",
        ));
    }
    let store = st.store()?;
    let current = store
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
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
        status: p.status.map(|s| match s {
            PatchStatus::Active => TenantStatus::Active,
            PatchStatus::Suspended => TenantStatus::Suspended,
        }),
        rate_limit_per_min: quota,
    };
    let t = store.update_tenant(&st.actor, id, &patch).await?;
    st.gateway
        .directory()
        .refresh_tenant(TenantId::from_uuid(id))
        .await;
    tracing::info!(tenant = %id, actor = %st.actor, "tenant updated");
    Ok(Json(tenant_json(&t)))
}

/// `GET /admin/v1/tenants/{id}/history`: every change, oldest first, with its actor.
pub async fn history(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = parse_uuid(&id, "id")?;
    let store = st.store()?;
    store
        .tenant(id)
        .await?
        .ok_or(AdminError::NotFound("tenant"))?;
    let items: Vec<Value> = store
        .history(id)
        .await?
        .into_iter()
        .map(|h| {
            json!({
                "id": h.id, "at": h.at.to_rfc3339(), "actor": h.actor, "change": h.change,
                "region": h.region, "status": h.status, "tier": h.tier, "version": h.version,
                "detail": h.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
