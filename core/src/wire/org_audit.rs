//! Organization-wide audit search (`GET /admin/v1/organizations/{id}/audit-events`): the
//! admin API's answer, and the gateway → region node call behind it
//! (`POST /internal/v1/audit-events/search`, system assertion).
//!
//! The gateway fans the search out to every region holding customers of the organization,
//! each node reads `audit_events` in place (one tenant transaction per customer, under that
//! customer's own RLS context) and answers its newest matching events; the gateway merges
//! the regions' sorted pages by `(at, id)` descending. Nothing is copied out of a region
//! beyond the page it answers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::customer::JsonObject;
use crate::TenantId;

/// The node's internal search path.
pub const SEARCH_PATH: &str = "/internal/v1/audit-events/search";

/// Most customers one search call names (the gateway splits larger organizations into
/// several calls to the same region).
pub const MAX_TENANTS_PER_CALL: usize = 1000;

/// The position of an event in the merged order, `(at, id)` descending: a page continues
/// strictly after (older than) this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventKey {
    /// The event's time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// Its id (ties on `at` are broken by id).
    pub id: Uuid,
}

/// `POST /internal/v1/audit-events/search` body. The customers are named by the gateway
/// from the directory; the endpoint accepts only system assertions, so no customer can
/// name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The customers to read, each under its own RLS context (at most
    /// [`MAX_TENANTS_PER_CALL`]).
    pub tenants: Vec<TenantId>,
    /// Only events of this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only events of this actor (subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only events at or after this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::rfc3339::option"
    )]
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::rfc3339::option"
    )]
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this key (the previous page's last event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<EventKey>,
    /// At most this many events (1-501: a page and one more).
    pub limit: u32,
}

/// `POST /internal/v1/audit-events/search` answer: at most `limit` events of this region,
/// newest first by `(at, id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// The events.
    pub items: Vec<OrgAuditEvent>,
}

/// One audit event of one of an organization's customers, with where it lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrgAuditEvent {
    /// The customer.
    pub tenant_id: TenantId,
    /// The region whose database holds the event.
    pub region: String,
    /// The event's id (time-ordered).
    pub id: Uuid,
    /// When the write happened.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The subject that made it.
    pub actor: String,
    /// `<resource>.<verb>` (`workflow.create`).
    pub action: String,
    /// The kind of resource written.
    pub target_type: String,
    /// Its key.
    pub target_id: String,
    /// The `x-request-id` of the write.
    pub request_id: String,
    /// Free-form details of the action (data, not contract).
    #[schema(value_type = Object)]
    pub detail: JsonObject,
}

impl OrgAuditEvent {
    /// Its position in the merged order.
    #[must_use]
    pub fn key(&self) -> EventKey {
        EventKey {
            at: self.at,
            id: self.id,
        }
    }
}

/// `GET /admin/v1/organizations/{id}/audit-events` answer: one page of the merged events,
/// newest first; `incomplete_regions` names every region that did not answer in time (its
/// events are missing from this page, so the answer is partial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrgAuditPage {
    /// This page's events, newest first by `(at, id)`.
    pub items: Vec<OrgAuditEvent>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
    /// Regions that did not answer; empty when the page is complete.
    pub incomplete_regions: Vec<String>,
}
