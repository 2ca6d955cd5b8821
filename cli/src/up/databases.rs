//! The stack's databases: one directory database and one database per region, each with its
//! own roles, all named from `--prefix` so several stacks share one Postgres server.
//!
//! ```text
//! <prefix>_directory          owned by <prefix>_directory_owner (migrations only); the
//!                             gateway's cache reads as <prefix>_directory_reader, the admin
//!                             API and the demo seed write as <prefix>_directory_writer
//! <prefix>_<region>           owned by <prefix>_<region>_owner; app role <prefix>_<region>_app
//!                             (NOBYPASSRLS, owns nothing); auditor <prefix>_<region>_auditor
//! ```
//!
//! Creation is idempotent ([`residency_pg::bootstrap`] creates or updates roles and creates
//! the database only when missing); migrations are versioned, so applying them again is a
//! no-op. Passwords live in the stack directory's `state.json` and are reused.

use residency_config::node::is_simple_identifier;
use residency_core::RegionId;
use residency_directory::RolePlan;
use residency_pg::bootstrap::{self, Plan, RoleSpec};
use residency_region_node::db::migrate::{self as region_migrate, GrantRoles};

use super::state::State;
use super::UpError;

/// Database and role names derived from the prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    /// Checks the prefix: `[a-z][a-z0-9_]{0,31}`.
    ///
    /// # Errors
    /// [`UpError::Usage`] naming the flag.
    pub(super) fn new(prefix: &str, regions: &[RegionId]) -> Result<Self, UpError> {
        let ok = prefix.len() <= 32
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && is_simple_identifier(prefix);
        if !ok {
            return Err(UpError::Usage(format!(
                "--prefix {prefix:?}: use 1-32 characters of a-z, 0-9 and '_', starting with a letter"
            )));
        }
        let names = Self {
            prefix: prefix.to_owned(),
        };
        for r in regions {
            if r.as_str() == "directory" {
                return Err(UpError::Usage(
                    "--regions: \"directory\" is reserved for the directory database".into(),
                ));
            }
            let owner = names.region_role(r, "auditor");
            if !is_simple_identifier(&owner) {
                return Err(UpError::Usage(format!(
                    "--prefix and region {r} make the role name {owner:?}, longer than Postgres allows (63); use a shorter prefix"
                )));
            }
        }
        Ok(names)
    }

    /// The directory database.
    #[must_use]
    pub(super) fn directory_db(&self) -> String {
        format!("{}_directory", self.prefix)
    }

    /// The directory's `owner` (migrations only), `reader` (the gateway's cache) or `writer`
    /// (the admin API and the demo seed) role.
    #[must_use]
    pub(super) fn directory_role(&self, kind: &str) -> String {
        format!("{}_directory_{kind}", self.prefix)
    }

    /// A region's database.
    #[must_use]
    pub(super) fn region_db(&self, r: &RegionId) -> String {
        format!("{}_{}", self.prefix, r.as_str().replace('-', "_"))
    }

    /// A region's `owner`, `app` or `auditor` role.
    #[must_use]
    pub(super) fn region_role(&self, r: &RegionId, kind: &str) -> String {
        format!("{}_{kind}", self.region_db(r))
    }
}

/// Connection URLs of one region's roles.
#[derive(Debug, Clone)]
pub(super) struct RegionUrls {
    /// Owner (migrations; subject to FORCE RLS).
    pub owner: String,
    /// Application role (what the node uses).
    pub app: String,
    /// Read-only auditor.
    pub auditor: String,
    /// Name of the auditor role.
    pub auditor_role: String,
}

/// URLs of every database of the stack.
#[derive(Debug, Clone)]
pub(super) struct Urls {
    /// The directory as its reader role (the gateway's `directory.url`, the audit).
    pub directory: String,
    /// The directory as its writer role (the gateway's `admin.directory_url`, the seed).
    pub directory_writer: String,
    /// Per region, in `--regions` order.
    pub regions: Vec<(RegionId, RegionUrls)>,
}

/// Checks that Postgres answers at `admin_url` with enough rights to create databases.
///
/// # Errors
/// [`UpError::PostgresUnreachable`] when it cannot connect; [`UpError::PostgresRefused`] when
/// the server refuses the login or has no such database; [`UpError::Failed`] when the role
/// cannot create databases and roles.
pub(super) async fn check_admin(admin_url: &str) -> Result<(), UpError> {
    let redacted = residency_config::redact_url(admin_url);
    let target = residency_pg::Target::parse(admin_url)
        .map_err(|e| UpError::Failed(anyhow::anyhow!("--pg: {e}")))?;
    let connect = target.config().connect(target.tls());
    let (client, conn) =
        match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                let at = format!("{redacted} (sslmode {})", target.mode().as_str());
                let reason = residency_pg::tls::reason(&e);
                return Err(match residency_pg::tls::refusal(&e) {
                    Some(refusal) => UpError::PostgresRefused {
                        at,
                        reason,
                        refusal,
                    },
                    None => UpError::PostgresUnreachable(at, reason),
                });
            }
            Err(_) => {
                return Err(UpError::PostgresUnreachable(
                    residency_config::redact_url(admin_url),
                    "timed out after 5s".into(),
                ))
            }
        };
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT rolsuper OR (rolcreatedb AND rolcreaterole) FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| UpError::Failed(anyhow::anyhow!("postgres: {e}")))?;
    if !row.get::<_, bool>(0) {
        return Err(UpError::Failed(anyhow::anyhow!(
            "the role of --pg {} cannot create databases and roles; use a superuser (e.g. postgres)",
            residency_config::redact_url(admin_url)
        )));
    }
    Ok(())
}

