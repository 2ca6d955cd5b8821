//! The gateway → home node internal calls, made by the admin API with a system assertion
//! whose `tid` is the tenant: `POST /internal/v1/provision`,
//! `POST /internal/v1/roles/check` and `POST /internal/v1/events/api-key-revoked`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The node's internal provisioning path.
pub const PROVISION_PATH: &str = "/internal/v1/provision";

/// The node's internal role check path.
pub const ROLE_CHECK_PATH: &str = "/internal/v1/roles/check";

/// The first owner member of a new tenant: given to the admin API (create, re-provision)
/// and passed through to the home node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owner's subject (the `sub` of their tokens), 1-256 characters.
    pub subject: String,
    /// Their email.
    pub email: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `POST /internal/v1/provision` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// The tenant's name, 1-200 characters.
    pub name: String,
    /// The first owner member, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// `POST /internal/v1/provision` answer: 201 when the tenant was created, 200 when it was
/// already there (the call is idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionResponse {
    /// The tenant (the assertion's `tid`).
    pub tenant_id: Uuid,
    /// The node's region.
    pub region: String,
    /// Whether this call created the tenant's home record.
    pub created: bool,
}

/// `POST /internal/v1/roles/check` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCheckRequest {
    /// The role name.
    pub name: String,
}

/// `POST /internal/v1/roles/check` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCheckResponse {
    /// The role name asked about.
    pub name: String,
    /// Whether the tenant has a role (system or custom) of that name.
    pub exists: bool,
}

/// The longest role name: a role name is a Postgres-identifier-sized label.
pub(crate) const ROLE_NAME_MAX: usize = 63;

/// What [`is_role_name`] accepts, said to clients when a name is refused.
pub const ROLE_NAME_RULE: &str = "must be 1-63 characters of [a-z0-9_-], starting with a letter";

/// Whether `name` has the shape of a role name: 1-[`ROLE_NAME_MAX`] characters of
/// `[a-z0-9_-]`, starting with a letter. Roles are created on the region node, whose rule
/// this is; the admin API checks API-key roles with the same function. Whether a name is
/// reserved (system roles, `system`) is the caller's rule.
#[must_use]
pub fn is_role_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= ROLE_NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for ok in ["developer", "release-manager", "a", "r_2", &"a".repeat(63)] {
            assert!(is_role_name(ok), "{ok}");
        }
        for bad in ["", "Bad", "2x", "-x", "a b", "é", &"a".repeat(64)] {
            assert!(!is_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_owner_refuses_unknown_fields_and_omits_no_display_name() {
        let o: Owner = serde_json::from_str(r#"{"subject":"s","email":"a@b"}"#).unwrap();
        assert_eq!(o.display_name, None);
        assert!(serde_json::from_str::<Owner>(r#"{"subject":"s","email":"a@b","x":1}"#).is_err());
        let body = ProvisionRequest {
            name: "n".into(),
            owner: Some(o),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"name": "n", "owner": {"subject": "s", "email": "a@b"}})
        );
    }
}

/// The node's internal path that records an API key's revocation in the tenant's home region
/// (an audit event and the `api_key.revoked` webhook event, once per key).
pub const KEY_REVOKED_PATH: &str = "/internal/v1/events/api-key-revoked";

/// `POST /internal/v1/events/api-key-revoked` body: the revoked key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevoked {
    /// The key's id.
    pub key_id: Uuid,
    /// Its public prefix.
    pub prefix: String,
    /// Its name.
    pub name: String,
    /// Who revoked it (the admin API's actor).
    pub actor: String,
}

/// `POST /internal/v1/events/api-key-revoked` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRevokedRecorded {
    /// False when this key's revocation was already recorded (the call is idempotent).
    pub recorded: bool,
    /// Webhook deliveries queued.
    pub deliveries: u32,
}
