//! The generic cell rate algorithm (GCRA) as pure functions over explicit times, so the math
//! is tested without clocks or sleeps. The local backend runs [`step`] on an atomic; the Redis
//! backend runs the same steps in Lua (`redis.rs`) and turns its answer into a [`Decision`]
//! with [`Params::decide`].
//!
//! Terms: a quota of `q` requests per minute gives the emission interval `T = 60 s / q`; a
//! burst of `b` requests gives the capacity `C = b * T`. The whole state of a bucket is one
//! number, the theoretical arrival time `TAT`: the bucket is full when `TAT <= now`, and
//! `TAT - now` is the part of the capacity in use. A request at `now` is allowed when
//! `max(TAT, now) + T - now <= C`, and then moves `TAT` to `max(TAT, now) + T`.

use std::time::Duration;

/// Nanoseconds per second.
pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;
/// The quota window: quotas are per minute.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_NS: u64 = 60 * NANOS_PER_SEC;

/// The GCRA parameters of one quota, in nanoseconds.
///
/// Invariants: `1 <= burst <= quota` and `capacity_ns == burst * emission_ns` for a non-zero
/// quota; a zero quota refuses every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    quota: u32,
    burst: u32,
    emission_ns: u64,
    capacity_ns: u64,
}

impl Params {
    /// The parameters of `quota_per_min` with `burst` worth of quota allowed at once
    /// (clamped to one minute; at least one request).
    #[must_use]
    pub fn new(quota_per_min: u32, burst: Duration) -> Self {
        if quota_per_min == 0 {
            // Nothing is ever allowed; a zero capacity with a one-minute interval makes every
            // request limited with `Retry-After: 60`.
            return Self {
                quota: 0,
                burst: 0,
                emission_ns: WINDOW_NS,
                capacity_ns: 0,
            };
        }
        let quota = u64::from(quota_per_min);
        let emission_ns = WINDOW_NS / quota;
        let burst_ns = burst.min(WINDOW).as_nanos();
        // quota * burst_ns fits in u128 easily; the result is at most `quota`, so it fits u32.
        let burst = (u128::from(quota) * burst_ns / u128::from(WINDOW_NS)).max(1);
        let burst = u32::try_from(burst).unwrap_or(quota_per_min);
        Self {
            quota: quota_per_min,
            burst,
            emission_ns,
            capacity_ns: u64::from(burst) * emission_ns,
        }
    }

    /// The same parameters in whole microseconds, the unit of the Redis script (Lua numbers
    /// are doubles: microseconds since the epoch stay exact, nanoseconds do not). The
    /// interval is rounded *up*, so the shared limit never lets more than the quota through
    /// (rounding down let 60 s / 7 become 8,571,428 µs: a hair over 7 per minute).
    #[must_use]
    pub(crate) fn to_micros(self) -> Self {
        let emission_ns = self.emission_ns.div_ceil(1000) * 1000;
        Self {
            emission_ns,
            capacity_ns: u64::from(self.burst) * emission_ns,
            ..self
        }
    }

    /// The per-minute quota (`RateLimit-Limit`).
    #[must_use]
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// Requests that may arrive at once when the bucket is full.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval `T` in nanoseconds.
    #[must_use]
    pub(crate) fn emission_ns(&self) -> u64 {
        self.emission_ns
    }

    /// The capacity `C` in nanoseconds.
    #[must_use]
    pub(crate) fn capacity_ns(&self) -> u64 {
        self.capacity_ns
    }

    /// The decision for a request, from whether it was `allowed` and `used_ns`, the part of
    /// the capacity in use (`TAT - now`) after it (allowed) or when it was refused (limited).
    #[must_use]
    pub fn decide(&self, allowed: bool, used_ns: u64) -> Decision {
        let used_ns = used_ns.min(self.capacity_ns);
        if allowed {
            let remaining = (self.capacity_ns - used_ns) / self.emission_ns;
            Decision {
                allowed: true,
                limit: self.quota,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_secs: ceil_secs(used_ns),
                retry_after_secs: 0,
            }
        } else {
            // One more request fits once `used + T <= C`, i.e. after `used + T - C`; that is
            // more than 0 (else it would have been allowed) and at most `T <= 60 s`.
            let wait_ns = (used_ns + self.emission_ns).saturating_sub(self.capacity_ns);
            Decision {
                allowed: false,
                limit: self.quota,
                remaining: 0,
                // With a zero quota the bucket never fills: report the whole window.
                reset_secs: if self.quota == 0 {
                    WINDOW.as_secs()
                } else {
                    ceil_secs(used_ns)
                },
                retry_after_secs: ceil_secs(wait_ns).max(1),
            }
        }
    }
}

