//! Directory phase: tenant → home region, tier and status; API keys by prefix.
//!
//! Two sources fill one in-memory [`cache::Cache`] (dashmap; a lookup is a hash probe and an
//! `Arc` clone, no I/O, no lock held across an `.await`):
//! - a TOML file ([`residency_core::DirectoryFile`]), loaded once at start, for
//!   small and test deployments: a miss is an unknown tenant;
//! - the global directory database ([`pg`]): warmed at start, kept current by
//!   `LISTEN/NOTIFY` (a changed row is re-read within milliseconds, a deleted one evicted,
//!   everything re-read after a reconnect and whatever it no longer holds swept), single-flight queries on tenant misses with a short negative cache (API key
//!   misses never query: the fresh cache holds every key), cached tenants
//!   served while the directory is down for up to `max_stale`, and a fail-closed 503 for
//!   anything it cannot resolve meanwhile.
//!
//! Architecture invariants:
//! - only `active` tenants are served, and `moving` ones for reads (the proxy refuses their
//!   non-safe methods with 503 `tenant_moving`); `provisioning` (503), `suspended` (403) and
//!   `deleted`/unknown (404) never reach a region node;
//! - no directory query on the hot path for a cached tenant;
//! - a tenant or API key deleted from the directory stops being served: evicted when its
//!   `DELETE` notification is re-read, and swept by the next full load when the notification
//!   was lost (mark and sweep: a row the load did not read is dropped);
//! - refusals do not reveal more than needed: an unknown or deleted tenant is a plain 404 that
//!   says nothing about other regions.

pub mod cache;
pub mod domains;
pub mod pg;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use residency_config::gateway::DirectorySource;
use residency_config::{ConfigError, Problem};
use residency_core::{ApiKeyEntry, DirectoryFile, TenantEntry, TenantStatus, Tier};
use residency_core::{RegionId, TenantId};

use tokio_util::sync::CancellationToken;

use cache::{Cache, Probe};
use domains::{DomainRow, Domains};
use pg::PgSource;

/// What the gateway knows about one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The home region: the only region its requests go to.
    pub region: RegionId,
    /// Commercial tier.
    pub tier: Tier,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Per-minute quota (override or tier default).
    pub rate_limit_per_min: u32,
}

impl TenantRecord {
    /// The routing view of a directory entry.
    #[must_use]
    pub(crate) fn from_entry(t: &TenantEntry) -> Self {
        Self {
            region: t.region.clone(),
            tier: t.tier,
            status: t.status,
            rate_limit_per_min: t
                .rate_limit_per_min
                .unwrap_or_else(|| t.tier.default_rate_per_min()),
        }
    }
}

/// One API key, as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// Owning tenant.
    pub tenant: TenantId,
    /// SHA-256 of the whole key.
    pub hash: [u8; 32],
    /// Role granted.
    pub role: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Revoked keys are refused.
    pub revoked: bool,
}

impl ApiKeyRecord {
    /// The cached view of a directory entry.
    ///
    /// # Errors
    /// When the stored hash is not 64 hex characters.
    pub(crate) fn from_entry(k: &ApiKeyEntry) -> Result<Self, &'static str> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&k.hash, &mut hash)
            .map_err(|_| "must be 64 hex characters (sha-256)")?;
        Ok(Self {
            id: k.id.clone(),
            tenant: k.tenant,
            hash,
            role: k.role.clone(),
            expires_at: k.expires_at,
            revoked: k.revoked,
        })
    }
}

/// Why a tenant cannot be served.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// Not in the directory (or deleted).
    #[error("unknown tenant")]
    UnknownTenant,
    /// Suspended by an admin.
    #[error("tenant suspended")]
    Suspended,
    /// Being provisioned.
    #[error("tenant not available")]
    Unavailable,
    /// Being moved to another region: a write (non-safe method) is refused, reads go on.
    #[error("tenant moving")]
    Moving,
    /// The directory cannot be reached and the cache cannot answer (a miss, or cached data
    /// older than `max_stale`): fail closed.
    #[error("directory unavailable")]
    DirectoryDown,
}

