//! The in-memory directory: tenants by id and API keys by public prefix, on dashmap, plus
//! the freshness state that decides whether cached data may still be served.
//!
//! What it owns:
//! - positive entries (`Arc` records, so a lookup clones a pointer and never holds a shard
//!   guard past the probe) with the row version they came from: an older read never
//!   replaces a newer one, and a revoked key never comes back to life;
//! - negative entries ("no such tenant / key") that expire after `negative_ttl`, at most
//!   `negative_cap` of them;
//! - removal of rows deleted from the directory: a point reload that finds nothing evicts
//!   the cached row ([`Cache::evict_tenant`], [`Cache::evict_api_key`]), and a full load
//!   sweeps every row it did not see ([`Cache::sweep_unseen`]: mark and sweep, so a resync
//!   after a disconnect drops rows deleted while the notifications were lost);
//! - read tickets ([`Cache::read_ticket`]): every directory read takes one before it starts,
//!   and each slot keeps the ticket of the read it came from, so the answer of a read that
//!   started later wins over an earlier one whichever arrives last (a slow read that still saw
//!   a row cannot bring it back after a later read found it deleted);
//! - freshness: `stale_since` is set when the `LISTEN` connection drops (or before the first
//!   full load) and cleared by the next successful full load. Hits are served while stale for
//!   up to `max_stale`, then refused like misses.
//!
//! - bounded mode ([`Cache::with_capacity`]): at most `capacity` tenant rows (plus the
//!   inserts in progress: at most one per concurrent `put_tenant`, which is
//!   [`super::pg::MAX_MISS_QUERIES`] misses plus the sync task) are kept, evicted by CLOCK:
//!   a hit sets the row's reference bit (one relaxed store, only when it is clear), an
//!   insert beyond capacity moves a hand over a ring of the admitted ids, clearing set bits
//!   and evicting the first row whose bit is clear. The ring's mutex is taken by inserts only
//!   (misses, never hits) and never while a map shard is locked. API keys and negative
//!   entries are not in the ring (keys are all held; negative entries have their own cap).
//!
//! What it does not do: I/O. Loading and invalidation live in [`super::pg`].

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use metrics::Counter;
use residency_core::TenantId;

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
    /// The row, the version it was read at, and the latest read ticket that saw it.
    Found {
        value: Arc<T>,
        version: i64,
        /// The ticket (low 63 bits) and, in the top bit ([`REFERENCED`]), the CLOCK
        /// reference bit of bounded mode. One word for both keeps a slot at 24 bytes (a
        /// separate flag made it 32, about 17 bytes more per tenant in the map). The ticket
        /// only changes under the shard's write lock; the bit is set by hits and cleared by
        /// the hand under its read lock, which leaves the ticket as it is.
        seen: AtomicU64,
    },
    /// Known not to exist until this many milliseconds after the cache's epoch, as of the
    /// read with ticket `read`.
    Absent { until_ms: u64, read: u64 },
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

/// The reference bit in [`Slot::Found`]'s `seen` (tickets never reach it).
const REFERENCED: u64 = 1 << 63;

/// The ticket part of a `seen` word.
fn ticket(seen: u64) -> u64 {
    seen & !REFERENCED
}

/// The CLOCK of a bounded cache: the admitted tenant ids and the hand.
struct Clock {
    capacity: usize,
    ring: Mutex<Ring>,
    evictions: AtomicU64,
    evicted: Counter,
}

#[derive(Default)]
struct Ring {
    /// Admitted ids; a slot whose id is no longer cached (deleted, swept) is reused by the
    /// next admission that reaches it. An id admitted twice (deleted, then loaded again)
    /// holds two slots until the hand frees the stale one: the ring never undercounts.
    ids: Vec<TenantId>,
    hand: usize,
}

/// What the hand finds at one ring slot.
enum Verdict {
    /// Not cached (any more): the slot is free.
    Free,
    /// Referenced since the hand last passed: bit cleared, keep it.
    Spare,
    /// Not referenced: evict it.
    Evict,
}

