//! Typed access to the directory database: the reads that feed gateway caches and the audit,
//! and the writes behind the admin API. Every write runs in a transaction that sets
//! `residency.actor` locally, so the history trigger records who made the change.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bb8::Pool;
use bb8_postgres::PostgresConnectionManager;
use chrono::{DateTime, Utc};
use residency_core::{ApiKeyEntry, DirectoryFile, OrgId, TenantEntry};
use residency_pg::tls::MakeTls;
use tokio_postgres::Row;
use uuid::Uuid;

mod domains;
mod moves;
mod org_ownership;
mod org_tokens;
mod records;
mod signups;

/// The columns of an organization, in [`records::organization`]'s names.
pub(crate) const ORG_COLUMNS: &str = "id, name, domain, plan, owner_email, provisional, created_at";

pub use domains::DomainVerdict;
pub use moves::{Lease, MoveRecord, MoveTableRecord};
pub use org_ownership::{OwnershipDecision, OwnershipOutcome};
pub use org_tokens::OrgTokenEntry;
use records::{enum_str, key_entry, API_KEY_COLUMNS, TENANT_COLUMNS};
pub use records::{NewTenant, RolePowers, TenantFilter, TenantPatch, TenantRecord};
pub use residency_core::wire::admin::SignupStatus;
use residency_core::wire::admin::{ApiKey, Organization, TenantHistoryEntry};
pub use signups::{NewSignup, SignupRecord};

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row.
    #[error("not found")]
    NotFound,
    /// A unique value is taken (organization domain).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value the database refused, naming the field.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The directory database is unreachable or timed out.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.as_db_error() {
            Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => {
                Self::Conflict("a row with the same unique value exists".into())
            }
            Some(db) if *db.code() == SqlState::FOREIGN_KEY_VIOLATION => Self::Invalid {
                field: "org_id",
                detail: "no such organization".into(),
            },
            Some(db) if *db.code() == SqlState::CHECK_VIOLATION => Self::Invalid {
                field: "body",
                detail: format!(
                    "a value is out of range ({})",
                    db.constraint().unwrap_or("check")
                ),
            },
            // A refused login or a missing database (the pool connecting with a rotated
            // password, say) is the directory being unavailable, named as such.
            Some(_) if residency_pg::tls::refusal(&e).is_some() => {
                Self::Unavailable(residency_pg::tls::reason(&e))
            }
            Some(db) => Self::Unexpected(anyhow::anyhow!(
                "directory error {}: {}",
                db.code().code(),
                db.message()
            )),
            None => Self::Unavailable(residency_pg::tls::reason(&e)),
        }
    }
}

impl From<bb8::RunError<tokio_postgres::Error>> for StoreError {
    fn from(e: bb8::RunError<tokio_postgres::Error>) -> Self {
        match e {
            bb8::RunError::User(e) => Self::from(e),
            bb8::RunError::TimedOut => Self::Unavailable("connection checkout timed out".into()),
        }
    }
}

/// bb8-postgres' manager with the check-out test of [`residency_pg::pool`]: a connection
/// closed while idle (the directory restarted) is replaced, without a ping per check-out.
/// bb8 retries a failed connection until the check-out times out and then reports only the
/// timeout, so the manager keeps why the last attempt failed ([`Store::conn`] names it).
struct Manager(
    PostgresConnectionManager<MakeTls>,
    Arc<Mutex<Option<String>>>,
);

impl bb8::ManageConnection for Manager {
    type Connection = tokio_postgres::Client;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let result = self.0.connect().await;
        *self.1.lock().unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().err().map(residency_pg::tls::reason);
        result
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        residency_pg::pool::unless_closed(conn).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.is_closed()
    }
}

/// The directory database handle.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    /// Why the pool's last connection attempt failed, if it did (shared with its manager).
    last_connect_error: Arc<Mutex<Option<String>>>,
}

