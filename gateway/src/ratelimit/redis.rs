//! The Redis backend: one GCRA bucket per tenant in Redis, so every gateway replica that
//! points at the same Redis and key prefix enforces one combined limit.
//!
//! Each check is one atomic Lua script ([`SCRIPT`]) run with `EVALSHA` (the client loads the
//! script and retries when Redis answers `NOSCRIPT`, e.g. after a restart). The script reads
//! the clock with `TIME`, so replicas with skewed clocks still agree, and stores the bucket's
//! `TAT` in microseconds with a TTL of its remaining used time plus a second: a key that
//! expired is a full bucket, exactly as if it were still there.
//!
//! This module only talks to Redis; what to do when Redis fails (limit locally, log, count)
//! is decided in [`super::RateLimiter`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use residency_config::{ConnectionUrl, Secret};
use residency_core::TenantId;

use super::gcra::{Decision, Params};

/// The GCRA step in Lua, the same as [`super::gcra::step`], in microseconds.
///
/// `KEYS[1]`: the tenant's bucket. `ARGV[1]`: emission interval, `ARGV[2]`: capacity (µs);
/// `ARGV[3]`, only in tests: the time to use instead of Redis's clock (µs). Returns `{1, TAT - now}` after an allowed request, `{0, TAT - now}` for a limited one.
/// Numbers are written with `%d`: Lua's default number formatting would round a
/// microsecond timestamp to 14 significant digits.
pub(crate) const SCRIPT: &str = r"
local emission = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat > now + capacity then tat = now + capacity end
local new_tat = tat + emission
if new_tat - now > capacity then
  return {0, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, new_tat - now}
";

/// Why a Redis check gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisLimitError {
    /// No answer within `rate_limit.redis_timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused or lost, or an error reply.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something other than `{allowed, used}`.
    #[error("unexpected rate-limit script reply")]
    BadReply,
}

impl RedisLimitError {
    /// Whether Redis was too slow (our per-call timeout or the client's own).
    #[must_use]
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Redis(e) => e.is_timeout(),
            Self::BadReply => false,
        }
    }

    /// A bounded label for logs and the fallback metric: `timeout` or `error`.
    #[must_use]
    pub(crate) fn metric_label(&self) -> &'static str {
        if self.is_timeout() {
            "timeout"
        } else {
            "error"
        }
    }
}

/// A connection to the shared limit store.
pub(crate) struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Prepares a connection to `url`; it is opened on first use and re-opened in the
    /// background after a failure, so the gateway starts (and limits locally) while Redis is
    /// down. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// When the URL cannot be used by the client (validation already checked its form).
    pub(crate) fn new(
        url: &Secret<ConnectionUrl>,
        prefix: &str,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url.expose().as_str())?;
        let config = ConnectionManagerConfig::new()
            // Every call is bounded by `timeout` in `check_at`; these bound the connection's
            // own work (reconnects, replies that come too late), a little longer so the
            // per-call timeout is the one that fires.
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(timeout.saturating_mul(2)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// The Redis key of `tenant`'s bucket.
    #[must_use]
    pub(crate) fn key(&self, tenant: TenantId) -> String {
        format!("{}{tenant}", self.prefix)
    }

    /// Counts a request of `tenant` under `params` in Redis.
    ///
    /// # Errors
    /// [`RedisLimitError`] when Redis does not answer in time or fails; nothing was counted
    /// then, or it was counted in Redis but the answer was lost (the caller limits locally).
    pub(crate) async fn check(
        &self,
        tenant: TenantId,
        params: &Params,
    ) -> Result<Decision, RedisLimitError> {
        self.check_at(tenant, params, None).await
    }

    /// [`Self::check`] at `now_us` (microseconds) instead of Redis's clock, for tests.
    async fn check_at(
        &self,
        tenant: TenantId,
        params: &Params,
        now_us: Option<u64>,
    ) -> Result<Decision, RedisLimitError> {
        let params = params.to_micros();
        let mut conn = self.conn.clone();
        let mut call = self.script.key(self.key(tenant));
        call.arg(params.emission_ns() / 1000)
            .arg(params.capacity_ns() / 1000);
        if let Some(now) = now_us {
            call.arg(now);
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout))??;
        let [allowed, used_us] = reply[..] else {
            return Err(RedisLimitError::BadReply);
        };
        let used_us = u64::try_from(used_us).map_err(|_| RedisLimitError::BadReply)?;
        Ok(params.decide(allowed == 1, used_us.saturating_mul(1000)))
    }
}

#[cfg(test)]
mod tests {
    //! These run the script on the Redis at 127.0.0.1:6379 (as CI provides), with explicit
    //! times so the results are exact.

    use super::super::gcra;
    use super::*;

    const URL: &str = "redis://127.0.0.1:6379/";

    fn limiter() -> RedisLimiter {
        let prefix = format!("residency:test:{}:", uuid::Uuid::new_v4());
        RedisLimiter::new(&Secret::url(URL), &prefix, Duration::from_secs(2)).unwrap()
    }

    fn tenant() -> TenantId {
        "0190a5c4-0000-7000-8000-0000000000d1".parse().unwrap()
    }

    #[tokio::test]
    async fn the_script_agrees_with_the_local_gcra_step() {
        let redis = limiter();
        let t = tenant();
        let params = Params::new(7, Duration::from_secs(60)).to_micros();
        let start_us: u64 = 1_700_000_000_000_000;
        // Bursts, refills, and a long idle gap, at explicit times.
        let offsets_ms: Vec<u64> = (0..9)
            .chain([8_571, 8_572, 9_000, 20_000, 20_001, 120_000])
            .chain(120_000..120_010)
            .collect();
        let mut tat = 0;
        for ms in offsets_ms {
            let now_us = start_us + ms * 1000;
            let (expected, next) = gcra::step(&params, tat, now_us * 1000);
            if let Some(next) = next {
                tat = next;
            }
            let got = redis.check_at(t, &params, Some(now_us)).await.unwrap();
            assert_eq!(got, expected, "at +{ms} ms");
        }
    }

    #[tokio::test]
    async fn buckets_expire_once_full_again() {
        let redis = limiter();
        let t = tenant();
        let d = redis
            .check(t, &Params::new(1000, Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(d.allowed());
        assert_eq!(d.remaining(), 999);
        let mut conn = redis.conn.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(redis.key(t))
            .query_async(&mut conn)
            .await
            .unwrap();
        // At most the 60 ms of used capacity plus a second of slack; gone once full again.
        assert!((1..=1_060).contains(&ttl), "{ttl}");
    }
}
