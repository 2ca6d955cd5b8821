//! `/v1/connections`: a tenant's connections to shared connectors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::JsonObject;

/// A connection. Credentials are write-only: never returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    /// Its id.
    pub id: Uuid,
    /// The connector it connects to.
    pub connector_id: String,
    /// Name.
    pub name: String,
    /// The connector actions workflows may use through it.
    pub enabled_actions: Vec<String>,
    /// Whether credentials are stored (always true: they are required on create).
    pub credentials_set: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/connections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateConnection {
    /// A connector of the catalogue.
    pub connector_id: String,
    /// Name, 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Actions of the connector to enable (default none).
    #[serde(default)]
    pub enabled_actions: Vec<String>,
    /// Credentials, a non-empty object; stored sealed, never returned.
    #[schema(value_type = Object)]
    pub credentials: JsonObject,
}

/// Body of `PATCH /v1/connections/{id}`: absent fields are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateConnection {
    /// New name, 1-200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// The new set of enabled actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_actions: Option<Vec<String>>,
    /// New credentials (a non-empty object), replacing the stored ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<JsonObject>,
}

/// Body of `POST /v1/connections/{id}/actions/{action}/invoke` (optional: an empty body
/// invokes with empty input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvokeAction {
    /// The action's input: path parameters (such as `deal_id`) are taken from it, the rest is
    /// the JSON body (or the query of a `GET`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: JsonObject,
}

/// Answer of `POST /v1/connections/{id}/actions/{action}/invoke`: what the connector
/// answered. The connection's credential is never part of it (scrubbed from the body too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionResult {
    /// The connector's HTTP status.
    pub status: u16,
    /// Whether the status is 2xx.
    pub ok: bool,
    /// The connector's answer body: its JSON, or `{"text": …}` (cut at 2000 characters) for
    /// anything else; a body over 64 KiB is replaced by `{"truncated": …}`, its first
    /// characters.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}
