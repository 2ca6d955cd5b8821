//! The global directory: organizations, tenants (customers) with their home region, tier,
//! status and limits, API keys (hashes only), and an append-only history of tenant changes.
//! It holds routing metadata only, never customer data.
//!
//! - [`Store`]: reads for the gateway's cache and the audit, and the admin writes;
//! - [`listen`]: a reconnecting `LISTEN residency_directory` stream of [`Change`]s, so gateway
//!   caches are invalidated within milliseconds and resync fully after a reconnect;
//! - [`migrate`]: the directory schema (with its NOTIFY and history triggers);
//! - [`keys`]: API key generation (`rk_<prefix>_<secret>`, SHA-256 stored).

pub mod keys;
mod listen;
mod store;

pub use listen::{listen, Change};
pub use store::{
    ApiKeyRecord, HistoryEntry, NewTenant, Organization, Store, StoreError, TenantFilter,
    TenantPatch, TenantRecord,
};

use residency_pg::migrate::Migration;

/// The directory's migrations.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_directory",
        sql: include_str!("../migrations/0001_directory.sql"),
    },
    Migration {
        version: 2,
        name: "0002_api_key_default_role",
        sql: include_str!("../migrations/0002_api_key_default_role.sql"),
    },
];

/// The role an API key grants when it is created without one. Keys always name a role: the
/// node resolves a key's requests by it (an API key's subject is never a member).
pub const DEFAULT_API_KEY_ROLE: &str = "developer";

/// The NOTIFY channel.
pub const CHANNEL: &str = "residency_directory";

const LOCK_KEY: i64 = 0x4449_5245_4354_4f52; // "DIRECTOR"

/// Applies the directory's pending migrations with `url` (its owner). Returns the versions
/// applied.
///
/// # Errors
/// Connection or SQL errors.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<i32>> {
    residency_pg::migrate::run(url, LOCK_KEY, MIGRATIONS, |s| Ok(s.to_owned())).await
}
