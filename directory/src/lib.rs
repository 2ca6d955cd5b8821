//! The global directory: organizations, tenants (customers) with their home region, tier,
//! status and limits, API keys (hashes only), and an append-only history of tenant changes.
//! It holds routing metadata only, never customer data.
//!
//! - [`Store`]: reads for the gateway's cache and the audit, and the admin writes;
//! - [`listen`]: a reconnecting `LISTEN residency_directory` stream of [`Change`]s, so gateway
//!   caches are invalidated within milliseconds and resync fully after a reconnect;
//! - [`migrate`]: the directory schema (with its NOTIFY and history triggers) and the grants
//!   of its two unprivileged roles ([`DirectoryRoles`]): a **reader** for gateway caches
//!   (`SELECT` on tenants and API keys, `LISTEN`) and a **writer** for the admin API (insert,
//!   the few updates it makes, history appends; no `DELETE`, `TRUNCATE` or DDL);
//! - custom domains ([`Store::add_domain`] and friends): hostname → tenant, certificate
//!   reference and verification state, removed by state (never deleted), notified as
//!   [`Change::Domain`];
//! - [`keys`]: API key generation (`rk_<prefix>_<secret>`, SHA-256 stored).

pub mod keys;
mod listen;
mod store;

pub use listen::{listen, Change};
pub use store::{
    DomainVerdict, Lease, MoveRecord, MoveTableRecord, NewSignup, NewTenant, OrgTokenEntry,
    OwnershipDecision, OwnershipOutcome, RolePowers, SignupRecord, SignupStatus, Store, StoreError,
    TenantFilter, TenantPatch, TenantRecord,
};

pub use residency_pg::bootstrap::RoleSpec;
use residency_pg::migrate::Migration;

/// The directory's migrations. `{{reader_role}}` and `{{writer_role}}` in their text are
/// replaced with the names of [`DirectoryRoles`].
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_directory",
        sql: include_str!("../migrations/0001_directory.sql"),
    },
    Migration {
        version: 2,
        name: "0002_directory_roles",
        sql: include_str!("../migrations/0002_directory_roles.sql"),
    },
    Migration {
        version: 3,
        name: "0003_api_key_default_role",
        sql: include_str!("../migrations/0003_api_key_default_role.sql"),
    },
    Migration {
        version: 4,
        name: "0004_domains",
        sql: include_str!("../migrations/0004_domains.sql"),
    },
    Migration {
        version: 5,
        name: "0005_tenant_moves",
        sql: include_str!("../migrations/0005_tenant_moves.sql"),
    },
    Migration {
        version: 6,
        name: "0006_org_admin",
        sql: include_str!("../migrations/0006_org_admin.sql"),
    },
    Migration {
        version: 7,
        name: "0007_org_ownership",
        sql: include_str!("../migrations/0007_org_ownership.sql"),
    },
];

/// The role an API key grants when it is created without one (one constant for the Postgres
/// and the file directory).
pub use residency_core::DEFAULT_API_KEY_ROLE;

/// The unprivileged roles the migrations grant to. Both must exist before [`migrate`] runs
/// (the bootstrap creates them with the owner and the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRoles {
    /// The gateway's cache: reads tenants and API keys and `LISTEN`s.
    pub reader: String,
    /// The admin API: the writes it makes, nothing more.
    pub writer: String,
}

impl DirectoryRoles {
    /// `<owner without its _owner suffix>_reader` and `_writer`: the names every deployment
    /// uses (`residency_directory_owner` -> `residency_directory_reader`, `..._writer`).
    #[must_use]
    pub fn beside_owner(owner: &str) -> Self {
        let base = owner.strip_suffix("_owner").unwrap_or(owner);
        Self {
            reader: format!("{base}_reader"),
            writer: format!("{base}_writer"),
        }
    }