impl DirectoryError {
    /// The response status.
    #[must_use]
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::UnknownTenant => StatusCode::NOT_FOUND,
            Self::Suspended => StatusCode::FORBIDDEN,
            Self::Unavailable | Self::Moving | Self::DirectoryDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A bounded label.
    #[must_use]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTenant => "unknown_tenant",
            Self::Suspended => "tenant_suspended",
            Self::Unavailable => "tenant_unavailable",
            Self::Moving => "tenant_moving",
            Self::DirectoryDown => "directory_unavailable",
        }
    }

    /// The client-safe explanation.
    #[must_use]
    pub(crate) fn client_detail(&self) -> &'static str {
        match self {
            Self::UnknownTenant => "no such customer",
            Self::Suspended => "the customer account is suspended",
            Self::Unavailable => "the customer account is being provisioned; retry later",
            Self::Moving => {
                "the customer is being moved to another region: writes are paused, reads are served; retry later"
            }
            Self::DirectoryDown => "the customer directory is not reachable right now; retry later",
        }
    }

    /// `Retry-After` seconds, when retrying makes sense.
    #[must_use]
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Moving => Some(2),
            Self::Unavailable | Self::DirectoryDown => Some(5),
            Self::UnknownTenant | Self::Suspended => None,
        }
    }
}

/// Freshness of the directory, for `/readyz` and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryHealth {
    /// `file` or `postgres`.
    pub source: &'static str,
    /// A full load completed at least once.
    pub loaded: bool,
    /// How long the data has been possibly out of date (`None` when current).
    pub(crate) stale_for: Option<Duration>,
    /// Cached data is still allowed to be served.
    pub serving: bool,
    /// Cached tenants (negative entries included).
    pub tenants: usize,
    /// Cached API keys (negative entries included).
    pub api_keys: usize,
    /// Unix seconds of the last change notification applied (Postgres source; `None`: none
    /// since start).
    pub last_notify: Option<u64>,
    /// Unix seconds of the last successful full load (Postgres source).
    pub last_full_load: Option<u64>,
}

/// Size and counters of the tenant cache ([`Directory::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Cached tenants (negative entries included).
    pub tenants: usize,
    /// Bounded mode's capacity (`None`: every tenant is held).
    pub capacity: Option<usize>,
    /// Tenants evicted for capacity.
    pub evictions: u64,
    /// Directory queries issued for tenant misses.
    pub miss_queries: u64,
    /// Tenant misses that joined a query in flight instead of issuing one.
    pub miss_joins: u64,
    /// The data is current (loaded, and `LISTEN` connected since).
    pub fresh: bool,
}

/// Only `active` tenants are served, and `moving` ones for reads (the proxy's resolve phase
/// refuses their writes).
fn servable(record: Arc<TenantRecord>) -> Result<Arc<TenantRecord>, DirectoryError> {
    match record.status {
        TenantStatus::Active | TenantStatus::Moving => Ok(record),
        TenantStatus::Suspended => Err(DirectoryError::Suspended),
        TenantStatus::Provisioning => Err(DirectoryError::Unavailable),
        TenantStatus::Deleted => Err(DirectoryError::UnknownTenant),
    }
}

/// How long start-up waits for the first full load of a Postgres directory before serving
/// without it (every tenant 503 until the load succeeds in the background).
pub(crate) const WARM_WAIT: Duration = Duration::from_secs(5);

/// The directory described by `[directory]`; a Postgres directory syncs until `shutdown`.
///
/// # Errors
/// An unreadable or invalid directory file, or an unparsable database URL.
pub(crate) async fn from_config(
    source: &DirectorySource,
    regions: &[RegionId],
    certs: Option<domains::CertDir>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Directory> {
    let directory = from_source(source, regions, shutdown).await?;
    if let Some(certs) = certs {
        directory.domains.set_cert_dir(certs);
    }
    Ok(directory)
}

async fn from_source(
    source: &DirectorySource,
    regions: &[RegionId],
    shutdown: &CancellationToken,
) -> anyhow::Result<Directory> {
    match source {
        DirectorySource::File { path } => Ok(Directory::load(path, regions)?),
        DirectorySource::Postgres {
            url,
            max_stale,
            negative_ttl,
            timeout,
            negative_entries,
            // Checked with the config: clear text to a remote directory was refused at start.
            allow_insecure_transport: _,
            mode: _,
            capacity: _,
        } => {
            let opts = pg::PgOptions {
                url: url.expose().as_str().to_owned(),
                max_stale: *max_stale,
                negative_ttl: *negative_ttl,
                negative_entries: *negative_entries,
                timeout: *timeout,
                capacity: source.bounded_capacity(),
            };
            tracing::info!(url = %url, "using the postgres directory");
            Directory::postgres(opts, WARM_WAIT, shutdown.clone()).await
        }
    }
}

/// The directory phase: a cache and, for Postgres, its source.
pub struct Directory {
    cache: Arc<Cache>,
    domains: Arc<Domains>,
    source: Option<Arc<PgSource>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("cache", &self.cache)
            .field("domains", &self.domains.len())
            .field("postgres", &self.source.is_some())
            .finish()
    }
}

