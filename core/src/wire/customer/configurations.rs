//! `/v1/configurations/{key}`: a tenant's key → JSON settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A configuration entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Configuration {
    /// Its key, 1-128 characters of `[A-Za-z0-9._:-]`.
    pub key: String,
    /// Its value: any JSON.
    pub value: Value,
    /// Starts at 1, incremented by every replacement.
    pub version: i32,
    /// The subject of the last write.
    pub updated_by: String,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of `PUT /v1/configurations/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PutConfiguration {
    /// The value: any JSON.
    pub value: Value,
}
