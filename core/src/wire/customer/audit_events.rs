//! `GET /v1/audit-events`: the tenant's append-only audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::JsonObject;

/// One audit event: a write that committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Its id (time-ordered).
    pub id: Uuid,
    /// When the write happened.
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
