//! The in-memory directory: tenants by id and API keys by public prefix, on dashmap, plus
//! the freshness state that decides whether cached data may still be served.
//!
//! What it owns:
//! - positive entries (`Arc` records, so a lookup clones a pointer and never holds a shard
//!   guard past the probe) with the row version they came from: an older read never
//!   replaces a newer one, and a revoked key never comes back to life;
//! - negative entries ("no such tenant / key") that expire after `negative_ttl`, at most
//!   `negative_cap` of them;
//! - freshness: `stale_since` is set when the `LISTEN` connection drops (or before the first
//!   full load) and cleared by the next successful full load. Hits are served while stale for
//!   up to `max_stale`, then refused like misses.
//!
//! What it does not do: I/O. Loading and invalidation live in [`super::pg`].

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use metrics::Counter;
use residency_config::TenantId;

use super::{ApiKeyRecord, TenantRecord};
use crate::metrics as m;

/// The maps' hasher: foldhash, seeded per process. Its weaker flood resistance is fine here:
/// entries are only ever inserted from directory rows and verified tenant ids, never from an
/// unauthenticated request (an API key miss does not insert), so no client chooses the keys
/// that collide. It cut the measured lookup by about a quarter against SipHash
/// (`benches/directory.rs`).
type Hasher = foldhash::fast::RandomState;

/// One cache slot.
#[derive(Debug)]
enum Slot<T> {
    /// The row, and the version it was read at.
    Found { value: Arc<T>, version: i64 },
    /// Known not to exist until this many milliseconds after the cache's epoch.
    Absent { until_ms: u64 },
}

/// The answer of a cache probe.
#[derive(Debug)]
pub enum Probe<T> {
    /// Cached and servable.
    Hit(Arc<T>),
    /// Known not to exist (negative entry still valid).
    Absent,
    /// Not cached: ask the source, if there is one.
    Miss,
    /// Cached, but older than `max_stale` while the directory is unreachable.
    TooStale,
}

/// Counter handles registered once, so the hot path only does an atomic add.
struct Counters {
    hit: Counter,
    miss: Counter,
    negative: Counter,
    stale: Counter,
}

impl Counters {
    fn new() -> Self {
        let c = |result: &'static str| metrics::counter!(m::DIRECTORY_LOOKUPS_TOTAL, "result" => result);
        Self {
            hit: c("hit"),
            miss: c("miss"),
            negative: c("negative"),
            stale: c("too_stale"),
        }
    }
}

