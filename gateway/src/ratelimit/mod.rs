//! Rate-limit phase: per-tenant GCRA between the directory lookup and the upstream call.
//!
//! A tenant's quota is its directory record's `rate_limit_per_min` (override, else the tier's
//! default: starter 100, growth 500, scale 1000, enterprise its override or 1000) per minute;
//! `[rate_limit] burst` says how much of it may arrive at once. The math lives in [`gcra`],
//! the state in [`local`] (this process) or [`redis`] (shared by every replica).
//!
//! Headers, after draft-ietf-httpapi-ratelimit-headers, on every response of a request that
//! reached this phase, allowed or not:
//! - `RateLimit-Limit`: the tenant's per-minute quota;
//! - `RateLimit-Remaining`: requests that could be sent right now without a 429;
//! - `RateLimit-Reset`: seconds until the bucket is full again (`Remaining` back at the
//!   burst);
//! - on a 429 also `Retry-After`: seconds until one more request is allowed (1 to 60).
//!
//! Architecture invariants:
//! - a limited request never reaches a region node;
//! - Redis trouble never fails a request: the request is limited locally instead, the fallback
//!   is counted (`residency_gateway_ratelimit_fallback_total`, by reason: `timeout`, `tls`, `error`,
//!   `cooldown`) and logged at most every 10 s with the url (password redacted) and the error;
//! - no tenant id in a metric label.

pub(crate) mod gcra;
pub mod local;
pub mod redis;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use metrics::Counter;
use residency_config::gateway::{RateLimitBackend, RateLimitConfig};
use residency_core::TenantId;

use crate::metrics as m;
pub use gcra::{Decision, Params};
use local::LocalLimiter;
use redis::{RedisLimitError, RedisLimiter};

/// `RateLimit-Limit`: the tenant's per-minute quota.
pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: requests that would be allowed right now.
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the tenant's bucket is full again.
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// After a Redis failure, requests go straight to the local limiter for this long, so an
/// outage costs at most one `redis_timeout` wait per cool-down, not one per request.
const REDIS_COOLDOWN: Duration = Duration::from_secs(1);
/// At most one "redis unavailable" warning per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The rate-limit phase: local, or Redis with local fallback.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    local: LocalLimiter,
    redis: Option<Shared>,
    burst: Duration,
    counters: Counters,
}

/// The Redis backend and its health, shared by all requests.
#[derive(Debug)]
struct Shared {
    limiter: RedisLimiter,
    /// Local-clock nanoseconds until which Redis is skipped after a failure.
    skip_until: AtomicU64,
    /// Whether the last Redis call failed (to log the recovery once).
    degraded: AtomicBool,
    /// Local-clock nanoseconds of the last warning, 0 for never.
    last_warn: AtomicU64,
    /// Failures not logged since the last warning.
    suppressed: AtomicU64,
}

/// Counter handles registered once, so the hot path only does an atomic add.
#[derive(Debug)]
struct Counters {
    local_allowed: Counter,
    local_limited: Counter,
    redis_allowed: Counter,
    redis_limited: Counter,
    fallback_timeout: Counter,
    fallback_error: Counter,
    fallback_tls: Counter,
    fallback_cooldown: Counter,
}

impl Counters {
    fn register() -> Self {
        let decision = |decision: &'static str, backend: &'static str| {
            let labels = [("decision", decision), ("backend", backend)];
            metrics::counter!(m::RATELIMIT_DECISIONS_TOTAL, &labels)
        };
        let fallback = |reason: &'static str| {
            let labels = [("reason", reason)];
            metrics::counter!(m::RATELIMIT_FALLBACK_TOTAL, &labels)
        };
        Self {
            local_allowed: decision("allowed", "local"),
            local_limited: decision("limited", "local"),
            redis_allowed: decision("allowed", "redis"),
            redis_limited: decision("limited", "redis"),
            fallback_timeout: fallback("timeout"),
            fallback_error: fallback("error"),
            fallback_tls: fallback("tls"),
            fallback_cooldown: fallback("cooldown"),
        }
    }
}

