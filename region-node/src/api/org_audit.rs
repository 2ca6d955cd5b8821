//! `POST /internal/v1/audit-events/search`: one region's part of an organization-wide audit
//! search (`residency_core::wire::org_audit`). Called by the gateway's admin API with a
//! system assertion (the `/internal` guard, [`crate::auth::system`], refuses every customer
//! assertion); the body names the organization's customers homed here, as the gateway read
//! them from the directory.
//!
//! Each customer is read in its **own** tenant transaction ([`crate::db::tenant_tx::Db::system`]
//! with that customer as the tenant), so Row-Level Security scopes every query to one
//! customer: there is no cross-tenant SQL, and a customer the node does not hold simply has no
//! rows. At most [`CONCURRENCY`] customers are read at once, so a large organization does
//! not take the whole pool from customer requests. The per-customer pages (each already
//! sorted and cut to `limit`) are merged here by `(at, id)` descending.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use residency_core::wire::org_audit::{
    EventKey, OrgAuditEvent, SearchRequest, SearchResponse, MAX_TENANTS_PER_CALL,
};
use residency_core::TenantId;

use super::extract::Body;
use super::resource::object;
use super::text_field;
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// How many customers' transactions run at once for one search.
const CONCURRENCY: usize = 4;

/// The largest `limit` (a page of 500 and the one more that tells whether another follows).
const MAX_LIMIT: u32 = 501;

/// One customer's newest matching events, under its own RLS context. The explicit
/// `tenant_id = $8` only lets the `(tenant_id, at)` index serve the query; the policy is what
/// confines it.
const SEARCH: &str = "\
SELECT id, at, actor, action, target_type, target_id, request_id, detail FROM audit_events
WHERE tenant_id = $8
  AND ($1::text IS NULL OR action = $1)
  AND ($2::text IS NULL OR actor = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::timestamptz IS NULL OR at < $4)
  AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6::uuid))
ORDER BY at DESC, id DESC
LIMIT $7";

/// `POST /internal/v1/audit-events/search`.
pub(super) async fn search(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    if body.limit == 0 || body.limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if body.tenants.len() > MAX_TENANTS_PER_CALL {
        return Err(ApiError::invalid(
            "tenants",
            format!("at most {MAX_TENANTS_PER_CALL} per call"),
        ));
    }
    for (field, v) in [("action", &body.action), ("actor", &body.actor)] {
        if let Some(v) = v {
            text_field(field, v, 1, 256)?;
        }
    }
    let body = Arc::new(body);
    let region = st.region.id.to_string();
    let pages: Vec<Vec<OrgAuditEvent>> = futures_util::stream::iter(body.tenants.clone())
        .map(|tenant| one_tenant(&st, &caller, tenant, Arc::clone(&body), region.clone()))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut items: Vec<OrgAuditEvent> = pages.into_iter().flatten().collect();
    items.sort_unstable_by_key(|e| std::cmp::Reverse(e.key()));
    items.truncate(usize::try_from(body.limit).unwrap_or(usize::MAX));
    Ok(Json(SearchResponse { items }))
}

/// The newest matching events of `tenant`, read in a transaction scoped to it.
async fn one_tenant(
    st: &AppState,
    caller: &Caller,
    tenant: TenantId,
    q: Arc<SearchRequest>,
    region: String,
) -> Result<Vec<OrgAuditEvent>, ApiError> {
    // The system caller, re-scoped to this one customer: the transaction's `app.tenant_id`
    // is this customer's, so RLS shows its rows and nobody else's.
    let scoped = Caller {
        tenant,
        ..caller.clone()
    };
    st.db
        .system(&scoped, move |tx| {
            Box::pin(async move {
                let before: Option<EventKey> = q.before;
                let limit = i64::from(q.limit);
                let rows = tx
                    .query(
                        SEARCH,
                        &[
                            &q.action,
                            &q.actor,
                            &q.since,
                            &q.until,
                            &before.map(|k| k.at),
                            &before.map(|k| k.id),
                            &limit,
                            &tx.tenant(),
                        ],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(OrgAuditEvent {
                            tenant_id: tenant,
                            region: region.clone(),
                            id: r.get("id"),
                            at: r.get("at"),
                            actor: r.get("actor"),
                            action: r.get("action"),
                            target_type: r.get("target_type"),
                            target_id: r.get("target_id"),
                            request_id: r.get("request_id"),
                            detail: object(r, "detail")?,
                        })
                    })
                    .collect()
            })
        })
        .await
}
