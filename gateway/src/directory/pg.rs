//! The Postgres directory source: fills and invalidates the [`Cache`] from the global
//! directory database.
//!
//! - **Warm and resync**: every (re)connection of the `LISTEN` stream starts with
//!   [`Change::Resync`]; the sync task then reloads every tenant and key and marks the cache
//!   fresh. A failed full load is retried every second until one succeeds.
//! - **Invalidation**: [`Change::Tenant`] / [`Change::ApiKey`] re-read that one row with a
//!   fresh query (never joined to a query that may have started before the change), so a
//!   suspend, tier change or revocation is effective within milliseconds; a re-read that
//!   finds no row (a hard `DELETE`, which notifies too) evicts the cached one.
//! - **Custom domains** ([`Change::Domain`]) are re-read by hostname into [`Domains`] the
//!   same way, and read with every full load (removed ones are not read, so they are swept).
//! - **Deletions while disconnected**: a full load marks every row it reads and then sweeps
//!   the cached rows it did not see ([`Cache::sweep_unseen`]), so a resync never keeps a
//!   tenant or key deleted while notifications were lost.
//! - **Staleness**: [`Change::Disconnected`] marks the cache stale; cached entries are served
//!   for up to `max_stale` (`residency_gateway_directory_staleness_seconds` says for how long), misses
//!   fail closed at once instead of waiting on a dead database.
//! - **Tenant misses** (not cached while the directory is up): one query per tenant however
//!   many requests wait on it ([`Flights`]), at most [`MAX_MISS_QUERIES`] such queries at
//!   once, and "not found" remembered for `negative_ttl`.
//! - **Bounded mode** (`capacity`): the cache holds at most `capacity` tenants (CLOCK
//!   eviction in [`Cache`]); no tenant is read at start, each is read on its first miss
//!   (single-flight as above); a notification for a tenant the cache does not hold (and is
//!   not loading) is ignored; a resync re-reads the tenant table once and refreshes only the
//!   cached rows, sweeping cached ones it no longer finds; while `LISTEN` is down, misses
//!   still query the directory (cached rows and the ones loaded meanwhile are served up to
//!   `max_stale` after the disconnect, then everything fails closed). API keys are all held
//!   in both modes.
//! - **API key misses** never query: key prefixes come from unauthenticated requests, and a
//!   fresh cache holds every key, so a missing prefix is an unknown key (see
//!   [`PgSource::api_key_miss`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use residency_core::TenantEntry;
use residency_core::{RegionId, TenantId};
use residency_directory::{Change, Store, TenantFilter};
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use super::domains::{DomainRow, Domains};
use super::{ApiKeyRecord, DirectoryError, TenantRecord};
use crate::metrics as m;

/// Directory queries caused by cache misses that may run at once; further misses wait (up to
/// the query timeout) so a flood of unknown ids cannot exhaust the directory's connections.
pub(crate) const MAX_MISS_QUERIES: usize = 4;
/// Rows per page of a full load.
const PAGE: i64 = 5000;
/// Pause before retrying a failed full load.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// Settings of the Postgres source (from `[directory] source = "postgres"`).
#[derive(Clone)]
pub struct PgOptions {
    /// Connection URL (may carry a password: never log it).
    pub url: String,
    /// Serve cached entries this long while the directory is unreachable.
    pub max_stale: Duration,
    /// Remember "not found" this long.
    pub negative_ttl: Duration,
    /// Remember at most this many "not found" answers.
    pub negative_entries: usize,
    /// Timeout of one query.
    pub timeout: Duration,
    /// Bounded mode: at most this many tenants cached, each loaded on its first miss
    /// (`None`: full mode, every tenant loaded at start).
    pub capacity: Option<usize>,
}

/// What a point read that finds no row does to a cached one.
#[derive(Debug, Clone, Copy)]
enum Absent {
    /// A miss (the row was not cached): remember "not found", keep any row cached meanwhile.
    Remember,
    /// A re-read after a change: the row was deleted, evict it.
    Evict,
}