/// Tenants and API keys in memory.
pub struct Cache {
    tenants: DashMap<TenantId, Slot<TenantRecord>, Hasher>,
    keys: DashMap<String, Slot<ApiKeyRecord>, Hasher>,
    negatives: AtomicUsize,
    /// The last read ticket handed out.
    reads: AtomicU64,
    negative_ttl_ms: u64,
    negative_cap: usize,
    max_stale_ms: u64,
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one, so 0 means fresh) since when the data may be
    /// out of date.
    stale_since: AtomicU64,
    loaded: AtomicBool,
    counters: Counters,
    /// Bounded mode.
    clock: Option<Clock>,
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
            reads: AtomicU64::new(0),
            negative_ttl_ms: millis(negative_ttl),
            negative_cap,
            max_stale_ms: millis(max_stale),
            epoch: Instant::now(),
            stale_since: AtomicU64::new(1),
            loaded: AtomicBool::new(false),
            counters: Counters::new(),
            clock: None,
        }
    }

    /// Bounded mode: keeps at most `capacity` tenant rows (plus the inserts in progress),
    /// evicting the least recently referenced by CLOCK.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        self.clock = Some(Clock {
            capacity,
            ring: Mutex::new(Ring {
                ids: Vec::with_capacity(capacity),
                hand: 0,
            }),
            evictions: AtomicU64::new(0),
            evicted: metrics::counter!(m::DIRECTORY_EVICTIONS_TOTAL),
        });
        self
    }

    /// The tenant capacity in bounded mode (`None`: every tenant is held).
    #[must_use]
    pub fn capacity(&self) -> Option<usize> {
        self.clock.as_ref().map(|c| c.capacity)
    }

    /// Tenants evicted for capacity so far.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.clock
            .as_ref()
            .map_or(0, |c| c.evictions.load(Ordering::Relaxed))
    }

    /// Whether tenant `id` has a slot (a row or a negative entry).
    pub(crate) fn holds_tenant(&self, id: TenantId) -> bool {
        self.tenants.contains_key(&id)
    }

    /// Admits a tenant row just inserted into the ring, evicting one when the ring is full.
    /// Called with no shard lock held.
    fn admit(&self, id: TenantId) {
        let Some(clock) = &self.clock else { return };
        let mut ring = clock
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.ids.len() < clock.capacity {
            ring.ids.push(id);
            return;
        }
        // Each slot is passed at most twice (its bit is cleared the first time), so this ends.
        loop {
            let at = ring.hand;
            ring.hand = (at + 1) % ring.ids.len();
            let old = ring.ids[at];
            let verdict = match self.tenants.get(&old).as_deref() {
                Some(Slot::Found { seen, .. }) => {
                    if seen.fetch_and(!REFERENCED, Ordering::Relaxed) & REFERENCED != 0 {
                        Verdict::Spare
                    } else {
                        Verdict::Evict
                    }
                }
                _ => Verdict::Free,
            };
            match verdict {
                Verdict::Spare => continue,
                Verdict::Free => {}
                Verdict::Evict => {
                    let gone = self.tenants.remove_if(&old, |_, s| {
                        matches!(s, Slot::Found { seen, .. } if seen.load(Ordering::Relaxed) & REFERENCED == 0)
                    });
                    // A hit between the look above and now keeps the row (its bit is set:
                    // the hand clears it next time round).
                    if gone.is_none() && self.tenants.contains_key(&old) {
                        continue;
                    }
                    if gone.is_some() {
                        clock.evictions.fetch_add(1, Ordering::Relaxed);
                        clock.evicted.increment(1);
                    }
                }
            }
            ring.ids[at] = id;
            return;
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Probes for a tenant: no I/O, no lock held after return.
    pub fn tenant(&self, id: TenantId) -> Probe<TenantRecord> {
        let probe = match self.tenants.get(&id).as_deref() {
            Some(Slot::Found { value, seen, .. }) => {
                // Bounded mode: at most one relaxed store, and none once the bit is set (so a
                // hot row's cache line is not written on every hit). A store, not an `or`:
                // the ticket part cannot change while this read guard is held.
                if self.clock.is_some() {
                    let word = seen.load(Ordering::Relaxed);
                    if word & REFERENCED == 0 {
                        seen.store(word | REFERENCED, Ordering::Relaxed);
                    }
                }
                Probe::Hit(Arc::clone(value))
            }
            Some(Slot::Absent { until_ms, .. }) if *until_ms > self.now_ms() => Probe::Absent,
            _ => Probe::Miss,
        };
        self.count(probe)
    }

    /// Probes for an API key by its public prefix.
    pub fn api_key(&self, prefix: &str) -> Probe<ApiKeyRecord> {
        let probe = match self.keys.get(prefix).as_deref() {
            Some(Slot::Found { value, .. }) => Probe::Hit(Arc::clone(value)),
            Some(Slot::Absent { until_ms, .. }) if *until_ms > self.now_ms() => Probe::Absent,
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

    /// A ticket for a directory read about to start: pass it with the read's answer. Tickets
    /// grow with every call, so they order reads by when they started.
    pub fn read_ticket(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Stores a tenant row read at `version` by the read with ticket `read`, unless a newer
    /// version is cached or a later read found the tenant absent.
    pub fn put_tenant(&self, id: TenantId, record: TenantRecord, version: i64, read: u64) {
        if self.put(&self.tenants, id, record, version, read, false, |_, new| {
            new
        }) {
            self.admit(id);
        }
    }

    /// Like [`Cache::put_tenant`], but only updates a cached row (the resync of a bounded
    /// cache re-reads the rows it holds and caches no others).
    pub(crate) fn refresh_tenant(
        &self,
        id: TenantId,
        record: TenantRecord,
        version: i64,
        read: u64,
    ) {
        self.put(&self.tenants, id, record, version, read, true, |_, new| new);
    }

    /// Stores an API key read by the read with ticket `read`. Revocation is one-way in the
    /// directory, so a revoked cached key stays revoked even if an older read arrives later.
    pub(crate) fn put_api_key(&self, prefix: String, record: ApiKeyRecord, read: u64) {
        self.put(
            &self.keys,
            prefix,
            record,
            0,
            read,
            false,
            |old, mut new| {
                new.revoked |= old.revoked;
                new
            },
        );
    }

    /// Stores a row (or, with `only_cached`, updates a cached one); whether a new row was
    /// inserted (a bounded cache then admits it, after the shard lock is released).
    #[allow(clippy::too_many_arguments)]
    fn put<K: Eq + Hash, T>(
        &self,
        map: &DashMap<K, Slot<T>, Hasher>,
        key: K,
        value: T,
        version: i64,
        read: u64,
        only_cached: bool,
        merge: impl FnOnce(&T, T) -> T,
    ) -> bool {
        let found = |value, seen| Slot::Found {
            value: Arc::new(value),
            version,
            seen: AtomicU64::new(seen),
        };
        match map.entry(key) {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                match slot {
                    Slot::Found {
                        value: old,
                        version: v,
                        seen,
                        ..
                    } => {
                        // Either way the row existed when this read ran.
                        let word = seen.get_mut();
                        *word = (*word & REFERENCED) | ticket(*word).max(read);
                        if *v <= version {
                            *old = Arc::new(merge(&**old, value));
                            *v = version;
                        }
                        false
                    }
                    // A read that started after this one found no row: it is the later word.
                    Slot::Absent { read: gone, .. } if *gone > read => false,
                    Slot::Absent { .. } if only_cached => false,
                    Slot::Absent { .. } => {
                        self.negatives.fetch_sub(1, Ordering::Relaxed);
                        *slot = found(value, read);
                        true
                    }
                }
            }
            Entry::Vacant(_) if only_cached => false,
            Entry::Vacant(e) => {
                e.insert(found(value, read));
                true
            }
        }
    }

    /// Remembers that a tenant was not found by a miss query (read ticket `read`). A cached
    /// row is kept: the tenant was not cached when the miss began, so a row cached since came
    /// from a read that saw it created.
    pub(crate) fn put_tenant_absent(&self, id: TenantId, read: u64) {
        self.put_absent(&self.tenants, id, read, false);
    }

    /// A point reload (read ticket `read`) found no tenant `id`: it was deleted, so its cached
    /// row goes, unless a read that started later has seen it.
    pub(crate) fn evict_tenant(&self, id: TenantId, read: u64) {
        self.put_absent(&self.tenants, id, read, true);
    }

    /// A point reload (read ticket `read`) found no key with `prefix`: it was deleted, so its
    /// cached row goes, unless a read that started later has seen it.
    pub(crate) fn evict_api_key(&self, prefix: String, read: u64) {
        self.put_absent(&self.keys, prefix, read, true);
    }

    fn put_absent<K: Eq + Hash, T>(
        &self,
        map: &DashMap<K, Slot<T>, Hasher>,
        key: K,
        read: u64,
        evict: bool,
    ) {
        let until_ms = self.now_ms().saturating_add(self.negative_ttl_ms);
        match map.entry(key) {
            Entry::Occupied(mut e) => {
                let evicted = match e.get_mut() {
                    Slot::Absent {
                        until_ms: u,
                        read: r,
                    } => {
                        *u = until_ms;
                        *r = (*r).max(read);
                        false
                    }
                    // A row from a later read (or, for a miss, any row) wins.
                    Slot::Found { seen, .. } => evict && ticket(*seen.get_mut()) < read,
                };
                if evicted {
                    // Becomes a negative entry when the cap allows (so a slower, earlier read
                    // cannot bring the row back), else goes: a miss is refused too.
                    if self.claim_negative() {
                        e.insert(Slot::Absent { until_ms, read });
                    } else {
                        e.remove();
                    }
                }
            }
            Entry::Vacant(e) => {
                // The cap bounds memory against a flood of unknown ids; past it, misses are
                // simply not remembered (they stay single-flight).
                if self.claim_negative() {
                    e.insert(Slot::Absent { until_ms, read });
                }
            }
        }
    }

    /// Counts one more negative entry, unless the cap is reached.
    fn claim_negative(&self) -> bool {
        if self.negatives.load(Ordering::Relaxed) < self.negative_cap {
            self.negatives.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Drops expired negative entries.
    pub fn sweep(&self) {
        fn expired<T>(slot: &Slot<T>, now: u64) -> bool {
            matches!(slot, Slot::Absent { until_ms, .. } if *until_ms <= now)
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

    /// The sweep of a full load that started with read ticket `load`: drops every cached row
    /// no read since then has seen (rows deleted while notifications were lost). Negative
    /// entries stay until they expire. Returns how many tenants and keys were dropped.
    ///
    /// Shard by shard (dashmap `retain`): readers of other shards never wait, and a reader of
    /// the shard being swept waits for one pass over that shard only.
    ///
    /// A bounded cache also drops the negative tenant entries from before the load (its load
    /// only refreshes cached rows, so it cannot turn them into rows as a full load does).
    pub(crate) fn sweep_unseen(&self, load: u64) -> (usize, usize) {
        fn unseen<T>(slot: &Slot<T>, load: u64) -> bool {
            matches!(slot, Slot::Found { seen, .. } if ticket(seen.load(Ordering::Relaxed)) < load)
        }
        let bounded = self.clock.is_some();
        let (mut tenants, mut keys, mut negatives) = (0, 0, 0);
        self.tenants.retain(|_, s| {
            let gone = unseen(s, load);
            tenants += usize::from(gone);
            let old_negative = bounded && matches!(s, Slot::Absent { read, .. } if *read < load);
            negatives += usize::from(old_negative);
            !gone && !old_negative
        });
        self.negatives.fetch_sub(negatives, Ordering::Relaxed);
        self.keys.retain(|_, s| {
            let gone = unseen(s, load);
            keys += usize::from(gone);
            !gone
        });
        (tenants, keys)
    }

    /// Marks the data possibly out of date from now on (kept if already stale).
    pub(crate) fn mark_stale(&self) {
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
    pub(crate) fn stale_for(&self) -> Option<Duration> {
        match self.stale_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(
                self.now_ms().saturating_sub(since - 1),
            )),
        }
    }

    /// Whether cached entries are past `max_stale` (or were never loaded).
    #[must_use]
    pub(crate) fn too_stale(&self) -> bool {
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
mod tests;