impl RateLimiter {
    /// Builds the configured limiter. With `backend = "redis"` the connection opens on first
    /// use, so a gateway starts even while Redis is down. Register the metrics recorder
    /// first: counter handles are taken here.
    ///
    /// # Errors
    /// When the Redis URL is missing or unusable, or a TLS file (`redis_ca_file`, the client
    /// certificate pair) cannot be read or used; the message names the url, password
    /// redacted, and the reason.
    pub(crate) fn new(cfg: &RateLimitConfig) -> anyhow::Result<Self> {
        let redis = match cfg.backend {
            RateLimitBackend::Local => None,
            RateLimitBackend::Redis => {
                let limiter = RedisLimiter::new(cfg).map_err(anyhow::Error::msg)?;
                Some(Shared {
                    limiter,
                    skip_until: AtomicU64::new(0),
                    degraded: AtomicBool::new(false),
                    last_warn: AtomicU64::new(0),
                    suppressed: AtomicU64::new(0),
                })
            }
        };
        Ok(Self {
            local: LocalLimiter::new(cfg.burst),
            redis,
            burst: cfg.burst,
            counters: Counters::register(),
        })
    }

    /// Counts one request of `tenant`, whose per-minute quota is `quota_per_min`, that
    /// arrived at `arrival`, and says whether it may go on. Never fails: Redis trouble means
    /// a local decision. (Redis uses its own clock, so replicas agree.)
    pub(crate) async fn check(
        &self,
        tenant: TenantId,
        quota_per_min: u32,
        arrival: Instant,
    ) -> Decision {
        let now = self.local.clock(arrival);
        let Some(shared) = &self.redis else {
            return self.check_local(tenant, quota_per_min, now);
        };
        if now < shared.skip_until.load(Ordering::Relaxed) {
            self.counters.fallback_cooldown.increment(1);
            return self.check_local(tenant, quota_per_min, now);
        }
        let params = Params::new(quota_per_min, self.burst);
        match shared.limiter.check(tenant, &params).await {
            Ok(decision) => {
                if shared.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis rate limiter reachable again; limits are shared");
                }
                let counter = if decision.allowed() {
                    &self.counters.redis_allowed
                } else {
                    &self.counters.redis_limited
                };
                counter.increment(1);
                decision
            }
            Err(err) => {
                // Time has passed while waiting for Redis.
                let now = self.local.clock(Instant::now());
                shared
                    .skip_until
                    .store(now.saturating_add(nanos(REDIS_COOLDOWN)), Ordering::Relaxed);
                shared.degraded.store(true, Ordering::Relaxed);
                shared.warn_limited(now, &err);
                match err.metric_label() {
                    "timeout" => &self.counters.fallback_timeout,
                    "tls" => &self.counters.fallback_tls,
                    _ => &self.counters.fallback_error,
                }
                .increment(1);
                self.check_local(tenant, quota_per_min, now)
            }
        }
    }

    fn check_local(&self, tenant: TenantId, quota_per_min: u32, now: u64) -> Decision {
        let decision = self.local.check_at(tenant, quota_per_min, now);
        let counter = if decision.allowed() {
            &self.counters.local_allowed
        } else {
            &self.counters.local_limited
        };
        counter.increment(1);
        decision
    }
}