/// Single-flight: concurrent callers for one key share one run of the loader.
///
/// The first caller's future runs the loader; the others wait on the same `OnceCell` (if the
/// first caller is cancelled, a waiter takes over). The entry is removed once the result is
/// in, so a later miss runs the loader again: only callers that overlap share a result.
pub(crate) struct Flights<K, V> {
    inflight: DashMap<K, Arc<OnceCell<V>>>,
    /// Callers that found a run in flight and joined it.
    joins: AtomicU64,
    joined: metrics::Counter,
}

impl<K: Eq + std::hash::Hash + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            inflight: DashMap::new(),
            joins: AtomicU64::new(0),
            joined: metrics::counter!(m::DIRECTORY_MISS_JOINS_TOTAL),
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone, V: Clone> Flights<K, V> {
    /// Runs `load` for `key` unless a run for it is in flight, then shares its result.
    pub(crate) async fn run<F, Fut>(&self, key: K, load: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = V>,
    {
        // The shard guard is dropped at the end of this block, before any `.await`.
        let cell = match self.inflight.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => {
                self.joins.fetch_add(1, Ordering::Relaxed);
                self.joined.increment(1);
                Arc::clone(e.get())
            }
            dashmap::Entry::Vacant(e) => Arc::clone(e.insert(Arc::default()).value()),
        };
        let out = cell.get_or_init(load).await.clone();
        self.inflight.remove_if(&key, |_, c| Arc::ptr_eq(c, &cell));
        out
    }

    /// Whether a run for `key` is in flight.
    fn in_flight(&self, key: &K) -> bool {
        self.inflight.contains_key(key)
    }

    /// Callers that joined a run in flight so far.
    pub(crate) fn joins(&self) -> u64 {
        self.joins.load(Ordering::Relaxed)
    }
}

/// The running source: the store, the single-flight tables and the sync task's signals.
pub(crate) struct PgSource {
    store: Store,
    cache: Arc<Cache>,
    domains: Arc<Domains>,
    timeout: Duration,
    misses: Semaphore,
    tenant_flights: Flights<TenantId, Result<Option<Arc<TenantRecord>>, DirectoryError>>,
    /// Directory queries issued for tenant misses.
    miss_queries: AtomicU64,
    /// Bounded mode: tenants are loaded on demand, not at start.
    bounded: bool,
    loaded: watch::Receiver<bool>,
    /// Unix seconds of the last change notification (`NOTIFY`) applied; 0: none yet.
    last_notify: AtomicU64,
    /// Unix seconds of the last successful full load; 0: none yet.
    last_full_load: AtomicU64,
}

