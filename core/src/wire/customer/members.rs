//! `/v1/members`: people with a role in this customer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// Its id.
    pub id: Uuid,
    /// The identity provider's subject.
    pub subject: String,
    /// Email address.
    pub email: String,
    /// Display name (may be empty).
    pub display_name: String,
    /// The name of its role.
    pub role: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateMember {
    /// The identity provider's subject, 1-256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub subject: String,
    /// Email address, 3-320 bytes with an `@`.
    pub email: String,
    /// Display name, at most 200 characters (default empty).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub display_name: String,
    /// The name of a role the caller may grant.
    pub role: String,
}

/// Body of `PATCH /v1/members/{id}`: absent fields are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateMember {
    /// New display name, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    /// The name of a role the caller may grant (not for the caller itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}
