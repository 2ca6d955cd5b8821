//! The RFC 9457 problem body (`application/problem+json`) of every Residency service, as it
//! is on the wire. `residency_http::Problem` renders it; clients (the CLI) read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer. `instance` and `request_id` are both the response's `x-request-id`;
/// `field` names the offending input when there is one; a service may add members of its own
/// (the admin API adds `tenant_id` when a multi-step operation left a tenant behind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(
    as = Problem,
    example = json!({
        "type": "urn:residency:problem:not_found",
        "title": "Not Found",
        "status": 404,
        "detail": "workflow not found",
        "instance": "0192f5e4-7c1a-7b3e-9f4d-2a6c1e8b5d70",
        "request_id": "0192f5e4-7c1a-7b3e-9f4d-2a6c1e8b5d70"
    })
)]
pub struct ProblemDetails {
    /// `urn:residency:problem:<kind>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:residency:problem:[a-z_]+$")]
    pub type_uri: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// Client-safe explanation.
    pub detail: String,
    /// The request id.
    pub instance: String,
    /// The request id (same as `instance` and the `x-request-id` header).
    pub request_id: String,
    /// The input field concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Further members of the service's own, e.g. `tenant_id`.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_wire_shape() {
        let text = r#"{"type":"urn:residency:problem:not_found","title":"Not Found","status":404,
            "detail":"no such tenant","instance":"r1","request_id":"r1","tenant_id":"t"}"#;
        let p: ProblemDetails = serde_json::from_str(text).unwrap();
        assert_eq!(p.type_uri, "urn:residency:problem:not_found");
        assert_eq!(p.field, None);
        assert_eq!(p.extra["tenant_id"], "t");
        let again = serde_json::to_value(&p).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
    }
}