impl PgSource {
    /// Connects the store (lazily: a directory that is down is not an error here) and starts
    /// the sync task, which runs until `shutdown`.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub(crate) async fn start(
        opts: PgOptions,
        cache: Arc<Cache>,
        domains: Arc<Domains>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let store = Store::connect(&opts.url).await?;
        let (loaded_tx, loaded) = watch::channel(false);
        let source = Arc::new(Self {
            store,
            cache,
            domains,
            timeout: opts.timeout,
            misses: Semaphore::new(MAX_MISS_QUERIES),
            tenant_flights: Flights::default(),
            miss_queries: AtomicU64::new(0),
            bounded: opts.capacity.is_some(),
            loaded,
            last_notify: AtomicU64::new(0),
            last_full_load: AtomicU64::new(0),
        });
        let changes = residency_directory::listen(opts.url);
        tokio::spawn(sync(Arc::clone(&source), changes, loaded_tx, shutdown));
        Ok(source)
    }

    /// Unix seconds of the last change notification and of the last full load (`None`:
    /// none yet), for the status page.
    pub(crate) fn last_events(&self) -> (Option<u64>, Option<u64>) {
        let at = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|s| *s > 0);
        (at(&self.last_notify), at(&self.last_full_load))
    }

    /// The directory database.
    #[must_use]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Waits up to `wait` for the first full load; whether it happened.
    pub(crate) async fn wait_loaded(&self, wait: Duration) -> bool {
        let mut rx = self.loaded.clone();
        tokio::time::timeout(wait, rx.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A cache miss for `id`: one query however many callers wait.
    ///
    /// # Errors
    /// [`DirectoryError::DirectoryDown`] while the directory is unreachable or the query fails.
    pub(crate) async fn load_tenant(
        &self,
        id: TenantId,
    ) -> Result<Option<Arc<TenantRecord>>, DirectoryError> {
        // Full mode: a fresh cache holds every tenant, so while it is stale a miss fails at
        // once instead of waiting on a database that is probably down. Bounded mode holds a
        // fraction of the tenants: a miss asks the directory as long as cached data may
        // still be served (up to `max_stale` after a disconnect), and fails closed (503)
        // when that query fails.
        let refuse = if self.bounded {
            self.cache.too_stale()
        } else {
            !self.cache.fresh()
        };
        if refuse {
            return Err(DirectoryError::DirectoryDown);
        }
        self.tenant_flights
            .run(id, || async {
                let _permit = self.miss_permit().await?;
                self.miss_queries.fetch_add(1, Ordering::Relaxed);
                self.query_tenant(id, Absent::Remember)
                    .await
                    .map_err(|()| DirectoryError::DirectoryDown)
            })
            .await
    }

    /// A cache miss for an API key prefix. Prefixes arrive before any authentication, so a
    /// miss never becomes a query: while the cache is fresh it holds every key (a full load
    /// after each `LISTEN` connection, then every insert and update by `NOTIFY`), so a prefix
    /// it lacks does not exist; while it is stale the answer is unknown and fails closed.
    ///
    /// # Errors
    /// [`DirectoryError::DirectoryDown`] while the directory is unreachable.
    pub(crate) fn api_key_miss(&self) -> Result<Option<Arc<ApiKeyRecord>>, DirectoryError> {
        if self.cache.fresh() {
            Ok(None)
        } else {
            Err(DirectoryError::DirectoryDown)
        }
    }

    async fn miss_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, DirectoryError> {
        match tokio::time::timeout(self.timeout, self.misses.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(DirectoryError::DirectoryDown),
        }
    }

    /// Re-reads one tenant with a fresh query (a tenant no longer there is evicted). Returns
    /// whether the read succeeded.
    ///
    /// Bounded mode ignores a tenant it neither holds nor is loading (it is read on its next
    /// miss). The load in flight is checked first: one that started before the change may
    /// bring the old row, and this re-read, which starts after, then wins (read tickets); a
    /// load that starts after this check started after the change.
    pub(crate) async fn reload_tenant(&self, id: TenantId) -> bool {
        if self.bounded && !self.tenant_flights.in_flight(&id) && !self.cache.holds_tenant(id) {
            return true;
        }
        self.query_tenant(id, Absent::Evict).await.is_ok()
    }

    /// Directory queries issued for tenant misses, and misses that joined one in flight.
    pub(crate) fn miss_counts(&self) -> (u64, u64) {
        (
            self.miss_queries.load(Ordering::Relaxed),
            self.tenant_flights.joins(),
        )
    }

    /// Re-reads one API key with a fresh query (a key no longer there is evicted). Returns
    /// whether the read succeeded.
    pub(crate) async fn reload_api_key(&self, prefix: &str) -> bool {
        self.query_api_key(prefix).await.is_ok()
    }

    /// Re-reads one custom domain with a fresh query (a row no longer there is evicted).
    /// Returns whether the read succeeded.
    pub(crate) async fn reload_domain(&self, hostname: &str) -> bool {
        let read = self.cache.read_ticket();
        let Ok(row) = self.timed("domain", self.store.domain(hostname)).await else {
            return false;
        };
        match row {
            Some(d) => self.domains.apply(DomainRow::from(&d), read),
            None => self.domains.evict(hostname, read),
        }
        true
    }

    /// Reads one tenant into the cache; `absent` says what "no such row" does to a cached
    /// one. `Err(())` when the directory did not answer (logged).
    async fn query_tenant(
        &self,
        id: TenantId,
        absent: Absent,
    ) -> Result<Option<Arc<TenantRecord>>, ()> {
        let read = self.cache.read_ticket();
        let row = self
            .timed("tenant", self.store.tenant(id.as_uuid()))
            .await?;
        let Some(row) = row else {
            match absent {
                Absent::Remember => self.cache.put_tenant_absent(id, read),
                Absent::Evict => self.cache.evict_tenant(id, read),
            }
            return Ok(None);
        };
        let Some(entry) = routing_entry(&row) else {
            return Err(());
        };
        let record = TenantRecord::from_entry(&entry);
        self.cache.put_tenant(id, record.clone(), row.version, read);
        Ok(Some(Arc::new(record)))
    }

    /// Reads one API key into the cache. `Err(())` when the directory did not answer.
    async fn query_api_key(&self, prefix: &str) -> Result<Option<Arc<ApiKeyRecord>>, ()> {
        let read = self.cache.read_ticket();
        let row = self
            .timed("api_key", self.store.api_key_by_prefix(prefix))
            .await?;
        let Some(entry) = row else {
            // Only ever a re-read after a change or an admin write: the key was deleted.
            self.cache.evict_api_key(prefix.to_owned(), read);
            return Ok(None);
        };
        let record = ApiKeyRecord::from_entry(&entry).map_err(|why| {
            tracing::error!(key_id = %entry.id, "directory api key hash {why}");
        })?;
        self.cache
            .put_api_key(entry.prefix.clone(), record.clone(), read);
        Ok(Some(Arc::new(record)))
    }

    /// Reads every tenant and key into the cache, then sweeps the cached rows it did not read
    /// (deleted since they were cached). A failed load sweeps nothing.
    ///
    /// Bounded mode refreshes only the tenants it holds, and skips the tenant table when it
    /// holds none (at start).
    async fn full_load(&self) -> Result<(), ()> {
        let load = self.cache.read_ticket();
        let mut after = None;
        let mut tenants = 0usize;
        // Bounded mode at start (nothing cached): no tenant page to read.
        let mut more = !self.bounded || self.cache.len().0 > 0;
        while more {
            let filter = TenantFilter {
                after,
                limit: PAGE,
                ..TenantFilter::default()
            };
            let page = self.timed("full", self.store.list_tenants(&filter)).await?;
            for row in &page {
                let id = TenantId::from_uuid(row.id);
                if self.bounded && !self.cache.holds_tenant(id) {
                    continue;
                }
                if let Some(entry) = routing_entry(row) {
                    let record = TenantRecord::from_entry(&entry);
                    if self.bounded {
                        self.cache
                            .refresh_tenant(entry.id, record, row.version, load);
                    } else {
                        self.cache.put_tenant(entry.id, record, row.version, load);
                    }
                }
            }
            tenants += page.len();
            match page.last() {
                Some(last) if page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX) => {
                    after = Some(last.id);
                }
                _ => more = false,
            }
        }
        let keys = self.timed("full", self.store.api_keys()).await?;
        for k in &keys {
            match ApiKeyRecord::from_entry(k) {
                Ok(record) => self.cache.put_api_key(k.prefix.clone(), record, load),
                Err(why) => tracing::error!(key_id = %k.id, "directory api key hash {why}"),
            }
        }
        let domains = self.timed("full", self.store.domains()).await?;
        for d in &domains {
            self.domains.apply(DomainRow::from(d), load);
        }
        let (gone_tenants, gone_keys) = self.cache.sweep_unseen(load);
        let gone_domains = self.domains.sweep_unseen(load);
        tracing::info!(
            tenants,
            api_keys = keys.len(),
            domains = domains.len(),
            dropped_domains = gone_domains,
            dropped_tenants = gone_tenants,
            dropped_api_keys = gone_keys,
            "directory loaded"
        );
        Ok(())
    }

    /// Runs a store call under the query timeout, counting and logging failures.
    async fn timed<T>(
        &self,
        kind: &'static str,
        call: impl std::future::Future<Output = Result<T, residency_directory::StoreError>>,
    ) -> Result<T, ()> {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // Store errors carry no credentials (the URL is never part of them).
                tracing::warn!(kind, error = %e, "directory query failed");
                Err(())
            }
            Err(_) => {
                tracing::warn!(kind, timeout = ?self.timeout, "directory query timed out");
                Err(())
            }
        };
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(m::DIRECTORY_LOADS_TOTAL, "kind" => kind, "result" => label).increment(1);
        result
    }
}

