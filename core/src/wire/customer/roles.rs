//! `/v1/roles`: the six system roles and custom roles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Role {
    /// Its id.
    pub id: Uuid,
    /// Name, unique in the tenant.
    pub name: String,
    /// Description.
    pub description: String,
    /// True for the six system roles, which cannot be changed or deleted.
    pub system: bool,
    /// The system role a custom role was copied from; `null` for system roles.
    #[schema(required = true)]
    pub based_on: Option<String>,
    /// Its permissions (dotted names, catalogue order).
    pub permissions: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/roles`: a copy of a system role with permissions added and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateRole {
    /// 1-63 characters of `[a-z0-9_-]` starting with a letter; not a system role's name.
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// The system role to copy.
    pub based_on: String,
    /// Description (default empty).
    #[serde(default)]
    pub description: String,
    /// Permissions to add (catalogue names).
    #[serde(default)]
    pub add: Vec<String>,
    /// Permissions to remove (catalogue names).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Body of `PATCH /v1/roles/{id}` (custom roles only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateRole {
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Permissions to add (catalogue names).
    #[serde(default)]
    pub add: Vec<String>,
    /// Permissions to remove (catalogue names).
    #[serde(default)]
    pub remove: Vec<String>,
}
