//! `GET /admin/v1/organizations/{id}/audit-events`: an organization's audit history across
//! every region, read in place.
//!
//! The organization's customers are read from the directory and grouped by home region; each
//! region's node is asked **in parallel** (`POST /internal/v1/audit-events/search`, a system
//! assertion minted by the admin provisioner, never a customer credential) for its newest
//! `limit + 1` matching events older than the cursor; the node reads each customer under that
//! customer's own RLS context. The regions' sorted answers are merged here by `(at, id)`
//! descending and cut to the page. Nothing is stored outside the regions.
//!
//! A region that does not answer within `admin.provision_timeout` (or answers with an error)
//! is named in `incomplete_regions` and the others still answer with 200: one slow region
//! never makes the search fail. Its events are missing from that page (and a cursor taken
//! from it skips them), which the caller sees from `incomplete_regions`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use residency_core::wire::org_audit::{
    EventKey, OrgAuditEvent, OrgAuditPage, SearchRequest, SearchResponse, MAX_TENANTS_PER_CALL,
    SEARCH_PATH,
};
use residency_core::{OrgId, RegionId, TenantId};
use residency_directory::TenantFilter;
use residency_http::page;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::orgs::visible_org;
use super::provision::NodeCall;
use super::{parse_uuid, AdminError, AdminState, Principal, RequestId, Q};
use crate::metrics as m;

type Result<T> = std::result::Result<T, AdminError>;

/// Query of `GET /admin/v1/organizations/{id}/audit-events`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Only events of this action (`workflow.create`).
    action: Option<String>,
    /// Only events of this actor (subject).
    actor: Option<String>,
    /// Only events of this customer (one of the organization's; another id answers 404).
    #[param(value_type = Option<Uuid>)]
    tenant_id: Option<String>,
    /// Only events at or after this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /admin/v1/organizations/{id}/audit-events`.
#[utoipa::path(get, path = "/admin/v1/organizations/{id}/audit-events", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id"), SearchQuery),
    responses(
        (status = 200, description = "One page of the organization's audit events, newest first, merged across regions; `incomplete_regions` names regions that did not answer", body = OrgAuditPage),
        super::openapi::ByIdRefusals,
        (status = 422, response = super::openapi::Unprocessable),
    ))]
pub(crate) async fn search(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    Q(q): Q<SearchQuery>,
) -> Result<Json<OrgAuditPage>> {
    let org = visible_org(&p, &id)?;
    let limit = page::limit_text(q.limit.as_deref())
        .map_err(|e| AdminError::invalid(e.field(), e.detail()))?;
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    for (field, v) in [("action", &q.action), ("actor", &q.actor)] {
        if v.as_ref()
            .is_some_and(|v| v.is_empty() || v.chars().count() > 256)
        {
            return Err(AdminError::invalid(field, "must be 1-256 characters"));
        }
    }
    let since = time("since", q.since.as_deref())?;
    let until = time("until", q.until.as_deref())?;
    let only = q
        .tenant_id
        .as_deref()
        .map(|t| parse_uuid(t, "tenant_id"))
        .transpose()?;
    let store = st.store()?;
    store
        .org(OrgId::from_uuid(org))
        .await?
        .ok_or(AdminError::NotFound("organization"))?;
    let by_region = customers_by_region(store, org, only).await?;
    if only.is_some() && by_region.is_empty() {
        // Not one of this organization's customers: the same answer as a missing one.
        return Err(AdminError::NotFound("tenant"));
    }
    let ask = SearchRequest {
        tenants: Vec::new(),
        action: q.action,
        actor: q.actor,
        since,
        until,
        before,
        limit: limit + 1,
    };
    let asked = by_region.into_iter().map(|(region, tenants)| {
        let ask = &ask;
        let st = &st;
        let rid = &rid;
        async move {
            let answer = tokio::time::timeout(
                st.provisioner.timeout(),
                one_region(st, &region, tenants, ask, rid),
            )
            .await;
            match answer {
                Ok(Ok(items)) => Ok(items),
                Ok(Err(e)) => {
                    tracing::warn!(region = %region, error = %e, "org audit search: region left out");
                    Err(region)
                }
                Err(_) => {
                    tracing::warn!(region = %region, "org audit search: region did not answer in time");
                    Err(region)
                }
            }
        }
    });
    let mut items = Vec::new();
    let mut incomplete_regions = Vec::new();
    for answer in futures_util::future::join_all(asked).await {
        match answer {
            Ok(mut region_items) => items.append(&mut region_items),
            Err(region) => {
                metrics::counter!(m::ORG_AUDIT_INCOMPLETE_TOTAL, "region" => region.clone())
                    .increment(1);
                incomplete_regions.push(region);
            }
        }
    }
    items.sort_unstable_by_key(|e: &OrgAuditEvent| std::cmp::Reverse(e.key()));
    let next_cursor = page::finish(&mut items, limit, |e| cursor_key(e.key()));
    Ok(Json(OrgAuditPage {
        items,
        next_cursor,
        incomplete_regions,
    }))
}

