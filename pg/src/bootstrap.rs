//! Creation of a region database and its roles, run once by an administrator
//! (`region-node bootstrap`, or `residency up`), before the owner applies migrations.
//!
//! Three LOGIN roles per region database, none of them superuser:
//! - **owner**: owns the schema and tables, runs migrations; subject to FORCE RLS;
//! - **app**: what the node connects as; `NOBYPASSRLS`, owns nothing, only the grants the
//!   migrations give it;
//! - **auditor**: read-only, may count rows per tenant for the placement audit.
//!
//! Role and database names are identifiers checked by [`is_simple_identifier`]; passwords
//! are restricted to `[A-Za-z0-9]`, so the DDL below (which cannot take bind parameters)
//! never interpolates anything else.
//!
//! Passwords never reach the server in plaintext: [`role_ddl`] sends a SCRAM-SHA-256 verifier
//! computed here (random salt, 4096 iterations), which Postgres stores as given. A plaintext
//! `PASSWORD '…'` would be written to the server log by `log_statement` or an error report,
//! and hashed with whatever `password_encryption` the session has (possibly MD5).

use residency_config::node::is_simple_identifier;
use tokio_postgres::Client;

/// A role to create, with its password.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Password (`[A-Za-z0-9]{16,128}`).
    pub password: String,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Database name.
    pub database: String,
    /// Owner role.
    pub owner: RoleSpec,
    /// Application role.
    pub app: RoleSpec,
    /// Auditor role.
    pub auditor: RoleSpec,
}

impl Plan {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            is_simple_identifier(&self.database),
            "database name {:?} is not a plain identifier",
            self.database
        );
        for r in [&self.owner, &self.app, &self.auditor] {
            anyhow::ensure!(
                is_simple_identifier(&r.name),
                "role name {:?} is not a plain identifier",
                r.name
            );
            anyhow::ensure!(
                (16..=128).contains(&r.password.len())
                    && r.password.bytes().all(|b| b.is_ascii_alphanumeric()),
                "password of role {} must be 16-128 characters of [A-Za-z0-9]",
                r.name
            );
        }
        Ok(())
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = crate::Target::parse(url)?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("as admin: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// The SCRAM-SHA-256 verifier of `password` with a fresh random salt, as Postgres stores it
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64: it never holds a
/// quote). Sent in place of a password, it keeps the plaintext out of the server and its logs.
#[must_use]
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// The `CREATE ROLE` / `ALTER ROLE` statement (`verb`) giving `role` LOGIN, `attrs` and its
/// password as a SCRAM-SHA-256 verifier computed client-side; the plaintext is not in the text.
///
/// # Errors
/// When the role name is not a plain identifier or `attrs` holds anything but letters and
/// spaces (the statement cannot take bind parameters).
pub(crate) fn role_ddl(verb: &str, role: &RoleSpec, attrs: &str) -> anyhow::Result<String> {
    anyhow::ensure!(matches!(verb, "CREATE" | "ALTER"), "bad verb {verb:?}");
    anyhow::ensure!(
        is_simple_identifier(&role.name),
        "role name {:?} is not a plain identifier",
        role.name
    );
    anyhow::ensure!(
        attrs.bytes().all(|b| b.is_ascii_uppercase() || b == b' '),
        "bad role attributes {attrs:?}"
    );
    let verifier = scram_verifier(&role.password);
    anyhow::ensure!(!verifier.contains('\''), "unexpected verifier format");
    Ok(format!(
        "{verb} ROLE \"{}\" LOGIN {attrs} PASSWORD '{verifier}'",
        role.name
    ))
}

/// Creates `role` with `attrs`, or brings an existing one up to date (attributes, password).
///
/// # Errors
/// Invalid names or database errors.
pub(crate) async fn ensure_role(
    admin: &Client,
    role: &RoleSpec,
    attrs: &str,
) -> anyhow::Result<()> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role.name])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    admin.batch_execute(&role_ddl(verb, role, attrs)?).await?;
    Ok(())
}

/// Creates (or brings up to date) the roles and the database. Idempotent.
///
/// # Errors
/// Invalid names, or any database error.
pub async fn bootstrap(admin_url: &str, plan: &Plan) -> anyhow::Result<()> {
    plan.check()?;
    let admin = connect(admin_url).await?;
    const LOCKED_DOWN: &str = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
    ensure_role(&admin, &plan.owner, LOCKED_DOWN).await?;
    ensure_role(&admin, &plan.app, &format!("{LOCKED_DOWN} NOINHERIT")).await?;
    ensure_role(&admin, &plan.auditor, &format!("{LOCKED_DOWN} NOINHERIT")).await?;
    let db_exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&plan.database],
        )
        .await?
        .is_some();
    if !db_exists {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\" OWNER \"{}\"",
                plan.database, plan.owner.name
            ))
            .await?;
    }
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC;
             GRANT CONNECT ON DATABASE \"{db}\" TO \"{app}\", \"{aud}\";",
            db = plan.database,
            app = plan.app.name,
            aud = plan.auditor.name
        ))
        .await?;
    // Inside the new database: the owner owns the schema; nobody else can create objects.
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&plan.database);
    let in_db = connect(url.as_str()).await?;
    in_db
        .batch_execute(&format!(
            "ALTER SCHEMA public OWNER TO \"{owner}\";
             REVOKE ALL ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA public TO \"{app}\", \"{aud}\";",
            owner = plan.owner.name,
            app = plan.app.name,
            aud = plan.auditor.name
        ))
        .await?;
    Ok(())
}

/// Drops the database and its roles (for `--fresh` and test teardown). Missing objects are
/// not an error.
///
/// # Errors
/// Invalid names or database errors.
pub async fn teardown(admin_url: &str, database: &str, roles: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(is_simple_identifier(database), "bad database name");
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await?;
    for r in roles {
        anyhow::ensure!(is_simple_identifier(r), "bad role name");
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\""))
            .await?;
    }
    Ok(())
}

/// Builds a URL for `role` on `database`, from the admin URL's host and port.
///
/// # Errors
/// When the admin URL does not parse.
pub fn role_url(admin_url: &str, role: &RoleSpec, database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url)?;
    url.set_username(&role.name)
        .map_err(|()| anyhow::anyhow!("cannot set user"))?;
    url.set_password(Some(&role.password))
        .map_err(|()| anyhow::anyhow!("cannot set password"))?;
    url.set_path(database);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ddl_carries_a_scram_verifier_never_the_password() {
        let role = RoleSpec {
            name: "eu_app".into(),
            password: "Plaintext0Password1".into(),
        };
        for verb in ["CREATE", "ALTER"] {
            let ddl = role_ddl(verb, &role, "NOSUPERUSER NOBYPASSRLS").unwrap();
            assert!(!ddl.contains(&role.password), "{ddl}");
            assert!(
                ddl.starts_with(&format!(
                    "{verb} ROLE \"eu_app\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:"
                )),
                "{ddl}"
            );
        }
        // A fresh salt every time.
        assert_ne!(
            role_ddl("CREATE", &role, "").unwrap(),
            role_ddl("CREATE", &role, "").unwrap()
        );
    }

    #[test]
    fn role_ddl_refuses_anything_but_identifiers_and_attributes() {
        let role = |name: &str| RoleSpec {
            name: name.into(),
            password: "Plaintext0Password1".into(),
        };
        assert!(role_ddl("CREATE", &role("a\"b"), "").is_err());
        assert!(role_ddl("CREATE", &role("ok"), "SUPERUSER; DROP").is_err());
        assert!(role_ddl("DROP", &role("ok"), "").is_err());
    }
}