impl Directory {
    /// Loads a directory file; every tenant's region must be one of `regions`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and each bad entry.
    pub fn load(path: &Path, regions: &[RegionId]) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![Problem::new("", format!("cannot read file: {e}"))]))?;
        let file: DirectoryFile =
            residency_config::load::from_str(&text, &Vec::new()).map_err(|p| fail(vec![p]))?;
        Self::from_file(file, regions).map_err(fail)
    }

    /// Builds a fixed directory from parsed entries.
    ///
    /// # Errors
    /// Every problem found, each naming its entry.
    pub fn from_file(file: DirectoryFile, regions: &[RegionId]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut tenants = HashMap::with_capacity(file.tenants.len());
        for (i, t) in file.tenants.iter().enumerate() {
            if !regions.contains(&t.region) {
                problems.push(Problem::new(
                    format!("tenants[{i}].region"),
                    format!("region {} is not configured in the gateway", t.region),
                ));
            }
            if tenants.insert(t.id, TenantRecord::from_entry(t)).is_some() {
                problems.push(Problem::new(
                    format!("tenants[{i}].id"),
                    format!("tenant {} is listed twice", t.id),
                ));
            }
        }
        let mut api_keys = HashMap::with_capacity(file.api_keys.len());
        for (i, k) in file.api_keys.iter().enumerate() {
            let record = ApiKeyRecord::from_entry(k).unwrap_or_else(|why| {
                problems.push(Problem::new(format!("api_keys[{i}].hash"), why));
                ApiKeyRecord {
                    id: k.id.clone(),
                    tenant: k.tenant,
                    hash: [0; 32],
                    role: k.role.clone(),
                    expires_at: k.expires_at,
                    revoked: true,
                }
            });
            match tenants.get(&k.tenant) {
                None => problems.push(Problem::new(
                    format!("api_keys[{i}].tenant"),
                    format!("tenant {} is not in the directory", k.tenant),
                )),
                Some(t) if !t.tier.allows_api_keys() => problems.push(Problem::new(
                    format!("api_keys[{i}].tenant"),
                    format!("tier {} does not allow api keys", t.tier.as_str()),
                )),
                Some(_) => {}
            }
            if api_keys.insert(k.prefix.clone(), record).is_some() {
                problems.push(Problem::new(
                    format!("api_keys[{i}].prefix"),
                    format!("prefix {} is listed twice", k.prefix),
                ));
            }
        }
        let mut hostnames = std::collections::HashSet::new();
        for (i, d) in file.domains.iter().enumerate() {
            match residency_core::domain::parse_hostname(&d.hostname) {
                Ok(h) if h == d.hostname => {}
                Ok(_) => problems.push(Problem::new(
                    format!("domains[{i}].hostname"),
                    "must be lowercase",
                )),
                Err(why) => problems.push(Problem::new(format!("domains[{i}].hostname"), why)),
            }
            if !hostnames.insert(d.hostname.as_str()) {
                problems.push(Problem::new(
                    format!("domains[{i}].hostname"),
                    format!("hostname {} is listed twice", d.hostname),
                ));
            }
            if !tenants.contains_key(&d.tenant) {
                problems.push(Problem::new(
                    format!("domains[{i}].tenant"),
                    format!("tenant {} is not in the directory", d.tenant),
                ));
            }
            if d.cert_ref
                .as_deref()
                .is_some_and(|r| !residency_core::domain::is_cert_ref(r))
            {
                problems.push(Problem::new(
                    format!("domains[{i}].cert_ref"),
                    residency_core::domain::CERT_REF_RULE,
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // A file never changes under the gateway: nothing expires and it is always current.
        let cache = Cache::new(Duration::ZERO, 0, Duration::MAX);
        let read = cache.read_ticket();
        for (id, t) in tenants {
            cache.put_tenant(id, t, 0, read);
        }
        for (prefix, k) in api_keys {
            cache.put_api_key(prefix, k, read);
        }
        cache.mark_fresh();
        let domains = Domains::default();
        for d in file.domains {
            let row = DomainRow {
                cert_ref: d.cert_ref.unwrap_or_else(|| d.hostname.clone()),
                hostname: d.hostname,
                tenant: d.tenant,
                state: residency_core::domain::DomainState::Active,
                version: 0,
            };
            domains.apply(row, read);
        }
        Ok(Self {
            cache: Arc::new(cache),
            domains: Arc::new(domains),
            source: None,
        })
    }

    /// The Postgres directory: starts its `LISTEN` task and waits up to `warm_wait` for the
    /// first full load. A directory that is down does not stop the gateway: it then starts
    /// empty, answers 503 for every tenant and keeps retrying in the background.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub async fn postgres(
        opts: pg::PgOptions,
        warm_wait: Duration,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut cache = Cache::new(opts.negative_ttl, opts.negative_entries, opts.max_stale);
        if let Some(capacity) = opts.capacity {
            cache = cache.with_capacity(capacity);
        }
        let cache = Arc::new(cache);
        let domains = Arc::new(Domains::default());
        let source =
            PgSource::start(opts, Arc::clone(&cache), Arc::clone(&domains), shutdown).await?;
        if !source.wait_loaded(warm_wait).await {
            tracing::warn!(
                "directory not loaded within {warm_wait:?}; serving nothing until it is (503)"
            );
        }
        Ok(Self {
            cache,
            domains,
            source: Some(source),
        })
    }

    /// The record of a tenant that may be served now. Cached tenants cost one hash probe;
    /// a miss asks the directory once however many requests wait for the answer.
    ///
    /// # Errors
    /// [`DirectoryError`] when the tenant is unknown, deleted, suspended or in transition, or
    /// cannot be resolved because the directory is down.
    pub async fn resolve(&self, tenant: TenantId) -> Result<Arc<TenantRecord>, DirectoryError> {
        let record = match self.cache.tenant(tenant) {
            Probe::Hit(r) => r,
            Probe::Absent => return Err(DirectoryError::UnknownTenant),
            Probe::TooStale => return Err(DirectoryError::DirectoryDown),
            // Boxed so the query's state does not inflate every request's future: a hit then
            // costs a probe, not a large stack copy.
            Probe::Miss => Box::pin(self.load_miss(tenant)).await?,
        };
        servable(record)
    }

    async fn load_miss(&self, tenant: TenantId) -> Result<Arc<TenantRecord>, DirectoryError> {
        match &self.source {
            None => Err(DirectoryError::UnknownTenant),
            Some(src) => src
                .load_tenant(tenant)
                .await?
                .ok_or(DirectoryError::UnknownTenant),
        }
    }

    /// The API key with public `prefix`, if there is one. Never a directory query (so not
    /// `async`): a fresh cache holds every key.
    ///
    /// # Errors
    /// [`DirectoryError::DirectoryDown`] when it is not cached and the cache is stale.
    pub fn api_key(&self, prefix: &str) -> Result<Option<Arc<ApiKeyRecord>>, DirectoryError> {
        match self.cache.api_key(prefix) {
            Probe::Hit(k) => Ok(Some(k)),
            Probe::Absent => Ok(None),
            Probe::TooStale => Err(DirectoryError::DirectoryDown),
            Probe::Miss => match &self.source {
                None => Ok(None),
                Some(src) => src.api_key_miss(),
            },
        }
    }

    /// The directory database, when this directory has one (the admin API writes there).
    #[must_use]
    pub fn store(&self) -> Option<&residency_directory::Store> {
        self.source.as_deref().map(PgSource::store)
    }

    /// Re-reads one tenant now (after an admin write, so this replica answers with the new
    /// state at once instead of when the notification arrives).
    pub(crate) async fn refresh_tenant(&self, tenant: TenantId) {
        if let Some(src) = &self.source {
            src.reload_tenant(tenant).await;
        }
    }

    /// The custom domains (shared with the TLS resolver and the admin API).
    #[must_use]
    pub fn domains(&self) -> &Arc<Domains> {
        &self.domains
    }

    /// Re-reads one custom domain now (after an admin write).
    pub(crate) async fn refresh_domain(&self, hostname: &str) {
        if let Some(src) = &self.source {
            src.reload_domain(hostname).await;
        }
    }

    /// Re-reads one API key now.
    pub(crate) async fn refresh_api_key(&self, prefix: &str) {
        if let Some(src) = &self.source {
            src.reload_api_key(prefix).await;
        }
    }

    /// Cache size and the bounded mode's counters.
    #[must_use]
    pub fn stats(&self) -> DirectoryStats {
        let (miss_queries, miss_joins) = self.source.as_ref().map_or((0, 0), |s| s.miss_counts());
        DirectoryStats {
            tenants: self.cache.len().0,
            capacity: self.cache.capacity(),
            evictions: self.cache.evictions(),
            miss_queries,
            miss_joins,
            fresh: self.cache.fresh(),
        }
    }

    /// Freshness and size, for `/readyz` and the admin API.
    #[must_use]
    pub fn health(&self) -> DirectoryHealth {
        let (tenants, api_keys) = self.cache.len();
        let (last_notify, last_full_load) = self
            .source
            .as_ref()
            .map_or((None, None), |s| s.last_events());
        DirectoryHealth {
            source: if self.source.is_some() {
                "postgres"
            } else {
                "file"
            },
            loaded: self.cache.loaded(),
            stale_for: self.cache.stale_for(),
            serving: !self.cache.too_stale(),
            tenants,
            api_keys,
            last_notify,
            last_full_load,
        }
    }
}

#[cfg(test)]
mod tests;