/// Tenants and API keys in memory.
pub struct Cache {
    tenants: DashMap<TenantId, Slot<TenantRecord>, Hasher>,
    keys: DashMap<String, Slot<ApiKeyRecord>, Hasher>,
    negatives: AtomicUsize,
    negative_ttl_ms: u64,
    negative_cap: usize,
    max_stale_ms: u64,
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one, so 0 means fresh) since when the data may be
    /// out of date.
    stale_since: AtomicU64,
    loaded: AtomicBool,
    counters: Counters,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("tenants", &self.tenants.len())
            .field("keys", &self.keys.len())
            .field("stale_for", &self.stale_for())
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Cache {
    /// An empty cache. It starts stale and not loaded: nothing is served until the first
    /// full load (or, for a file directory, [`Cache::mark_fresh`]).
    #[must_use]
    pub fn new(negative_ttl: Duration, negative_cap: usize, max_stale: Duration) -> Self {
        Self {
            tenants: DashMap::with_hasher(Hasher::default()),
            keys: DashMap::with_hasher(Hasher::default()),
            negatives: AtomicUsize::new(0),
            negative_ttl_ms: millis(negative_ttl),
            negative_cap,
            max_stale_ms: millis(max_stale),
            epoch: Instant::now(),
            stale_since: AtomicU64::new(1),
            loaded: AtomicBool::new(false),
            counters: Counters::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Probes for a tenant: no I/O, no lock held after return.
    pub fn tenant(&self, id: TenantId) -> Probe<TenantRecord> {
        let probe = match self.tenants.get(&id).as_deref() {
            Some(Slot::Found { value, .. }) => Probe::Hit(Arc::clone(value)),
            Some(Slot::Absent { until_ms }) if *until_ms > self.now_ms() => Probe::Absent,
            _ => Probe::Miss,
        };
        self.count(probe)
    }

    /// Probes for an API key by its public prefix.
    pub fn api_key(&self, prefix: &str) -> Probe<ApiKeyRecord> {
        let probe = match self.keys.get(prefix).as_deref() {
            Some(Slot::Found { value, .. }) => Probe::Hit(Arc::clone(value)),
            Some(Slot::Absent { until_ms }) if *until_ms > self.now_ms() => Probe::Absent,
            _ => Probe::Miss,
        };
        self.count(probe)
    }

    fn count<T>(&self, probe: Probe<T>) -> Probe<T> {
        match probe {
            Probe::Hit(v) => {
                if self.too_stale() {
                    self.counters.stale.increment(1);
                    return Probe::TooStale;
                }
                self.counters.hit.increment(1);
                Probe::Hit(v)
            }
            Probe::Absent => {
                self.counters.negative.increment(1);
                Probe::Absent
            }
            other => {
                self.counters.miss.increment(1);
                other
            }
        }
    }

    /// Stores a tenant row read at `version`, unless a newer one is cached.
    pub fn put_tenant(&self, id: TenantId, record: TenantRecord, version: i64) {
        self.put(&self.tenants, id, record, version, |_, new| new);
    }

    /// Stores an API key. Revocation is one-way in the directory, so a revoked cached key
    /// stays revoked even if an older read arrives later.
    pub fn put_api_key(&self, prefix: String, record: ApiKeyRecord) {
        self.put(&self.keys, prefix, record, 0, |old, mut new| {
            new.revoked |= old.revoked;
            new
        });
    }

    fn put<K: Eq + Hash, T>(
        &self,
        map: &DashMap<K, Slot<T>, Hasher>,
        key: K,
        value: T,
        version: i64,
        merge: impl FnOnce(&T, T) -> T,
    ) {
        match map.entry(key) {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                match slot {
                    Slot::Found {
                        value: old,
                        version: v,
                    } => {
                        if *v <= version {
                            *slot = Slot::Found {
                                value: Arc::new(merge(old, value)),
                                version,
                            };
                        }
                    }
                    Slot::Absent { .. } => {
                        self.negatives.fetch_sub(1, Ordering::Relaxed);
                        *slot = Slot::Found {
                            value: Arc::new(value),
                            version,
                        };
                    }
                }
            }
            Entry::Vacant(e) => {
                e.insert(Slot::Found {
                    value: Arc::new(value),
                    version,
                });
            }
        }
    }

    /// Remembers that a tenant does not exist (unless it is cached by now).
    pub fn put_tenant_absent(&self, id: TenantId) {
        self.put_absent(&self.tenants, id);
    }

    /// Remembers that an API key prefix does not exist.
    pub fn put_api_key_absent(&self, prefix: String) {
        self.put_absent(&self.keys, prefix);
    }

    fn put_absent<K: Eq + Hash, T>(&self, map: &DashMap<K, Slot<T>, Hasher>, key: K) {
        let until_ms = self.now_ms().saturating_add(self.negative_ttl_ms);
        match map.entry(key) {
            // A row that appeared meanwhile wins over the older "absent" answer.
            Entry::Occupied(mut e) => {
                if let Slot::Absent { until_ms: u } = e.get_mut() {
                    *u = until_ms;
                }
            }
            Entry::Vacant(e) => {
                // The cap bounds memory against a flood of unknown ids; past it, misses are
                // simply not remembered (they stay single-flight).
                if self.negatives.load(Ordering::Relaxed) < self.negative_cap {
                    self.negatives.fetch_add(1, Ordering::Relaxed);
                    e.insert(Slot::Absent { until_ms });
                }
            }
        }
    }

    /// Drops expired negative entries.
    pub fn sweep(&self) {
        fn expired<T>(slot: &Slot<T>, now: u64) -> bool {
            matches!(slot, Slot::Absent { until_ms } if *until_ms <= now)
        }
        let now = self.now_ms();
        let mut removed = 0;
        self.tenants.retain(|_, s| {
            let gone = expired(s, now);
            removed += usize::from(gone);
            !gone
        });
        self.keys.retain(|_, s| {
            let gone = expired(s, now);
            removed += usize::from(gone);
            !gone
        });
        self.negatives.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Marks the data possibly out of date from now on (kept if already stale).
    pub fn mark_stale(&self) {
        let now = self.now_ms() + 1;
        let _ = self
            .stale_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the data complete and current (after a full load).
    pub fn mark_fresh(&self) {
        self.loaded.store(true, Ordering::Release);
        self.stale_since.store(0, Ordering::Release);
    }

    /// Whether a full load ever completed.
    #[must_use]
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether the data is current (the last full load happened and no disconnect since).
    #[must_use]
    pub fn fresh(&self) -> bool {
        self.stale_since.load(Ordering::Acquire) == 0
    }

    /// How long the data has been possibly out of date; `None` when fresh.
    #[must_use]
    pub fn stale_for(&self) -> Option<Duration> {
        match self.stale_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(
                self.now_ms().saturating_sub(since - 1),
            )),
        }
    }

    /// Whether cached entries are past `max_stale` (or were never loaded).
    #[must_use]
    pub fn too_stale(&self) -> bool {
        match self.stale_since.load(Ordering::Relaxed) {
            0 => false,
            since => !self.loaded() || self.now_ms().saturating_sub(since - 1) > self.max_stale_ms,
        }
    }

    /// Number of cached tenants and keys (negative entries included).
    #[must_use]
    pub fn len(&self) -> (usize, usize) {
        (self.tenants.len(), self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use residency_config::gateway::{TenantStatus, Tier};
    use residency_config::RegionId;

    fn record(tier: Tier) -> TenantRecord {
        TenantRecord {
            region: RegionId::new("eu").unwrap(),
            tier,
            status: TenantStatus::Active,
            rate_limit_per_min: tier.default_rate_per_min(),
        }
    }

    fn key(revoked: bool) -> ApiKeyRecord {
        ApiKeyRecord {
            id: "k".into(),
            tenant: TenantId::from_uuid(uuid::Uuid::nil()),
            hash: [0; 32],
            role: String::new(),
            expires_at: None,
            revoked,
        }
    }

    fn hit<T: Clone>(p: Probe<T>) -> T {
        match p {
            Probe::Hit(v) => (*v).clone(),
            other => panic!("expected a hit, got {}", kind(&other)),
        }
    }

    fn kind<T>(p: &Probe<T>) -> &'static str {
        match p {
            Probe::Hit(_) => "hit",
            Probe::Absent => "absent",
            Probe::Miss => "miss",
            Probe::TooStale => "too stale",
        }
    }

    fn fresh_cache() -> Cache {
        let c = Cache::new(Duration::from_secs(60), 2, Duration::from_secs(600));
        c.mark_fresh();
        c
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let c = fresh_cache();
        let id = TenantId::from_uuid(uuid::Uuid::now_v7());
        c.put_tenant(id, record(Tier::Growth), 3);
        c.put_tenant(id, record(Tier::Starter), 2);
        assert_eq!(hit(c.tenant(id)).tier, Tier::Growth);
        c.put_tenant(id, record(Tier::Scale), 4);
        assert_eq!(hit(c.tenant(id)).tier, Tier::Scale);
    }

    #[test]
    fn a_revoked_key_stays_revoked() {
        let c = fresh_cache();
        c.put_api_key("abcdefgh".into(), key(true));
        c.put_api_key("abcdefgh".into(), key(false));
        assert!(hit(c.api_key("abcdefgh")).revoked);
    }

    #[test]
    fn negative_entries_are_capped_and_replaced_by_rows() {
        let c = fresh_cache();
        let ids: Vec<_> = (0..3)
            .map(|_| TenantId::from_uuid(uuid::Uuid::now_v7()))
            .collect();
        for id in &ids {
            c.put_tenant_absent(*id);
        }
        assert!(matches!(c.tenant(ids[0]), Probe::Absent));
        assert!(matches!(c.tenant(ids[1]), Probe::Absent));
        // Over the cap of 2: not remembered.
        assert!(matches!(c.tenant(ids[2]), Probe::Miss));
        c.put_tenant(ids[0], record(Tier::Starter), 1);
        assert_eq!(hit(c.tenant(ids[0])).tier, Tier::Starter);
        // The freed slot can be used again.
        c.put_tenant_absent(ids[2]);
        assert!(matches!(c.tenant(ids[2]), Probe::Absent));
        // "Absent" never replaces a row.
        c.put_tenant_absent(ids[0]);
        assert!(matches!(c.tenant(ids[0]), Probe::Hit(_)));
    }

    #[test]
    fn expired_negative_entries_are_misses_and_get_swept() {
        let c = Cache::new(Duration::ZERO, 10, Duration::from_secs(600));
        c.mark_fresh();
        let id = TenantId::from_uuid(uuid::Uuid::now_v7());
        c.put_tenant_absent(id);
        assert!(matches!(c.tenant(id), Probe::Miss));
        c.sweep();
        assert_eq!(c.len(), (0, 0));
        assert_eq!(c.negatives.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stale_data_is_served_up_to_max_stale() {
        let c = Cache::new(Duration::from_secs(5), 10, Duration::from_secs(600));
        let id = TenantId::from_uuid(uuid::Uuid::now_v7());
        c.put_tenant(id, record(Tier::Growth), 1);
        // Never fully loaded: nothing is served.
        assert!(matches!(c.tenant(id), Probe::TooStale));
        c.mark_fresh();
        assert!(c.stale_for().is_none());
        c.mark_stale();
        assert!(c.stale_for().is_some());
        assert!(matches!(c.tenant(id), Probe::Hit(_)));

        let mut strict = Cache::new(Duration::from_secs(5), 10, Duration::ZERO);
        strict.put_tenant(id, record(Tier::Growth), 1);
        strict.mark_fresh();
        assert!(matches!(strict.tenant(id), Probe::Hit(_)));
        // Stale since the epoch, 10 ms ago: past a max_stale of zero.
        strict.epoch = Instant::now() - Duration::from_millis(10);
        strict.stale_since.store(1, Ordering::Release);
        assert!(matches!(strict.tenant(id), Probe::TooStale));
    }
}