fn role(state: &mut State, name: String) -> anyhow::Result<RoleSpec> {
    let password = state.password(&name)?;
    Ok(RoleSpec { name, password })
}

/// Creates (or brings up to date) every database and role, and applies all migrations.
///
/// # Errors
/// Database errors, named with the database they concern.
pub(super) async fn ensure(
    admin_url: &str,
    names: &Names,
    regions: &[RegionId],
    state: &mut State,
) -> anyhow::Result<Urls> {
    let dir_db = names.directory_db();
    let dir_roles = RolePlan {
        owner: role(state, names.directory_role("owner"))?,
        reader: role(state, names.directory_role("reader"))?,
        writer: role(state, names.directory_role("writer"))?,
    };
    residency_directory::bootstrap(admin_url, &dir_db, &dir_roles)
        .await
        .map_err(|e| anyhow::anyhow!("creating {dir_db}: {e:#}"))?;
    let owner = bootstrap::role_url(admin_url, &dir_roles.owner, &dir_db)?;
    let applied = residency_directory::migrate(&owner, &dir_roles.grant_roles())
        .await
        .map_err(|e| anyhow::anyhow!("migrating {dir_db}: {e:#}"))?;
    report("directory", &dir_db, &applied);
    let directory = bootstrap::role_url(admin_url, &dir_roles.reader, &dir_db)?;
    let directory_writer = bootstrap::role_url(admin_url, &dir_roles.writer, &dir_db)?;

    let mut out = Vec::new();
    for r in regions {
        let database = names.region_db(r);
        let plan = Plan {
            database: database.clone(),
            owner: role(state, names.region_role(r, "owner"))?,
            app: role(state, names.region_role(r, "app"))?,
            auditor: role(state, names.region_role(r, "auditor"))?,
        };
        bootstrap::bootstrap(admin_url, &plan)
            .await
            .map_err(|e| anyhow::anyhow!("creating {database}: {e:#}"))?;
        let urls = RegionUrls {
            owner: bootstrap::role_url(admin_url, &plan.owner, &database)?,
            app: bootstrap::role_url(admin_url, &plan.app, &database)?,
            auditor: bootstrap::role_url(admin_url, &plan.auditor, &database)?,
            auditor_role: plan.auditor.name.clone(),
        };
        let roles = GrantRoles {
            app: plan.app.name.clone(),
            auditor: plan.auditor.name.clone(),
        };
        let applied = region_migrate::migrate(&urls.owner, &roles)
            .await
            .map_err(|e| anyhow::anyhow!("migrating {database}: {e:#}"))?;
        report(r.as_str(), &database, &applied);
        out.push((r.clone(), urls));
    }
    Ok(Urls {
        directory,
        directory_writer,
        regions: out,
    })
}

fn report(label: &str, db: &str, applied: &[i32]) {
    if applied.is_empty() {
        println!("  database {db} ({label}): up to date");
    } else {
        println!("  database {db} ({label}): applied migrations {applied:?}");
    }
}

/// Drops every database and role of the stack named by `names` (missing ones are skipped).
///
/// # Errors
/// Database errors.
pub(super) async fn teardown(
    admin_url: &str,
    names: &Names,
    regions: &[RegionId],
) -> anyhow::Result<()> {
    let dir_roles = ["owner", "reader", "writer"].map(|k| names.directory_role(k));
    let refs: Vec<&str> = dir_roles.iter().map(String::as_str).collect();
    bootstrap::teardown(admin_url, &names.directory_db(), &refs).await?;
    for r in regions {
        let roles = ["owner", "app", "auditor"].map(|k| names.region_role(r, k));
        let refs: Vec<&str> = roles.iter().map(String::as_str).collect();
        bootstrap::teardown(admin_url, &names.region_db(r), &refs).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<RegionId> {
        ["us", "eu-de"].map(|r| RegionId::new(r).unwrap()).to_vec()
    }

    #[test]
    fn names_derive_from_the_prefix() {
        let n = Names::new("rs_a1", &regions()).unwrap();
        let eu = RegionId::new("eu-de").unwrap();
        assert_eq!(n.directory_db(), "rs_a1_directory");
        assert_eq!(n.directory_role("reader"), "rs_a1_directory_reader");
        assert_eq!(n.region_db(&eu), "rs_a1_eu_de");
        assert_eq!(n.region_role(&eu, "app"), "rs_a1_eu_de_app");
    }

    #[test]
    fn bad_prefixes_are_usage_errors() {
        for bad in ["", "1abc", "Res", "a-b", "a;drop", &"a".repeat(33)] {
            assert!(
                matches!(Names::new(bad, &regions()), Err(UpError::Usage(_))),
                "{bad:?}"
            );
        }
        let long = RegionId::new(&"r".repeat(32)).unwrap();
        assert!(matches!(
            Names::new(&"p".repeat(30), &[long]),
            Err(UpError::Usage(_))
        ));
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            residency_config::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            residency_config::redact_url("postgres://u@h/db"),
            "postgres://u@h/db"
        );
    }
}
