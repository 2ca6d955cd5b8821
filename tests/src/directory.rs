//! A fresh directory database per test, migrated, dropped on drop.

use uuid::Uuid;

use crate::admin_url;

/// A uniquely named directory database.
pub struct DirectoryDb {
    /// Database name.
    pub name: String,
    /// URL of the database (admin role; the directory has no RLS).
    pub url: String,
}

impl DirectoryDb {
    /// Creates and migrates a directory database.
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
        let name = format!(
            "rgt_{}_directory",
            &Uuid::new_v4().simple().to_string()[..10]
        );
        let admin = crate::connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let mut u = url::Url::parse(&admin_url()).unwrap();
        u.set_path(&name);
        let url = u.to_string();
        // Any advisory lock key: nothing else migrates this fresh database.
        residency_pg::migrate::run(
            &url,
            0x5254_4449_5245_4354,
            migrations,
            |s| Ok(s.to_owned()),
        )
        .await
        .unwrap_or_else(|e| panic!("migrate {name}: {e:#}"));
        Self { name, url }
    }
}

impl Drop for DirectoryDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Err(e) = residency_pg::bootstrap::teardown(&admin_url(), &name, &[]).await {
                    eprintln!("teardown of {name} failed: {e:#}");
                }
            });
        })
        .join();
    }
}
