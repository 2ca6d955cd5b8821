//! The in-memory backend: one GCRA bucket per tenant in a sharded map, its state a single
//! atomic updated with a compare-and-swap loop.
//!
//! The hot path takes a shard read lock (shared with every other reader of that shard), reads
//! the bucket's quota and swaps its `TAT`; no global lock, no allocation, no await. Only a
//! tenant's first request, or its first after a quota change, takes the shard's write lock.
//!
//! The map hashes with foldhash (seeded per process) rather than SipHash: its keys are only
//! tenant ids that authenticated and resolved in the directory, never values a client picks
//! to make them collide, and the probe is the largest part of the check's cost.
//!
//! Memory: one small entry per tenant that sent a request since start. Tenants reach the
//! limiter only after authentication and a directory lookup, so the map is bounded by the
//! directory's size, not by what clients send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use residency_core::TenantId;

use super::gcra::{self, Decision, Params};

/// Per-tenant GCRA buckets in this process.
#[derive(Debug)]
pub struct LocalLimiter {
    buckets: DashMap<TenantId, Bucket, foldhash::fast::RandomState>,
    burst: Duration,
    epoch: Instant,
}

#[derive(Debug)]
struct Bucket {
    /// Immutable while readers hold the shard's read lock; replaced under its write lock.
    params: Params,
    /// Theoretical arrival time, nanoseconds since the limiter's epoch.
    tat: AtomicU64,
}

impl Bucket {
    fn check(&self, now: u64) -> Decision {
        // Relaxed is enough: the bucket's whole state is this one word, and compare-exchange
        // on one location is totally ordered; nothing else is published through it.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (decision, next) = gcra::step(&self.params, tat, now);
            let Some(next) = next else {
                return decision;
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }
}

impl LocalLimiter {
    /// An empty limiter; `burst` is the time worth of quota a full bucket holds.
    #[must_use]
    pub fn new(burst: Duration) -> Self {
        Self {
            buckets: DashMap::default(),
            burst,
            epoch: Instant::now(),
        }
    }

    /// `at` in nanoseconds on this limiter's clock: monotonic, so wall-clock jumps do not
    /// matter. Callers pass an `Instant` they already read (the request's arrival), which
    /// spares the hot path a second clock read.
    #[must_use]
    pub fn clock(&self, at: Instant) -> u64 {
        // u64 nanoseconds last 584 years of uptime.
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a request of `tenant`, whose quota is `quota_per_min`, arriving at `now`
    /// (nanoseconds on [`Self::clock`]).
    ///
    /// A quota different from the one the bucket was made with (a tier or override change)
    /// takes effect on this request: the bucket gets the new parameters and keeps the time
    /// it has used, capped at the new capacity.
    pub fn check_at(&self, tenant: TenantId, quota_per_min: u32, now: u64) -> Decision {
        if let Some(bucket) = self.buckets.get(&tenant) {
            if bucket.params.quota() == quota_per_min {
                return bucket.check(now);
            }
        }
        self.check_slow(tenant, quota_per_min, now)
    }

    #[cold]
    fn check_slow(&self, tenant: TenantId, quota_per_min: u32, now: u64) -> Decision {
        let params = Params::new(quota_per_min, self.burst);
        let mut bucket = self.buckets.entry(tenant).or_insert_with(|| Bucket {
            params,
            tat: AtomicU64::new(0),
        });
        if bucket.params.quota() != quota_per_min {
            // Under the shard's write lock: no reader sees the parameters change mid-check.
            bucket.params = params;
        }
        bucket.downgrade().check(now)
    }

    /// Number of tenants with a bucket.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no tenant has a bucket yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEC: u64 = gcra::NANOS_PER_SEC;
    const MINUTE: Duration = Duration::from_secs(60);

    fn tenant(n: u8) -> TenantId {
        format!("0190a5c4-0000-7000-8000-0000000000{n:02x}")
            .parse()
            .unwrap()
    }

    fn allowed(l: &LocalLimiter, t: TenantId, quota: u32, now: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| l.check_at(t, quota, now).allowed())
            .count()
    }

    #[test]
    fn tenants_have_separate_buckets() {
        let l = LocalLimiter::new(MINUTE);
        let now = 10 * SEC;
        assert_eq!(allowed(&l, tenant(1), 100, now, 150), 100);
        // Another tenant is unaffected by the first one's exhaustion.
        let d = l.check_at(tenant(2), 100, now);
        assert!(d.allowed());
        assert_eq!(d.remaining(), 99);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn a_tier_change_takes_effect_on_the_next_request() {
        let l = LocalLimiter::new(MINUTE);
        let t = tenant(3);
        let now = 10 * SEC;
        // Starter: 100 then limited.
        assert_eq!(allowed(&l, t, 100, now, 100), 100);
        assert!(!l.check_at(t, 100, now).allowed());
        // Upgraded to growth (500/min) at the same instant: the next request is judged by
        // the new quota. The starter burst used the whole minute of capacity, and that used
        // time carries over (no free burst on a change), but the bucket now refills at the
        // growth rate: one request per 0.12 s instead of per 0.6 s.
        let d = l.check_at(t, 500, now);
        assert!(!d.allowed());
        assert_eq!(d.limit(), 500);
        assert_eq!(d.retry_after_secs(), Some(1));
        let d = l.check_at(t, 500, now + 120_000_000);
        assert!(d.allowed());
        assert_eq!(d.limit(), 500);
        // Under the starter quota the same instant would still be limited.
        let starter_twin = tenant(30);
        assert_eq!(allowed(&l, starter_twin, 100, now, 100), 100);
        assert!(!l.check_at(starter_twin, 100, now + 120_000_000).allowed());
        // A minute later the whole growth burst is available.
        let later = now + 61 * SEC;
        assert_eq!(allowed(&l, t, 500, later, 600), 500);
        // Downgraded to starter: the next request is judged by the starter quota at once.
        let d = l.check_at(t, 100, later);
        assert!(!d.allowed());
        assert_eq!(d.limit(), 100);
        assert_eq!(d.retry_after_secs(), Some(1));
    }

    #[test]
    fn concurrent_requests_never_exceed_the_burst() {
        let l = Arc::new(LocalLimiter::new(MINUTE));
        let t = tenant(4);
        let now = 5 * SEC;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || allowed(&l, t, 1000, now, 500))
            })
            .collect();
        let total: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
