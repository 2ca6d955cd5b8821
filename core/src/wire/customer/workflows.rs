//! `/v1/workflows` and `POST /v1/workflows/{id}/runs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::JsonObject;

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    /// Its id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The definition (free-form; `steps[].action` names the planned steps of a run).
    #[schema(value_type = Object)]
    pub definition: JsonObject,
    /// The connection it uses, if any.
    #[schema(required = true)]
    pub connection_id: Option<Uuid>,
    /// Whether it can be run.
    pub enabled: bool,
    /// Starts at 1, incremented by every update.
    pub version: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/workflows`. Unknown fields (such as `tenant_id`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateWorkflow {
    /// Name, 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Description, at most 2000 characters (default empty).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The definition, a JSON object.
    #[schema(value_type = Object)]
    pub definition: JsonObject,
    /// A connection of the caller's tenant.
    #[serde(default)]
    pub connection_id: Option<Uuid>,
    /// Whether it can be run (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Body of `PATCH /v1/workflows/{id}`: absent fields are unchanged; `connection_id: null`
/// detaches the connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateWorkflow {
    /// New name, 1-200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// New description, at most 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// New definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<JsonObject>,
    /// A connection of the caller's tenant, or `null` for none.
    #[serde(
        default,
        deserialize_with = "super::super::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Uuid>)]
    pub connection_id: Option<Option<Uuid>>,
    /// Enables or disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Body of `POST /v1/workflows/{id}/runs` (optional: an empty body runs with empty input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunWorkflow {
    /// The run's input (default `{}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: JsonObject,
}
