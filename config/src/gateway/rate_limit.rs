//! `[rate_limit]`: per-tenant request rate limiting, local or shared through Redis.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::{ConnectionUrl, Secret};
use crate::Problem;

/// The largest allowed `rate_limit.burst`: a bucket never holds more than one minute of
/// quota, so `RateLimit-Remaining` never exceeds `RateLimit-Limit`.
pub(crate) const MAX_RATE_LIMIT_BURST: Duration = Duration::from_secs(60);
/// The longest allowed `rate_limit.redis_timeout`: a shared limit must never cost a request
/// more than this; past it the gateway limits locally instead.
pub(crate) const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// `[rate_limit]`: per-tenant request rate limiting (GCRA).
///
/// A tenant's quota is its per-minute limit: the directory's `rate_limit_per_min` override,
/// else its tier's default ([`Tier::default_rate_per_min`](super::Tier::default_rate_per_min)). `burst` says how much of that
/// quota may arrive at once, as time worth of quota: the default `60s` lets a whole minute's
/// quota arrive at once (a starter tenant may send 100 requests back to back, then one every
/// 0.6 s); `"6s"` would allow 10 at once for a starter tenant and 100 for a scale tenant.
/// Expressing burst as time keeps it proportional to every tenant's quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Where the limit state lives.
    pub backend: RateLimitBackend,
    /// Time worth of quota that may arrive at once, between 1s and 60s (default 60s: the
    /// whole per-minute quota). The burst in requests is `quota * burst / 60s`, at least 1.
    #[serde(with = "crate::duration::serde_str")]
    pub burst: Duration,
    /// Redis server for `backend = "redis"`, e.g. `redis://:password@10.0.0.5:6379/0`.
    pub redis_url: Option<Secret<ConnectionUrl>>,
    /// The most time one Redis call may take before the request is limited locally instead
    /// (default 50ms, at most 1s).
    #[serde(with = "crate::duration::serde_str")]
    pub redis_timeout: Duration,
    /// Prefix of the per-tenant Redis keys (`<prefix><tenant id>`); replicas that share a
    /// limit must use the same prefix.
    pub redis_key_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            backend: RateLimitBackend::Local,
            burst: MAX_RATE_LIMIT_BURST,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_key_prefix: "residency:ratelimit:".to_owned(),
        }
    }
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// In this gateway's memory: each replica limits on its own.
    #[default]
    Local,
    /// In Redis, so every replica shares one limit per tenant; local limiting is the
    /// fallback while Redis is unreachable.
    Redis,
}

impl RateLimitConfig {
    /// Every problem of `[rate_limit]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !(Duration::from_secs(1)..=MAX_RATE_LIMIT_BURST).contains(&self.burst) {
            out.push(Problem::new(
                "rate_limit.burst",
                "must be between 1s and 60s (time worth of quota that may arrive at once)",
            ));
        }
        if self.redis_timeout.is_zero() || self.redis_timeout > MAX_REDIS_TIMEOUT {
            out.push(Problem::new(
                "rate_limit.redis_timeout",
                "must be greater than 0 and at most 1s",
            ));
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.len() > 128 {
            out.push(Problem::new(
                "rate_limit.redis_key_prefix",
                "must be 1 to 128 bytes long",
            ));
        }
        match (&self.redis_url, self.backend) {
            (None, RateLimitBackend::Redis) => out.push(Problem::new(
                "rate_limit.redis_url",
                "is required when backend = \"redis\"",
            )),
            (Some(u), _) => match url::Url::parse(u.expose()) {
                Ok(p) if p.scheme() == "redis" && p.host().is_some() => {}
                Ok(p) if p.scheme() == "rediss" => out.push(Problem::new(
                    "rate_limit.redis_url",
                    "tls to redis is not built yet; use a redis:// url on a trusted network",
                )),
                Ok(_) => out.push(Problem::new(
                    "rate_limit.redis_url",
                    "must be a redis:// url with a host",
                )),
                // The parser's message does not echo the input, so no password leaks here.
                Err(e) => out.push(Problem::new(
                    "rate_limit.redis_url",
                    format!("not a url: {e}"),
                )),
            },
            (None, RateLimitBackend::Local) => {}
        }
        out
    }
}
