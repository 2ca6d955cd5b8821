//! A fresh directory database per test, with its own owner, reader and writer roles created
//! and migrated exactly as in production, dropped (with its roles) on drop.

use residency_directory::{RolePlan, RoleSpec};
use uuid::Uuid;

use crate::admin_url;

/// A uniquely named directory database.
pub struct DirectoryDb {
    /// Database name.
    pub name: String,
    /// URL of the database as the administrator (catalog inspection and test set-up only).
    pub url: String,
    /// The owner role (migrations only).
    pub owner_url: String,
    /// The reader role: what the gateway's cache connects as (`directory.url`).
    pub reader_url: String,
    /// The writer role: what the admin API writes through (`admin.directory_url`).
    pub writer_url: String,
    roles: [String; 3],
    /// The admin URL it was created with (and is dropped with).
    admin: String,
}

impl DirectoryDb {
    /// Creates the roles and the database and migrates it as the owner.
    ///
    /// # Panics
    /// When Postgres is unreachable or the migration fails.
    pub async fn create() -> Self {
        Self::create_with(residency_directory::MIGRATIONS).await
    }

    /// Creates a directory database with only `migrations` applied (a schema as an older
    /// release left it); [`residency_directory::migrate`] brings it up to date.
    ///
    /// # Panics
    /// When Postgres is unreachable or the migration fails.
    pub async fn create_with(migrations: &[residency_pg::migrate::Migration]) -> Self {
        Self::create_on_with(&admin_url(), migrations).await
    }

    /// [`DirectoryDb::create`] on the cluster `admin` (a superuser URL) points at; the role
    /// URLs keep its parameters (`sslmode`, `sslrootcert`, …).
    ///
    /// # Panics
    /// When Postgres is unreachable or the migration fails.
    pub async fn create_on(admin: &str) -> Self {
        Self::create_on_with(admin, residency_directory::MIGRATIONS).await
    }

    async fn create_on_with(admin: &str, migrations: &[residency_pg::migrate::Migration]) -> Self {
        let name = format!(
            "rgt_{}_directory",
            &Uuid::new_v4().simple().to_string()[..10]
        );
        let spec = |kind: &str| RoleSpec {
            name: format!("{name}_{kind}"),
            password: crate::password(),
        };
        let plan = RolePlan {
            owner: spec("owner"),
            reader: spec("reader"),
            writer: spec("writer"),
        };
        let admin = admin.to_owned();
        residency_directory::bootstrap(&admin, &name, &plan)
            .await
            .unwrap_or_else(|e| panic!("bootstrap {name}: {e:#}"));
        let role_url = |r: &RoleSpec| residency_pg::bootstrap::role_url(&admin, r, &name).unwrap();
        let owner_url = role_url(&plan.owner);
        let roles = plan.grant_roles();
        residency_pg::migrate::run(&owner_url, residency_directory::LOCK_KEY, migrations, |s| {
            roles.render(s)
        })
        .await
        .unwrap_or_else(|e| panic!("migrate {name}: {e:#}"));
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path(&name);
        Self {
            url: u.to_string(),
            owner_url,
            reader_url: role_url(&plan.reader),
            writer_url: role_url(&plan.writer),
            roles: [plan.owner.name, plan.reader.name, plan.writer.name],
            name,
            admin,
        }
    }
}

impl DirectoryDb {
    /// The reader and writer roles the migrations grant to.
    #[must_use]
    pub fn grant_roles(&self) -> residency_directory::DirectoryRoles {
        residency_directory::DirectoryRoles {
            reader: self.roles[1].clone(),
            writer: self.roles[2].clone(),
        }
    }
}

impl Drop for DirectoryDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = self.roles.clone();
        let admin = self.admin.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
                if let Err(e) = residency_pg::bootstrap::teardown(&admin, &name, &roles).await {
                    eprintln!("teardown of {name} failed: {e:#}");
                }
            });
        })
        .join();
    }
}
