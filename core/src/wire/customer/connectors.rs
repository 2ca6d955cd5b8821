//! `/v1/connectors`: the shared connector catalogue.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A connector of the shared catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Connector {
    /// Its key (`slack`, `github`, …).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// How a connection authenticates (`oauth2`, `api_key`, …).
    pub auth_type: String,
    /// Description.
    pub description: String,
    /// The actions a connection may enable, sorted.
    pub actions: Vec<String>,
}