/// What the rate limiter decided for one request, with the numbers for the `RateLimit-*`
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    retry_after_secs: u64,
}

impl Decision {
    /// Whether the request may go on to the region node.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The tenant's per-minute quota (`RateLimit-Limit`).
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests that could be sent right now without being limited (`RateLimit-Remaining`);
    /// 0 when limited.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Whole seconds, rounded up, until the bucket is full again, i.e. until `remaining`
    /// is back at the full burst (`RateLimit-Reset`); at most 60.
    #[must_use]
    pub(crate) fn reset_secs(&self) -> u64 {
        self.reset_secs
    }

    /// For a limited request: whole seconds, rounded up, until one more request is allowed
    /// (`Retry-After`, 1 to 60). `None` when allowed.
    #[must_use]
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        (!self.allowed).then_some(self.retry_after_secs)
    }
}

/// One GCRA step for a request arriving at `now` on a bucket whose state is `tat` (both in
/// nanoseconds on one clock): the decision, and the new `tat` to store when it is allowed.
#[must_use]
pub(crate) fn step(params: &Params, tat: u64, now: u64) -> (Decision, Option<u64>) {
    // An idle bucket is simply full (`tat` below `now`). Above `now + C` the state can only
    // be after a quota change lowered the capacity: keep the used part, capped at the new
    // capacity, so a tier change neither grants a fresh burst nor a wait longer than `T`.
    let tat = tat.clamp(now, now.saturating_add(params.capacity_ns));
    let new_tat = tat.saturating_add(params.emission_ns);
    if new_tat - now <= params.capacity_ns {
        (params.decide(true, new_tat - now), Some(new_tat))
    } else {
        (params.decide(false, tat - now), None)
    }
}

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = NANOS_PER_SEC;
    const MINUTE: Duration = Duration::from_secs(60);

    /// Sends `n` requests at `now` and returns the decisions, updating `tat`.
    fn burst_at(p: &Params, tat: &mut u64, now: u64, n: usize) -> Vec<Decision> {
        (0..n)
            .map(|_| {
                let (d, next) = step(p, *tat, now);
                if let Some(next) = next {
                    *tat = next;
                }
                d
            })
            .collect()
    }

    #[test]
    fn tier_quotas_give_their_intervals_and_bursts() {
        let starter = Params::new(100, MINUTE);
        assert_eq!(starter.emission_ns(), 600 * MS);
        assert_eq!(starter.burst(), 100);
        assert_eq!(starter.capacity_ns(), 60 * SEC);
        let scale = Params::new(1000, MINUTE);
        assert_eq!(scale.emission_ns(), 60 * MS);
        assert_eq!(scale.burst(), 1000);
        // Burst as time worth of quota: 6 s is a tenth of each tier's quota.
        assert_eq!(Params::new(100, Duration::from_secs(6)).burst(), 10);
        assert_eq!(Params::new(1000, Duration::from_secs(6)).burst(), 100);
        // Never below one request, never above the quota.
        assert_eq!(Params::new(5, Duration::from_secs(1)).burst(), 1);
        assert_eq!(Params::new(100, Duration::from_secs(3600)).burst(), 100);
    }

    #[test]
    fn a_full_bucket_allows_the_burst_then_limits() {
        let p = Params::new(100, MINUTE);
        let now = 1_000 * SEC;
        let mut tat = 0;
        let ds = burst_at(&p, &mut tat, now, 101);
        for (i, d) in ds[..100].iter().enumerate() {
            assert!(d.allowed(), "request {i}");
            assert_eq!(d.limit(), 100);
            assert_eq!(d.remaining(), 99 - u32::try_from(i).unwrap(), "request {i}");
            assert_eq!(d.retry_after_secs(), None);
        }
        // The first request uses 0.6 s of capacity: full again in 1 s (rounded up).
        assert_eq!(ds[0].reset_secs(), 1);
        assert_eq!(ds[99].reset_secs(), 60);
        let limited = ds[100];
        assert!(!limited.allowed());
        assert_eq!(limited.remaining(), 0);
        assert_eq!(limited.limit(), 100);
        assert_eq!(limited.reset_secs(), 60);
        // One more request fits after one interval (0.6 s), rounded up to whole seconds.
        assert_eq!(limited.retry_after_secs(), Some(1));
        // A refused request does not move the state.
        assert_eq!(tat, now + 60 * SEC);
    }

    #[test]
    fn the_bucket_refills_at_the_quota_rate() {
        let p = Params::new(100, MINUTE);
        let start = 5 * SEC;
        let mut tat = 0;
        burst_at(&p, &mut tat, start, 100);
        // Just before one interval has passed: still limited.
        let (d, next) = step(&p, tat, start + 600 * MS - 1);
        assert!(!d.allowed());
        assert_eq!(next, None);
        // After exactly one interval: one request, and the bucket is empty again.
        let (d, next) = step(&p, tat, start + 600 * MS);
        assert!(d.allowed());
        assert_eq!(d.remaining(), 0);
        tat = next.unwrap();
        assert!(!step(&p, tat, start + 600 * MS).0.allowed());
        // Half a minute later, half the burst is back.
        let (d, _) = step(&p, tat, start + 600 * MS + 30 * SEC);
        assert!(d.allowed());
        assert_eq!(d.remaining(), 49);
        assert_eq!(d.reset_secs(), 31);
        // A whole minute of idleness refills it completely: a bucket never holds more.
        let (d, _) = step(&p, tat, start + 10 * 60 * SEC);
        assert_eq!(d.remaining(), 99);
    }

    #[test]
    fn a_steady_rate_at_the_quota_is_never_limited() {
        let p = Params::new(500, Duration::from_secs(1));
        assert_eq!(p.burst(), 8);
        let mut tat = 0;
        for i in 0..5_000 {
            let now = 1 + i * p.emission_ns();
            let (d, next) = step(&p, tat, now);
            assert!(d.allowed(), "request {i}");
            tat = next.unwrap();
        }
    }

    #[test]
    fn over_any_minute_at_most_quota_plus_burst_pass() {
        // The classic GCRA bound: in any window of one minute, at most burst + quota requests
        // are allowed (the burst at the start, then one per interval).
        let p = Params::new(100, MINUTE);
        let mut tat = 0;
        let mut allowed = 0;
        // A client hammering every millisecond for one minute.
        for ms in 0..60_000 {
            let (d, next) = step(&p, tat, ms * MS);
            if let Some(next) = next {
                tat = next;
                allowed += 1;
                assert!(d.allowed());
            }
        }
        assert_eq!(allowed, 100 + 99);
    }

    #[test]
    fn retry_after_and_reset_stay_within_the_window() {
        for quota in [1, 7, 100, 500, 1000, 60_000] {
            for burst in [1, 10, 59, 60] {
                let p = Params::new(quota, Duration::from_secs(burst));
                let mut tat = 0;
                let now = 42 * SEC;
                let n = usize::try_from(p.burst()).unwrap() + 1;
                let last = *burst_at(&p, &mut tat, now, n).last().unwrap();
                assert!(!last.allowed(), "quota {quota} burst {burst}");
                let retry = last.retry_after_secs().unwrap();
                assert!((1..=60).contains(&retry), "quota {quota}: {retry}");
                assert!(last.reset_secs() <= 60, "quota {quota}");
            }
        }
        // The slowest quota: one request per minute.
        let p = Params::new(1, MINUTE);
        let (_, tat) = step(&p, 0, SEC);
        let (d, _) = step(&p, tat.unwrap(), SEC);
        assert_eq!(d.retry_after_secs(), Some(60));
    }

    #[test]
    fn a_zero_quota_refuses_everything() {
        let p = Params::new(0, MINUTE);
        let (d, next) = step(&p, 0, 10 * SEC);
        assert!(!d.allowed());
        assert_eq!(next, None);
        assert_eq!(d.limit(), 0);
        assert_eq!(d.remaining(), 0);
        assert_eq!(d.retry_after_secs(), Some(60));
        assert_eq!(d.reset_secs(), 60);
    }

    #[test]
    fn a_quota_change_keeps_the_used_time_capped_at_the_new_capacity() {
        // A scale tenant used half its minute (500 requests)...
        let scale = Params::new(1000, MINUTE);
        let now = 100 * SEC;
        let mut tat = 0;
        burst_at(&scale, &mut tat, now, 500);
        assert_eq!(tat, now + 30 * SEC);
        // ...is moved to starter: half of the new minute is used too.
        let starter = Params::new(100, MINUTE);
        let (d, _) = step(&starter, tat, now);
        assert!(d.allowed());
        assert_eq!(d.limit(), 100);
        assert_eq!(d.remaining(), 49);
        // A smaller burst caps the used part: limited, but for one interval at most.
        let small = Params::new(100, Duration::from_secs(6));
        let (d, _) = step(&small, tat, now);
        assert!(!d.allowed());
        assert_eq!(d.retry_after_secs(), Some(1));
        assert_eq!(d.reset_secs(), 6);
    }

    #[test]
    fn micros_rounding_keeps_the_burst() {
        let p = Params::new(7, MINUTE).to_micros();
        assert_eq!(p.emission_ns() % 1000, 0);
        assert_eq!(p.burst(), 7);
        assert_eq!(p.capacity_ns(), 7 * p.emission_ns());
        let mut tat = 0;
        let ds = burst_at(&p, &mut tat, 3 * SEC, 8);
        assert_eq!(ds[0].remaining(), 6);
        assert_eq!(ds[6].remaining(), 0);
        assert!(!ds[7].allowed());
    }
}