    /// `sql` with the role placeholders replaced by the quoted role names.
    ///
    /// # Errors
    /// When a name is not a plain identifier or both roles are the same.
    pub fn render(&self, sql: &str) -> anyhow::Result<String> {
        let rendered = residency_pg::migrate::render_roles(
            sql,
            &[
                ("{{reader_role}}", "reader role", &self.reader),
                ("{{writer_role}}", "writer role", &self.writer),
            ],
        )?;
        anyhow::ensure!(
            self.reader != self.writer,
            "reader and writer must be two roles"
        );
        Ok(rendered)
    }
}

/// The NOTIFY channel.
pub const CHANNEL: &str = "residency_directory";

/// The advisory lock key under which the directory migrations run.
pub const LOCK_KEY: i64 = 0x4449_5245_4354_4f52; // "DIRECTOR"

/// The directory's three LOGIN roles with their passwords.
#[derive(Debug, Clone)]
pub struct RolePlan {
    /// Owns the database, the schema and the tables; applies migrations. Never serves.
    pub owner: RoleSpec,
    /// The gateway's cache.
    pub reader: RoleSpec,
    /// The admin API.
    pub writer: RoleSpec,
}

impl RolePlan {
    /// The names the migrations grant to.
    #[must_use]
    pub fn grant_roles(&self) -> DirectoryRoles {
        DirectoryRoles {
            reader: self.reader.name.clone(),
            writer: self.writer.name.clone(),
        }
    }
}

/// Creates (or brings up to date) the directory database `database` and its three roles, as
/// an administrator at `admin_url`. Idempotent. This is the region bootstrap of
/// [`residency_pg::bootstrap`] with the reader in the app's place and the writer in the
/// auditor's: the same locked-down attributes (`NOSUPERUSER NOCREATEDB NOCREATEROLE
/// NOREPLICATION NOBYPASSRLS`, `NOINHERIT` for both), `CONNECT` and schema `USAGE` only, no
/// `PUBLIC` access. The table grants come from [`migrate`].
///
/// # Errors
/// Invalid names or passwords, or any database error.
pub async fn bootstrap(admin_url: &str, database: &str, roles: &RolePlan) -> anyhow::Result<()> {
    residency_pg::bootstrap::bootstrap(
        admin_url,
        &residency_pg::bootstrap::Plan {
            database: database.to_owned(),
            owner: roles.owner.clone(),
            app: roles.reader.clone(),
            auditor: roles.writer.clone(),
        },
    )
    .await
}

/// Applies the directory's pending migrations with `url` (its owner), granting to `roles`.
/// Returns the versions applied.
///
/// # Errors
/// Role names that are not plain identifiers, connection or SQL errors (a missing role
/// among them).
pub async fn migrate(url: &str, roles: &DirectoryRoles) -> anyhow::Result<Vec<i32>> {
    residency_pg::migrate::run(url, LOCK_KEY, MIGRATIONS, |s| roles.render(s)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_render_as_quoted_identifiers_only() {
        let roles = DirectoryRoles::beside_owner("rs_directory_owner");
        assert_eq!(roles.reader, "rs_directory_reader");
        assert_eq!(roles.writer, "rs_directory_writer");
        let sql = roles
            .render("GRANT x TO {{reader_role}}, {{writer_role}}")
            .unwrap();
        assert_eq!(
            sql,
            "GRANT x TO \"rs_directory_reader\", \"rs_directory_writer\""
        );
        let bad = DirectoryRoles {
            reader: "r\"; DROP TABLE tenants; --".into(),
            writer: "w".into(),
        };
        assert!(bad.render("").is_err());
        let same = DirectoryRoles {
            reader: "r".into(),
            writer: "r".into(),
        };
        assert!(same.render("").is_err());
    }

    #[test]
    fn every_migration_is_rendered_completely() {
        let roles = DirectoryRoles::beside_owner("d_owner");
        for m in MIGRATIONS {
            assert!(!roles.render(m.sql).unwrap().contains("{{"), "{}", m.name);
        }
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }
}