/// The organization's customers (or just `only`, when it is one of them), grouped by home
/// region, read from the directory page by page.
async fn customers_by_region(
    store: &residency_directory::Store,
    org: Uuid,
    only: Option<Uuid>,
) -> Result<BTreeMap<String, Vec<TenantId>>> {
    let mut by_region: BTreeMap<String, Vec<TenantId>> = BTreeMap::new();
    if let Some(t) = only {
        if let Some(t) = store.tenant(t).await?.filter(|t| t.org_id == Some(org)) {
            by_region
                .entry(t.region)
                .or_default()
                .push(TenantId::from_uuid(t.id));
        }
        return Ok(by_region);
    }
    let mut after = None;
    loop {
        let rows = store
            .list_tenants(&TenantFilter {
                org_id: Some(OrgId::from_uuid(org)),
                after,
                limit: 1000,
                ..TenantFilter::default()
            })
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        let full = rows.len() == 1000;
        for t in rows {
            by_region
                .entry(t.region)
                .or_default()
                .push(TenantId::from_uuid(t.id));
        }
        if !full {
            break;
        }
    }
    Ok(by_region)
}

/// One region's newest matching events, asked in calls of at most
/// [`MAX_TENANTS_PER_CALL`] customers.
async fn one_region(
    st: &AdminState,
    region: &str,
    tenants: Vec<TenantId>,
    ask: &SearchRequest,
    rid: &RequestId,
) -> Result<Vec<OrgAuditEvent>> {
    let region_id =
        RegionId::new(region).map_err(|e| AdminError::Internal(format!("stored region: {e}")))?;
    let call = NodeCall {
        path: SEARCH_PATH,
        what: "the audit search",
        kind: "audit_search_failed",
    };
    let mut items = Vec::new();
    for chunk in tenants.chunks(MAX_TENANTS_PER_CALL) {
        let body = SearchRequest {
            tenants: chunk.to_vec(),
            ..ask.clone()
        };
        // The system assertion names no one customer (nil `tid`): the customers are the
        // body's, which only a system assertion can send.
        let answer: SearchResponse = st
            .provisioner
            .move_call(
                st.gateway.regions(),
                &region_id,
                TenantId::from_uuid(Uuid::nil()),
                &call,
                &body,
                rid.header_value(),
            )
            .await?;
        items.extend(answer.items);
    }
    Ok(items)
}

/// The cursor key of an event: `<unix microseconds>.<id>`.
fn cursor_key(k: EventKey) -> String {
    format!("{}.{}", k.at.timestamp_micros(), k.id)
}

fn decode_cursor(raw: &str) -> Result<EventKey> {
    let bad = || AdminError::bad_request("cursor", page::PageError::Cursor.detail());
    let key = page::decode_cursor(raw).map_err(|_| bad())?;
    let (micros, id) = key.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(EventKey { at, id })
}

fn time(field: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| AdminError::invalid(field, "must be an RFC 3339 timestamp"))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let k = EventKey {
            at: DateTime::<Utc>::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let mut rows = vec![k, k];
        let next = page::finish(&mut rows, 1, |k| cursor_key(*k)).unwrap();
        assert_eq!(decode_cursor(&next).unwrap(), k);
        assert!(decode_cursor("garbage").is_err());
        let no_id = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "c1.123.not-a-uuid",
        );
        assert!(decode_cursor(&no_id).is_err());
    }
}