#[cfg(test)]
mod props {
    //! Properties of the GCRA over arbitrary quotas, bursts and arrival schedules.

    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    /// Arrival times: non-decreasing offsets (ns) from a start far from zero.
    fn schedule() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(0u64..3 * SEC, 1..400).prop_map(|gaps| {
            let mut t = 1_000_000 * SEC;
            gaps.into_iter()
                .map(|g| {
                    t += g;
                    t
                })
                .collect()
        })
    }

    /// Runs `times` through one bucket; the allowed arrival times and every decision.
    fn run(p: &Params, times: &[u64]) -> (Vec<u64>, Vec<Decision>) {
        let mut tat = 0;
        let (mut allowed, mut decisions) = (Vec::new(), Vec::new());
        for &now in times {
            let (d, next) = step(p, tat, now);
            assert_eq!(d.allowed(), next.is_some());
            if let Some(next) = next {
                tat = next;
                allowed.push(now);
            }
            decisions.push(d);
        }
        (allowed, decisions)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// In any window of one minute, at most quota + burst requests pass (a full bucket,
        /// then refills at the quota rate).
        #[test]
        fn no_minute_lets_more_than_quota_plus_burst_through(
            quota in 1u32..2_000,
            burst_ms in 0u64..60_000,
            times in schedule(),
        ) {
            let p = Params::new(quota, Duration::from_millis(burst_ms));
            let (allowed, _) = run(&p, &times);
            let window = 60 * SEC;
            for (i, &start) in allowed.iter().enumerate() {
                let n = allowed[i..].iter().take_while(|&&t| t < start + window).count();
                prop_assert!(
                    n <= (p.quota() + p.burst()) as usize,
                    "{n} requests in one minute with quota {} burst {}",
                    p.quota(),
                    p.burst()
                );
            }
        }

        /// The header numbers stay in their ranges, and a limited request's Retry-After is
        /// honest: waiting that long, one more request is allowed.
        #[test]
        fn headers_stay_in_range_and_retry_after_is_enough(
            quota in 1u32..2_000,
            burst_ms in 0u64..60_000,
            times in schedule(),
        ) {
            let p = Params::new(quota, Duration::from_millis(burst_ms));
            prop_assert!(p.burst() >= 1 && p.burst() <= p.quota());
            let mut tat = 0;
            for &now in &times {
                let (d, next) = step(&p, tat, now);
                prop_assert_eq!(d.limit(), quota);
                prop_assert!(d.reset_secs() <= 60);
                if let Some(next) = next {
                    prop_assert!(d.remaining() < p.burst());
                    tat = next;
                } else {
                    prop_assert_eq!(d.remaining(), 0);
                    let wait = d.retry_after_secs().unwrap();
                    prop_assert!((1..=60).contains(&wait), "Retry-After {}", wait);
                    let (later, _) = step(&p, tat, now + wait * SEC);
                    prop_assert!(later.allowed(), "still limited after Retry-After {}", wait);
                }
            }
        }

        /// Requests spaced at least one emission interval apart are never limited.
        #[test]
        fn a_rate_at_or_under_the_quota_is_never_limited(
            quota in 1u32..2_000,
            burst_ms in 0u64..60_000,
            extra in proptest::collection::vec(0u64..SEC, 1..200),
        ) {
            let p = Params::new(quota, Duration::from_millis(burst_ms));
            let mut now = 1_000_000 * SEC;
            let mut tat = 0;
            for e in extra {
                let (d, next) = step(&p, tat, now);
                prop_assert!(d.allowed());
                tat = next.unwrap();
                now += p.emission_ns() + e;
            }
        }

        /// Microsecond rounding (the Redis backend's unit) never grants more than the
        /// nanosecond parameters and keeps the burst.
        #[test]
        fn micros_keep_the_burst_and_never_grant_more(quota in 1u32..100_000, burst_ms in 0u64..60_000) {
            let p = Params::new(quota, Duration::from_millis(burst_ms));
            let m = p.to_micros();
            prop_assert_eq!(m.burst(), p.burst());
            prop_assert!(m.capacity_ns() / m.emission_ns() >= u64::from(p.burst()));
            prop_assert!(m.emission_ns() >= p.emission_ns());
        }
    }
}