impl Shared {
    /// Logs a Redis failure unless one was logged within [`WARN_INTERVAL`].
    fn warn_limited(&self, now: u64, err: &RedisLimitError) {
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= nanos(WARN_INTERVAL);
        // Only the thread that wins the swap logs; the others count as suppressed.
        if due
            && self
                .last_warn
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                error = %err,
                kind = err.metric_label(),
                suppressed,
                redis = self.limiter.url(),
                "redis rate limiter unavailable; limiting locally on this replica"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sets the `RateLimit-*` headers (and `Retry-After` when limited) from `decision`,
/// replacing any a region node sent. The proxy's response filter calls it on every response
/// of a request that reached this phase; the error map on the 429
/// ([`crate::error::GatewayError::RateLimited`]).
pub(crate) fn insert_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit()));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining()));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset_secs()));
    if let Some(secs) = decision.retry_after_secs() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use residency_config::Secret;

    fn tenant() -> TenantId {
        "0190a5c4-0000-7000-8000-0000000000b1".parse().unwrap()
    }

    #[test]
    fn headers_follow_the_decision() {
        let p = Params::new(100, Duration::from_secs(60));
        let mut h = HeaderMap::new();
        // A region node's own headers are replaced.
        h.insert(RATELIMIT_LIMIT, HeaderValue::from_static("999999"));
        insert_headers(&mut h, &p.decide(true, 600_000_000));
        assert_eq!(h[RATELIMIT_LIMIT], "100");
        assert_eq!(h[RATELIMIT_REMAINING], "99");
        assert_eq!(h[RATELIMIT_RESET], "1");
        assert!(h.get(RETRY_AFTER).is_none());
        let mut h = HeaderMap::new();
        insert_headers(&mut h, &p.decide(false, 60_000_000_000));
        assert_eq!(h[RATELIMIT_REMAINING], "0");
        assert_eq!(h[RATELIMIT_RESET], "60");
        assert_eq!(h[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn unreachable_redis_falls_back_to_local_limiting() {
        // Port 1 on loopback: nothing listens there, so connecting is refused at once.
        let cfg = RateLimitConfig {
            backend: RateLimitBackend::Redis,
            redis_url: Some(Secret::url("redis://127.0.0.1:1/")),
            redis_timeout: Duration::from_millis(200),
            ..RateLimitConfig::default()
        };
        let l = RateLimiter::new(&cfg).unwrap();
        let t0 = l.local.clock(Instant::now());
        // Within the burst every request is allowed, whatever the clock does meanwhile.
        for i in 0..100 {
            let d = l.check(tenant(), 100, Instant::now()).await;
            assert!(d.allowed(), "request {i}");
        }
        let shared = l.redis.as_ref().unwrap();
        assert!(shared.degraded.load(Ordering::Relaxed));
        assert!(shared.skip_until.load(Ordering::Relaxed) > 0);
        // They were counted locally: seen from the time before the first of them, the local
        // bucket holds a full minute of use, so one more is limited.
        let d = l.local.check_at(tenant(), 100, t0);
        assert!(!d.allowed());
        assert_eq!(d.retry_after_secs(), Some(1));
        assert_eq!(l.local.len(), 1);
    }

    /// A TCP relay to the Redis at 127.0.0.1:6379 that can be cut and restored, to stop
    /// "Redis" under a running limiter without touching the real server other tests use.
    struct Relay {
        addr: std::net::SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Relay {
        async fn start(addr: &str) -> Self {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                // Dropped with the task: aborting it closes every relayed connection.
                let mut conns = tokio::task::JoinSet::new();
                while let Ok((mut inbound, _)) = listener.accept().await {
                    conns.spawn(async move {
                        let mut redis = tokio::net::TcpStream::connect("127.0.0.1:6379").await?;
                        tokio::io::copy_bidirectional(&mut inbound, &mut redis).await
                    });
                }
            });
            Self { addr, task }
        }

        /// Closes the listener and every connection; returns the freed address.
        async fn cut(self) -> String {
            self.task.abort();
            assert!(self.task.await.unwrap_err().is_cancelled());
            self.addr.to_string()
        }
    }

    #[tokio::test]
    async fn a_redis_outage_falls_back_to_local_limiting_and_recovers() {
        let relay = Relay::start("127.0.0.1:0").await;
        let cfg = RateLimitConfig {
            backend: RateLimitBackend::Redis,
            redis_url: Some(Secret::url(format!("redis://{}/", relay.addr))),
            redis_timeout: Duration::from_millis(500),
            redis_key_prefix: format!("residency:test:{}:", uuid::Uuid::new_v4()),
            ..RateLimitConfig::default()
        };
        let l = RateLimiter::new(&cfg).unwrap();
        let shared = l.redis.as_ref().unwrap();
        let t0 = Instant::now();

        // Shared: the decision comes from Redis, nothing is counted locally.
        let d = l.check(tenant(), 100, t0).await;
        assert!(d.allowed());
        assert!(!shared.degraded.load(Ordering::Relaxed));
        assert!(l.local.is_empty());

        // Redis goes away: the request is still served, limited locally.
        let addr = relay.cut().await;
        let d = l.check(tenant(), 100, t0).await;
        assert!(d.allowed());
        assert!(shared.degraded.load(Ordering::Relaxed));
        assert_eq!(l.local.len(), 1);
        // During the cool-down Redis is not even tried.
        let skip_until = shared.skip_until.load(Ordering::Relaxed);
        assert!(l.local.clock(t0) < skip_until);
        assert!(l.check(tenant(), 100, t0).await.allowed());
        assert_eq!(shared.skip_until.load(Ordering::Relaxed), skip_until);

        // Redis is back. Requests arriving after the cool-down (given as later arrival
        // times, so nothing waits) ask Redis again; the client reconnects in the background
        // after the first failed try, so within a few requests the limit is shared again.
        let relay = Relay::start(&addr).await;
        let mut answers = 0;
        for k in 1..=10u64 {
            let at = t0 + Duration::from_secs(2 * k);
            assert!(l.check(tenant(), 100, at).await.allowed());
            if !shared.degraded.load(Ordering::Relaxed) {
                answers = k;
                break;
            }
        }
        assert!(answers > 0, "redis never answered again");
        relay.cut().await;
    }
}
