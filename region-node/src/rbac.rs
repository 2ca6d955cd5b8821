//! Role-based access control: the one catalogue of permissions and the six system roles.
//!
//! Permissions are data in the `roles` table (system roles are written there at provisioning,
//! custom roles are copies of a system role with permissions added or removed), but the set of
//! permissions that exist, and the content of every system role, is defined only here.

use std::fmt;

/// Every permission, in catalogue order. 39 in all.
pub const PERMISSIONS: [&str; 39] = [
    "tenant.read",
    "tenant.update",
    "members.read",
    "members.create",
    "members.update",
    "members.delete",
    "roles.read",
    "roles.create",
    "roles.update",
    "roles.delete",
    "connectors.read",
    "connections.read",
    "connections.create",
    "connections.update",
    "connections.delete",
    "connections.use",
    "workflows.read",
    "workflows.create",
    "workflows.update",
    "workflows.delete",
    "workflows.run",
    "workflows.publish",
    "executions.read",
    "executions.cancel",
    "executions.retry",
    "executions.logs.read",
    "configurations.read",
    "configurations.write",
    "configurations.delete",
    "audit.read",
    "audit.export",
    "usage.read",
    "api_keys.read",
    "api_keys.create",
    "api_keys.revoke",
    "billing.read",
    "billing.update",
    "webhooks.read",
    "webhooks.manage",
];

/// Whether `p` is in the catalogue.
#[must_use]
pub fn is_permission(p: &str) -> bool {
    PERMISSIONS.contains(&p)
}

/// The six system roles every tenant gets at provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemRole {
    /// Full control, including ownership transfer.
    Owner,
    /// Full control except changing owners.
    Admin,
    /// Builds integrations and workflows.
    Developer,
    /// Runs and monitors workflows.
    Operator,
    /// Read-only.
    Viewer,
    /// Customer-facing widget access.
    EndUser,
}

impl SystemRole {
    /// All system roles.
    pub const ALL: [SystemRole; 6] = [
        Self::Owner,
        Self::Admin,
        Self::Developer,
        Self::Operator,
        Self::Viewer,
        Self::EndUser,
    ];

    /// The role's name as stored and as used in credentials.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
            Self::EndUser => "end_user",
        }
    }

    /// Parses a system role name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// One-line description.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::Owner => "full control of the customer account",
            Self::Admin => "full control except ownership",
            Self::Developer => "builds connections and workflows",
            Self::Operator => "runs and monitors workflows",
            Self::Viewer => "read-only access",
            Self::EndUser => "customer-facing widget access",
        }
    }

    /// The role's permissions, in catalogue order.
    #[must_use]
    pub fn permissions(self) -> Vec<&'static str> {
        const DEVELOPER_EXCLUDES: [&str; 5] = [
            "tenant.update",
            "members.create",
            "members.delete",
            "roles.delete",
            "billing.update",
        ];
        const OPERATOR: [&str; 18] = [
            "tenant.read",
            "members.read",
            "roles.read",
            "connectors.read",
            "connections.read",
            "connections.use",
            "workflows.read",
            "workflows.run",
            "executions.read",
            "executions.cancel",
            "executions.retry",
            "executions.logs.read",
            "configurations.read",
            "audit.read",
            "usage.read",
            "api_keys.read",
            "billing.read",
            "webhooks.read",
        ];
        const VIEWER: [&str; 7] = [
            "tenant.read",
            "connectors.read",
            "connections.read",
            "workflows.read",
            "executions.read",
            "configurations.read",
            "usage.read",
        ];
        const END_USER: [&str; 9] = [
            "tenant.read",
            "connectors.read",
            "connections.read",
            "connections.create",
            "connections.use",
            "workflows.read",
            "workflows.run",
            "executions.read",
            "executions.logs.read",
        ];
        let pick = |set: &[&str]| {
            PERMISSIONS
                .iter()
                .copied()
                .filter(|p| set.contains(p))
                .collect()
        };
        match self {
            Self::Owner | Self::Admin => PERMISSIONS.to_vec(),
            Self::Developer => PERMISSIONS
                .iter()
                .copied()
                .filter(|p| !DEVELOPER_EXCLUDES.contains(p))
                .collect(),
            Self::Operator => pick(&OPERATOR),
            Self::Viewer => pick(&VIEWER),
            Self::EndUser => pick(&END_USER),
        }
    }
}

impl fmt::Display for SystemRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The permissions in `wanted` that `held` does not contain, in `wanted`'s order: empty exactly
/// when `wanted` is a subset of `held`. The one subset rule behind every grant (creating or
/// editing a role, assigning a role to a member); see `Tx::require_grantable`.
#[must_use]
pub fn not_held<'a, H, W>(held: &[H], wanted: &'a [W]) -> Vec<&'a str>
where
    H: AsRef<str>,
    W: AsRef<str>,
{
    wanted
        .iter()
        .map(AsRef::as_ref)
        .filter(|w| !held.iter().any(|h| h.as_ref() == *w))
        .collect()
}

/// Whether a permission only reads (used to check that read-only roles stay read-only).
#[must_use]
pub fn is_read_only(p: &str) -> bool {
    p.ends_with(".read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_has_39_unique_permissions() {
        let set: HashSet<_> = PERMISSIONS.iter().collect();
        assert_eq!(set.len(), 39);
    }

    #[test]
    fn system_role_sizes_match_the_product_definition() {
        let sizes: Vec<_> = SystemRole::ALL
            .iter()
            .map(|r| (r.name(), r.permissions().len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("owner", 39),
                ("admin", 39),
                ("developer", 34),
                ("operator", 18),
                ("viewer", 7),
                ("end_user", 9)
            ]
        );
    }

    #[test]
    fn not_held_is_the_set_difference() {
        let dev = SystemRole::Developer.permissions();
        let admin = SystemRole::Admin.permissions();
        assert!(not_held(&admin, &dev).is_empty());
        assert_eq!(
            not_held(&dev, &admin),
            [
                "tenant.update",
                "members.create",
                "members.delete",
                "roles.delete",
                "billing.update"
            ]
        );
        assert!(not_held::<&str, &str>(&[], &[]).is_empty());
        for r in SystemRole::ALL {
            assert!(
                not_held(&r.permissions(), &r.permissions()).is_empty(),
                "{r}"
            );
        }
    }

    #[test]
    fn every_role_permission_is_in_the_catalogue_and_viewer_is_read_only() {
        for r in SystemRole::ALL {
            for p in r.permissions() {
                assert!(is_permission(p), "{r}: {p}");
            }
        }
        assert!(SystemRole::Viewer
            .permissions()
            .iter()
            .all(|p| is_read_only(p)));
    }
}
