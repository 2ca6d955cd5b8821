//! Embedded, versioned migrations, applied by the owner role (`region-node migrate`).
//!
//! Each migration runs in its own transaction under a session advisory lock, so concurrent
//! nodes starting with `migrate_on_start` apply it once. Applied migrations are recorded with
//! a SHA-256 checksum; a migration edited after it was applied is refused, not re-run.
//!
//! The migrations name the application and auditor roles (grants, auditor policy). Those are
//! the only interpolated values, and only after [`is_simple_identifier`] accepted them.

use aws_lc_rs::digest::{digest, SHA256};
use residency_config::node::is_simple_identifier;
use tokio_postgres::{Client, NoTls};

/// One embedded migration.
pub struct Migration {
    /// Version, strictly increasing.
    pub version: i32,
    /// File stem.
    pub name: &'static str,
    /// SQL with `{{app_role}}` / `{{auditor_role}}` placeholders.
    pub sql: &'static str,
}

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
    for (what, name) in [("app role", &roles.app), ("auditor role", &roles.auditor)] {
        anyhow::ensure!(
            is_simple_identifier(name),
            "{what} {name:?} is not a plain identifier ([a-z_][a-z0-9_]*)"
        );
    }
    Ok(sql
        .replace("{{app_role}}", &format!("\"{}\"", roles.app))
        .replace("{{auditor_role}}", &format!("\"{}\"", roles.auditor)))
}

fn checksum(sql: &str) -> String {
    digest(&SHA256, sql.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connects with `owner_url` and applies pending migrations. Returns the versions applied.
///
/// # Errors
/// Connection failures, SQL errors (with the migration named), or an edited migration.
pub async fn migrate(owner_url: &str, roles: &GrantRoles) -> anyhow::Result<Vec<i32>> {
    let (mut client, conn) = tokio_postgres::connect(owner_url, NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect as the owner role: {e}"))?;
    let task = tokio::spawn(conn);
    let result = apply(&mut client, roles).await;
    drop(client);
    let _ = task.await;
    result
}

async fn apply(client: &mut Client, roles: &GrantRoles) -> anyhow::Result<Vec<i32>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let sum = checksum(m.sql);
        let existing = client
            .query_opt(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?;
        if let Some(row) = existing {
            let have: String = row.get(0);
            anyhow::ensure!(
                have == sum,
                "migration {} was changed after it was applied (checksum mismatch)",
                m.name
            );
            continue;
        }
        let sql = render(m.sql, roles)?;
        let tx = client.transaction().await?;
        tx.batch_execute(&sql)
            .await
            .map_err(|e| anyhow::anyhow!("migration {} failed: {}", m.name, db_message(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &sum],
        )
        .await?;
        tx.commit().await?;
        applied.push(m.version);
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    Ok(applied)
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
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
