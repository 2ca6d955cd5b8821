//! A versioned migration runner: each migration runs in its own transaction under a session
//! advisory lock (so concurrent starters apply it once) and is recorded in `schema_migrations`
//! with a SHA-256 checksum; a migration edited after it was applied is refused, not re-run.

use aws_lc_rs::digest::{digest, SHA256};
use residency_config::node::is_simple_identifier;
use tokio_postgres::Client;

/// One embedded migration.
pub struct Migration {
    /// Version, strictly increasing.
    pub version: i32,
    /// File stem.
    pub name: &'static str,
    /// SQL text, possibly with placeholders the caller's `render` replaces.
    pub sql: &'static str,
}

/// `sql` with each role placeholder replaced by the role's name in double quotes, for a
/// [`run`] `render`. `roles` holds `(placeholder, what, name)`: `what` names the role in the
/// error. Every name must be a plain identifier ([`is_simple_identifier`]), so the quotes are
/// all the escaping it needs.
///
/// # Errors
/// When a name is not a plain identifier.
pub fn render_roles(sql: &str, roles: &[(&str, &str, &str)]) -> anyhow::Result<String> {
    for (_, what, name) in roles {
        anyhow::ensure!(
            is_simple_identifier(name),
            "{what} {name:?} is not a plain identifier ([a-z_][a-z0-9_]*)"
        );
    }
    Ok(roles
        .iter()
        .fold(sql.to_owned(), |sql, (placeholder, _, name)| {
            sql.replace(placeholder, &format!("\"{name}\""))
        }))
}

fn checksum(sql: &str) -> String {
    digest(&SHA256, sql.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// Connects with `url` and applies the pending `migrations`, each rendered by `render` (the
/// checksum is of the unrendered text, so renaming a role does not look like an edit).
/// Returns the versions applied.
///
/// # Errors
/// Connection failures, SQL errors (naming the migration), or an edited migration.
pub async fn run(
    url: &str,
    lock_key: i64,
    migrations: &[Migration],
    render: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<i32>> {
    let (mut client, conn) = crate::Target::parse(url)?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("to apply migrations: {e}"))?;
    let task = tokio::spawn(conn);
    let result = apply(&mut client, lock_key, migrations, render).await;
    drop(client);
    let _ = task.await;
    result
}

async fn apply(
    client: &mut Client,
    lock_key: i64,
    migrations: &[Migration],
    render: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<i32>> {
    anyhow::ensure!(
        migrations.windows(2).all(|w| w[0].version < w[1].version),
        "migration versions must strictly increase"
    );
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
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
    for m in migrations {
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
        let sql = render(m.sql)?;
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
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
        .await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_roles_quotes_identifiers_and_refuses_anything_else() {
        let sql = render_roles(
            "GRANT x TO {{a}}, {{b}}; GRANT y TO {{a}}",
            &[
                ("{{a}}", "a role", "eu_app"),
                ("{{b}}", "b role", "eu_auditor"),
            ],
        )
        .unwrap();
        assert_eq!(
            sql,
            "GRANT x TO \"eu_app\", \"eu_auditor\"; GRANT y TO \"eu_app\""
        );
        let err = render_roles("", &[("{{a}}", "a role", "x\"; DROP TABLE t; --")]).unwrap_err();
        assert!(err.to_string().starts_with("a role "), "{err}");
    }
}