/// The routing entry of a stored tenant (`None`, logged, for a region id the schema should
/// have refused).
fn routing_entry(row: &residency_directory::TenantRecord) -> Option<TenantEntry> {
    if RegionId::new(&row.region).is_err() {
        tracing::error!(tenant = %row.id, "directory tenant has an invalid region id");
        return None;
    }
    Some(row.entry())
}

/// The sync task: applies changes from the `LISTEN` stream until `shutdown`.
async fn sync(
    source: Arc<PgSource>,
    mut changes: tokio::sync::mpsc::Receiver<Change>,
    loaded: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let cache = Arc::clone(&source.cache);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let resync = tokio::select! {
            () = shutdown.cancelled() => break,
            change = changes.recv() => match change.inspect(|c| {
                if !matches!(c, Change::Disconnected | Change::Resync) {
                    source.last_notify.store(unix_now(), Ordering::Relaxed);
                }
            }) {
                None => break,
                Some(Change::Resync) => true,
                Some(Change::Tenant(id)) => {
                    !source.reload_tenant(TenantId::from_uuid(id)).await
                }
                Some(Change::ApiKey { prefix }) => !source.reload_api_key(&prefix).await,
                Some(Change::Domain { hostname }) => !source.reload_domain(&hostname).await,
                Some(Change::Disconnected) => {
                    if cache.fresh() {
                        tracing::warn!("directory connection lost; serving cached tenants");
                    }
                    cache.mark_stale();
                    // The reconnection brings a Resync; a pending retry is moot until then.
                    retry_at = None;
                    false
                }
            },
            () = sleep_until(retry_at) => true,
            _ = tick.tick() => {
                cache.sweep();
                publish_staleness(&cache);
                metrics::gauge!(m::DIRECTORY_CACHED_TENANTS).set(cache.len().0 as f64);
                false
            }
        };
        if resync {
            // A failed point reload also lands here: reloading everything is always correct.
            if source.full_load().await.is_ok() {
                source.last_full_load.store(unix_now(), Ordering::Relaxed);
                cache.mark_fresh();
                loaded.send_replace(true);
                retry_at = None;
            } else {
                retry_at = Some(tokio::time::Instant::now() + RESYNC_RETRY);
            }
            publish_staleness(&cache);
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn publish_staleness(cache: &Cache) {
    let secs = cache.stale_for().map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(m::DIRECTORY_STALENESS_SECONDS).set(secs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn overlapping_misses_share_one_load() {
        let flights: Arc<Flights<u32, usize>> = Arc::default();
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (flights, loads, gate, entered_tx) = (
                    Arc::clone(&flights),
                    Arc::clone(&loads),
                    Arc::clone(&gate),
                    entered_tx.clone(),
                );
                tokio::spawn(async move {
                    flights
                        .run(7, || async move {
                            let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
                            let _ = entered_tx.send(());
                            gate.notified().await;
                            n
                        })
                        .await
                })
            })
            .collect();
        // The first loader is running; let every caller reach the flight before it finishes.
        entered.recv().await.unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        // Wakes every loader that is waiting: more than one would mean the flight was not shared.
        gate.notify_waiters();
        for c in callers {
            assert_eq!(c.await.unwrap(), 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Once finished, the next miss loads again.
        assert_eq!(flights.run(7, || async { 99 }).await, 99);
    }

    #[test]
    fn staleness_is_published_as_a_gauge() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let cache = Cache::new(Duration::from_secs(5), 10, Duration::from_secs(600));
        metrics::with_local_recorder(&recorder, || {
            cache.mark_fresh();
            publish_staleness(&cache);
        });
        assert!(
            handle
                .render()
                .contains("residency_gateway_directory_staleness_seconds 0"),
            "{}",
            handle.render()
        );
        cache.mark_stale();
        metrics::with_local_recorder(&recorder, || publish_staleness(&cache));
        let page = handle.render();
        let line = page
            .lines()
            .find(|l| l.starts_with("residency_gateway_directory_staleness_seconds "))
            .unwrap();
        let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..60.0).contains(&secs), "{line}");
        assert!(cache.stale_for().is_some());
    }
}
