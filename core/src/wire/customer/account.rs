//! `GET /v1/me` and `GET /v1/usage`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /v1/me`: who the credential is, in which region, with which permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The caller's tenant.
    pub tenant_id: Uuid,
    /// The subject of the credential (`apikey:<prefix>` for an API key).
    pub subject: String,
    /// The caller's role (system or custom).
    pub role: String,
    /// The region that answered: the tenant's home region.
    pub region: String,
    /// The role's permissions (dotted names, catalogue order).
    pub permissions: Vec<String>,
}

/// `GET /v1/usage`: row counts of the caller's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// The caller's tenant.
    pub tenant_id: Uuid,
    /// Rows per entity.
    pub counts: UsageCounts,
}

/// Rows per entity of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    /// Members.
    pub members: i64,
    /// Roles (system roles included).
    pub roles: i64,
    /// Connections.
    pub connections: i64,
    /// Workflows.
    pub workflows: i64,
    /// Executions.
    pub executions: i64,
    /// Configurations.
    pub configurations: i64,
    /// Audit events.
    pub audit_events: i64,
}
