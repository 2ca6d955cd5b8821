//! Role-based access control: the one catalogue of permissions and the six system roles.
//!
//! Permissions are data in the `roles` table (system roles are written there at provisioning,
//! custom roles are copies of a system role with permissions added or removed), but the set of
//! permissions that exist, and the content of every system role, is defined only here, as the
//! [`Permission`] enum: a handler names `Permission::WorkflowsRead`, so a misspelt permission
//! does not compile. The database and the wire keep the dotted names (`workflows.read`): the
//! `roles.permissions` column is `text[]`, read back through [`Permission`]'s `FromSql`.

use std::error::Error;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::types::{FromSql, Type};

/// Declares the catalogue once: the variants, their dotted names and [`Permission::ALL`], all
/// in catalogue order.
macro_rules! catalogue {
    ($($variant:ident => $name:literal,)*) => {
        /// One permission of the catalogue. The discriminant order is the catalogue order, so
        /// `Ord` sorts permissions the way roles list them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Permission {
            /// Every permission, in catalogue order. 39 in all.
            pub const ALL: [Permission; 39] = [$(Self::$variant,)*];

            /// The dotted name, as stored in `roles.permissions` and shown on the wire.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

catalogue! {
    TenantRead => "tenant.read",
    TenantUpdate => "tenant.update",
    MembersRead => "members.read",
    MembersCreate => "members.create",
    MembersUpdate => "members.update",
    MembersDelete => "members.delete",
    RolesRead => "roles.read",
    RolesCreate => "roles.create",
    RolesUpdate => "roles.update",
    RolesDelete => "roles.delete",
    ConnectorsRead => "connectors.read",
    ConnectionsRead => "connections.read",
    ConnectionsCreate => "connections.create",
    ConnectionsUpdate => "connections.update",
    ConnectionsDelete => "connections.delete",
    ConnectionsUse => "connections.use",
    WorkflowsRead => "workflows.read",
    WorkflowsCreate => "workflows.create",
    WorkflowsUpdate => "workflows.update",
    WorkflowsDelete => "workflows.delete",
    WorkflowsRun => "workflows.run",
    WorkflowsPublish => "workflows.publish",
    ExecutionsRead => "executions.read",
    ExecutionsCancel => "executions.cancel",
    ExecutionsRetry => "executions.retry",
    ExecutionsLogsRead => "executions.logs.read",
    ConfigurationsRead => "configurations.read",
    ConfigurationsWrite => "configurations.write",
    ConfigurationsDelete => "configurations.delete",
    AuditRead => "audit.read",
    AuditExport => "audit.export",
    UsageRead => "usage.read",
    ApiKeysRead => "api_keys.read",
    ApiKeysCreate => "api_keys.create",
    ApiKeysRevoke => "api_keys.revoke",
    BillingRead => "billing.read",
    BillingUpdate => "billing.update",
    WebhooksRead => "webhooks.read",
    WebhooksManage => "webhooks.manage",
}

impl Permission {
    /// Whether the permission only reads (used to check that read-only roles stay read-only).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn is_read_only(self) -> bool {
        self.as_str().ends_with(".read")
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not in the catalogue. Its `Display` is the message the API shows for it
/// (`unknown permission "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPermission(pub String);

impl fmt::Display for UnknownPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown permission {:?}", self.0)
    }
}

impl Error for UnknownPermission {}

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads one element of a `text[]` permissions column. A name outside the catalogue is a
/// corrupt row (every write goes through this enum) and fails the query rather than being
/// silently dropped or granted.
impl<'a> FromSql<'a> for Permission {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// The dotted names of `permissions`, in their order: the form bound to a `text[]` parameter.
#[must_use]
pub fn names(permissions: &[Permission]) -> Vec<&'static str> {
    permissions.iter().map(|p| p.as_str()).collect()
}

/// The six system roles every tenant gets at provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemRole {
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
    pub(crate) const ALL: [SystemRole; 6] = [
        Self::Owner,
        Self::Admin,
        Self::Developer,
        Self::Operator,
        Self::Viewer,
        Self::EndUser,
    ];

    /// The role's name as stored and as used in credentials.
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// One-line description.
    #[must_use]
    pub(crate) fn description(self) -> &'static str {
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
    pub(crate) fn permissions(self) -> &'static [Permission] {
        use Permission as P;
        const DEVELOPER: [Permission; 34] = [
            P::TenantRead,
            P::MembersRead,
            P::MembersUpdate,
            P::RolesRead,
            P::RolesCreate,
            P::RolesUpdate,
            P::ConnectorsRead,
            P::ConnectionsRead,
            P::ConnectionsCreate,
            P::ConnectionsUpdate,
            P::ConnectionsDelete,
            P::ConnectionsUse,
            P::WorkflowsRead,
            P::WorkflowsCreate,
            P::WorkflowsUpdate,
            P::WorkflowsDelete,
            P::WorkflowsRun,
            P::WorkflowsPublish,
            P::ExecutionsRead,
            P::ExecutionsCancel,
            P::ExecutionsRetry,
            P::ExecutionsLogsRead,
            P::ConfigurationsRead,
            P::ConfigurationsWrite,
            P::ConfigurationsDelete,
            P::AuditRead,
            P::AuditExport,
            P::UsageRead,
            P::ApiKeysRead,
            P::ApiKeysCreate,
            P::ApiKeysRevoke,
            P::BillingRead,
            P::WebhooksRead,
            P::WebhooksManage,
        ];
        const OPERATOR: [Permission; 18] = [
            P::TenantRead,
            P::MembersRead,
            P::RolesRead,
            P::ConnectorsRead,
            P::ConnectionsRead,
            P::ConnectionsUse,
            P::WorkflowsRead,
            P::WorkflowsRun,
            P::ExecutionsRead,
            P::ExecutionsCancel,
            P::ExecutionsRetry,
            P::ExecutionsLogsRead,
            P::ConfigurationsRead,
            P::AuditRead,
            P::UsageRead,
            P::ApiKeysRead,
            P::BillingRead,
            P::WebhooksRead,
        ];
        const VIEWER: [Permission; 7] = [
            P::TenantRead,
            P::ConnectorsRead,
            P::ConnectionsRead,
            P::WorkflowsRead,
            P::ExecutionsRead,
            P::ConfigurationsRead,
            P::UsageRead,
        ];
        const END_USER: [Permission; 9] = [
            P::TenantRead,
            P::ConnectorsRead,
            P::ConnectionsRead,
            P::ConnectionsCreate,
            P::ConnectionsUse,
            P::WorkflowsRead,
            P::WorkflowsRun,
            P::ExecutionsRead,
            P::ExecutionsLogsRead,
        ];
        match self {
            Self::Owner | Self::Admin => &Permission::ALL,
            Self::Developer => &DEVELOPER,
            Self::Operator => &OPERATOR,
            Self::Viewer => &VIEWER,
            Self::EndUser => &END_USER,
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
pub(crate) fn not_held(held: &[Permission], wanted: &[Permission]) -> Vec<Permission> {
    wanted
        .iter()
        .copied()
        .filter(|w| !held.contains(w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_has_39_unique_permissions() {
        let set: HashSet<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(set.len(), 39);
        // The declaration order is the catalogue order `Ord` relies on.
        assert!(Permission::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
            let wire = serde_json::to_value(p).unwrap();
            assert_eq!(wire, serde_json::Value::from(p.as_str()));
            assert_eq!(serde_json::from_value::<Permission>(wire).unwrap(), p);
        }
        assert_eq!(
            Permission::ExecutionsLogsRead.as_str(),
            "executions.logs.read"
        );
        assert_eq!(Permission::ApiKeysRevoke.as_str(), "api_keys.revoke");
    }

    #[test]
    fn unknown_names_are_refused() {
        for bad in [
            "",
            "workflow.read",
            "Workflows.read",
            "workflows.read ",
            "admin",
        ] {
            let err = bad.parse::<Permission>().unwrap_err();
            assert_eq!(err.to_string(), format!("unknown permission {bad:?}"));
            assert!(serde_json::from_value::<Permission>(bad.into()).is_err());
        }
    }

    #[test]
    fn stored_names_are_read_through_the_catalogue() {
        assert!(<Permission as FromSql>::accepts(&Type::TEXT));
        assert!(<Permission as FromSql>::accepts(&Type::VARCHAR));
        assert!(!<Permission as FromSql>::accepts(&Type::INT4));
        assert_eq!(
            Permission::from_sql(&Type::TEXT, b"executions.logs.read").unwrap(),
            Permission::ExecutionsLogsRead
        );
        // A name outside the catalogue is a corrupt row: an error, never a silent grant.
        let err = Permission::from_sql(&Type::TEXT, b"tenant.own").unwrap_err();
        assert_eq!(err.to_string(), "unknown permission \"tenant.own\"");
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
    fn system_roles_are_in_catalogue_order_without_repeats() {
        for r in SystemRole::ALL {
            assert!(
                r.permissions().windows(2).all(|w| w[0] < w[1]),
                "{r} is not in catalogue order"
            );
        }
    }

    #[test]
    fn not_held_is_the_set_difference() {
        let dev = SystemRole::Developer.permissions();
        let admin = SystemRole::Admin.permissions();
        assert!(not_held(admin, dev).is_empty());
        assert_eq!(
            names(&not_held(dev, admin)),
            [
                "tenant.update",
                "members.create",
                "members.delete",
                "roles.delete",
                "billing.update"
            ]
        );
        assert!(not_held(&[], &[]).is_empty());
        for r in SystemRole::ALL {
            assert!(not_held(r.permissions(), r.permissions()).is_empty(), "{r}");
        }
    }

    #[test]
    fn viewer_is_read_only() {
        assert!(SystemRole::Viewer
            .permissions()
            .iter()
            .all(|p| p.is_read_only()));
        assert!(!Permission::WorkflowsRun.is_read_only());
    }
}
