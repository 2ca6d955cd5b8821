//! The region database's embedded migrations, applied by the owner role
//! (`region-node migrate`) through the shared runner in [`residency_pg::migrate`].
//!
//! The migrations name the application and auditor roles (grants, auditor policy). Those are
//! the only interpolated values, and only after
//! [`residency_config::node::is_simple_identifier`] accepted them
//! ([`residency_pg::migrate::render_roles`]).

pub use residency_pg::migrate::Migration;

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema",
        sql: include_str!("../../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_connector_catalogue",
        sql: include_str!("../../migrations/0002_connector_catalogue.sql"),
    },
    Migration {
        version: 3,
        name: "0003_tenant_moves",
        sql: include_str!("../../migrations/0003_tenant_moves.sql"),
    },
    Migration {
        version: 4,
        name: "0004_jobs",
        sql: include_str!("../../migrations/0004_jobs.sql"),
    },
    Migration {
        version: 5,
        name: "0005_workflow_runs",
        sql: include_str!("../../migrations/0005_workflow_runs.sql"),
    },
    Migration {
        version: 6,
        name: "0006_webhooks",
        sql: include_str!("../../migrations/0006_webhooks.sql"),
    },
    Migration {
        version: 7,
        name: "0007_ownership_transfers",
        sql: include_str!("../../migrations/0007_ownership_transfers.sql"),
    },
];

/// The roles the migrations grant to.
#[derive(Debug, Clone)]
pub struct GrantRoles {
    /// The application role (from the user of `database.url`).
    pub app: String,
    /// The read-only auditor role.
    pub auditor: String,
}

const LOCK_KEY: i64 = 0x5245_5349_4445_4e43; // "RESIDENC"

fn render(sql: &str, roles: &GrantRoles) -> anyhow::Result<String> {
    residency_pg::migrate::render_roles(
        sql,
        &[
            ("{{app_role}}", "app role", &roles.app),
            ("{{auditor_role}}", "auditor role", &roles.auditor),
        ],
    )
}

/// Connects with `owner_url` and applies pending migrations. Returns the versions applied.
///
/// # Errors
/// Connection failures, SQL errors (with the migration named), or an edited migration.
pub async fn migrate(owner_url: &str, roles: &GrantRoles) -> anyhow::Result<Vec<i32>> {
    residency_pg::migrate::run(owner_url, LOCK_KEY, MIGRATIONS, |sql| render(sql, roles)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_refuses_non_identifiers() {
        let ok = GrantRoles {
            app: "eu_app".into(),
            auditor: "eu_auditor".into(),
        };
        assert!(render("GRANT x TO {{app_role}}", &ok)
            .unwrap()
            .contains("\"eu_app\""));
        let bad = GrantRoles {
            app: "x\"; DROP TABLE t; --".into(),
            auditor: "a".into(),
        };
        assert!(render("", &bad).is_err());
    }

    #[test]
    fn versions_strictly_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }
}