impl Store {
    /// A pool of up to 8 connections to `url`. Connections open lazily, so a directory that
    /// is down does not stop the caller from starting; each call reports it instead.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::lazy(url)
    }

    /// [`Store::connect`] outside an `async` context: nothing connects before the first call.
    ///
    /// # Errors
    /// When the URL does not parse or its certificate files cannot be read (the message
    /// names the URL without its password).
    pub fn lazy(url: &str) -> anyhow::Result<Self> {
        let target =
            residency_pg::Target::parse(url).map_err(|e| anyhow::anyhow!("directory url: {e}"))?;
        let tls = target.tls();
        let mut cfg = target.config().clone();
        cfg.application_name("residency-directory");
        cfg.connect_timeout(Duration::from_secs(3));
        cfg.options("-c statement_timeout=5000");
        let last_connect_error = Arc::new(Mutex::new(None));
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(3))
            .test_on_check_out(true)
            .build_unchecked(Manager(
                PostgresConnectionManager::new(cfg, tls),
                last_connect_error.clone(),
            ));
        Ok(Self {
            pool,
            last_connect_error,
        })
    }

    /// A pooled connection; a check-out that timed out because connections fail says why
    /// (a refused login, an unknown database, a refused connection).
    async fn conn(&self) -> Result<bb8::PooledConnection<'_, Manager>, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            bb8::RunError::TimedOut => {
                let last = self
                    .last_connect_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                StoreError::Unavailable(match last {
                    Some(why) => format!("connection checkout timed out: {why}"),
                    None => "connection checkout timed out".into(),
                })
            }
            other => StoreError::from(other),
        })
    }

    /// What the connected role may do beyond its job, for start-up warnings: a reader or
    /// writer with any of these powers defeats the least-privilege split.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn role_powers(&self) -> Result<RolePowers, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT current_user::text, r.rolsuper OR r.rolbypassrls, \
                        EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid \
                                   AND c.relnamespace = 'public'::regnamespace), \
                        has_table_privilege('tenants', 'INSERT') OR has_table_privilege('tenants', 'UPDATE') \
                          OR has_table_privilege('api_keys', 'INSERT') OR has_table_privilege('api_keys', 'UPDATE'), \
                        has_table_privilege('tenants', 'DELETE') OR has_table_privilege('api_keys', 'DELETE') \
                          OR has_table_privilege('tenants', 'TRUNCATE') OR has_table_privilege('api_keys', 'TRUNCATE') \
                          OR has_table_privilege('domains', 'DELETE') \
                   FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        Ok(RolePowers {
            role: row.get(0),
            superuser: row.get(1),
            owns_tables: row.get(2),
            writes: row.get(3),
            deletes: row.get(4),
        })
    }

    /// Every tenant that is not deleted, as routing entries.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn tenants(&self) -> Result<Vec<TenantEntry>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants WHERE status <> 'deleted' ORDER BY id"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TenantRecord::from_row(r).entry())
            .collect())
    }

    /// Every API key (hashes, never plaintext), revoked ones included so caches can drop them.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyEntry>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT id, tenant_id, prefix, hash, role, expires_at, revoked_at FROM api_keys ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(key_entry).collect())
    }

    /// Tenants, keys and active domains together, in the file directory's shape.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn snapshot(&self) -> Result<DirectoryFile, StoreError> {
        Ok(DirectoryFile {
            tenants: self.tenants().await?,
            api_keys: self.api_keys().await?,
            domains: self
                .domains()
                .await?
                .into_iter()
                .filter(|d| d.state == residency_core::domain::DomainState::Active)
                .map(|d| residency_core::domain::DomainEntry {
                    hostname: d.hostname,
                    tenant: d.tenant_id,
                    cert_ref: Some(d.cert_ref),
                })
                .collect(),
        })
    }

    /// One tenant, whatever its status.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(TenantRecord::from_row))
    }

    /// One API key by its public prefix.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn api_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKeyEntry>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT id, tenant_id, prefix, hash, role, expires_at, revoked_at FROM api_keys WHERE prefix = $1",
                &[&prefix],
            )
            .await?;
        Ok(row.as_ref().map(key_entry))
    }

    /// Runs `sql` with `params` in a transaction attributed to `actor`, returning the rows.
    async fn write(
        &self,
        actor: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT set_config('residency.actor', $1, true)", &[&actor])
            .await?;
        let rows = tx.query(sql, params).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Creates an organization.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the domain is taken; [`StoreError::Invalid`] for values
    /// the schema refuses.
    pub async fn create_org(
        &self,
        actor: &str,
        name: &str,
        domain: &str,
        plan: &str,
    ) -> Result<Organization, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "INSERT INTO organizations (id, name, domain, plan) VALUES ($1, $2, $3, $4) \
                     RETURNING {ORG_COLUMNS}"
                ),
                &[&Uuid::now_v7(), &name, &domain, &plan],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict("an organization with this domain exists".into())
                }
                StoreError::Invalid { .. } => StoreError::Invalid {
                    field: "domain",
                    detail: "must be a lowercase dns name".into(),
                },
                other => other,
            })?;
        Ok(records::organization(&rows[0]))
    }

    /// Organizations, keyset-paginated by id.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_orgs(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Organization>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {ORG_COLUMNS} FROM organizations \
                 WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await?;
        Ok(rows.iter().map(records::organization).collect())
    }

    /// One organization.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org(&self, id: OrgId) -> Result<Option<Organization>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"),
                &[&id.as_uuid()],
            )
            .await?;
        Ok(row.as_ref().map(records::organization))
    }

    /// Creates a tenant in status `provisioning`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown organization or refused values.
    pub async fn create_tenant(
        &self,
        actor: &str,
        t: &NewTenant,
    ) -> Result<TenantRecord, StoreError> {
        let quota = t
            .rate_limit_per_min
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let rows = self
            .write(
                actor,
                &format!(
                    "INSERT INTO tenants (id, org_id, name, region, tier, status, rate_limit_per_min) \
                     VALUES ($1, $2, $3, $4, $5, 'provisioning', $6) RETURNING {TENANT_COLUMNS}"
                ),
                &[&Uuid::now_v7(), &t.org_id.map(|o| o.as_uuid()), &t.name, &t.region.as_str(), &enum_str(&t.tier), &quota],
            )
            .await?;
        Ok(TenantRecord::from_row(&rows[0]))
    }

    /// Applies `patch` to a tenant. The region is not part of an update: moving a tenant is a
    /// separate operation.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown tenant.
    pub async fn update_tenant(
        &self,
        actor: &str,
        id: Uuid,
        patch: &TenantPatch,
    ) -> Result<TenantRecord, StoreError> {
        let quota = patch
            .rate_limit_per_min
            .flatten()
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let rows = self
            .write(
                actor,
                &format!(
                    "UPDATE tenants SET name = coalesce($2, name), tier = coalesce($3, tier), \
                       status = coalesce($4, status), \
                       rate_limit_per_min = CASE WHEN $5 THEN $6 ELSE rate_limit_per_min END \
                     WHERE id = $1 RETURNING {TENANT_COLUMNS}"
                ),
                &[
                    &id,
                    &patch.name,
                    &patch.tier.map(|t| enum_str(&t)),
                    &patch.status.map(|s| enum_str(&s)),
                    &patch.rate_limit_per_min.is_some(),
                    &quota,
                ],
            )
            .await?;
        rows.first()
            .map(TenantRecord::from_row)
            .ok_or(StoreError::NotFound)
    }

    /// Tenants matching `filter`, ordered by id.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_tenants(
        &self,
        filter: &TenantFilter,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants \
                     WHERE ($1::uuid IS NULL OR id > $1) AND ($2::text IS NULL OR region = $2) \
                       AND ($3::text IS NULL OR tier = $3) AND ($4::text IS NULL OR status = $4) \
                       AND ($5::uuid IS NULL OR org_id = $5) \
                     ORDER BY id LIMIT $6"
                ),
                &[
                    &filter.after,
                    &filter.region,
                    &filter.tier.map(|t| enum_str(&t)),
                    &filter.status.map(|s| enum_str(&s)),
                    &filter.org_id.map(|o| o.as_uuid()),
                    &filter.limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(TenantRecord::from_row).collect())
    }

    /// A tenant's change history, oldest first.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn history(&self, tenant: Uuid) -> Result<Vec<TenantHistoryEntry>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT id, at, actor, change, region, status, tier, version, detail FROM tenant_history \
                 WHERE tenant_id = $1 ORDER BY id",
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(records::history_entry).collect())
    }

    /// Creates an API key granting `role`; returns the record and the plaintext (shown once).
    /// The role must not be empty (the schema refuses it): callers apply
    /// [`crate::DEFAULT_API_KEY_ROLE`] when none is given.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown tenant.
    pub async fn create_api_key(
        &self,
        actor: &str,
        tenant: Uuid,
        name: &str,
        role: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(ApiKey, String), StoreError> {
        let key = crate::keys::generate()?;
        let rows = self
            .write(
                actor,
                &format!(
                    "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, role, expires_at) \
                     SELECT $1, id, $3, $4, $5, $6, $7 FROM tenants WHERE id = $2 \
                     RETURNING {API_KEY_COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &tenant,
                    &name,
                    &key.prefix,
                    &key.hash,
                    &role,
                    &expires_at,
                ],
            )
            .await?;
        let record = rows
            .first()
            .map(records::api_key)
            .ok_or(StoreError::NotFound)?;
        Ok((record, key.plaintext))
    }

    /// A tenant's keys, without secrets.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_api_keys(&self, tenant: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id"),
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(records::api_key).collect())
    }

    /// Revokes a key of `tenant` (idempotent).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant has no such key.
    pub async fn revoke_api_key(
        &self,
        actor: &str,
        tenant: Uuid,
        key: Uuid,
    ) -> Result<ApiKey, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {API_KEY_COLUMNS}"
                ),
                &[&tenant, &key],
            )
            .await?;
        rows.first()
            .map(records::api_key)
            .ok_or(StoreError::NotFound)
    }
}
