//! `[rate_limit]`: per-tenant request rate limiting, local or shared through Redis.
//!
//! Redis is reached over TLS with a `rediss://` url: the server certificate is checked
//! against `redis_ca_file` (else the platform's trust store) and the url's host, and
//! `redis_client_cert_file` / `redis_client_key_file` are presented when the server asks
//! for a client certificate. A plain `redis://` url is accepted for a loopback host only,
//! unless `allow_insecure_transport = true` says the network is trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::load::{check_file, resolve};
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
    /// Redis server for `backend = "redis"`: `rediss://:password@redis.internal:6380/0`
    /// (TLS), or `redis://` to a loopback host (or any host with `allow_insecure_transport`).
    pub redis_url: Option<Secret<ConnectionUrl>>,
    /// PEM certificate(s) of the CA that signs the Redis server's certificate, for a
    /// `rediss://` url; without it the platform's trust store is used.
    pub redis_ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to Redis (for `tls-auth-clients`), for a `rediss://`
    /// url; set together with `redis_client_key_file`.
    pub redis_client_cert_file: Option<PathBuf>,
    /// PEM private key of `redis_client_cert_file`.
    pub redis_client_key_file: Option<PathBuf>,
    /// Allows a plain `redis://` url to a host that is not loopback (the password and every
    /// bucket then cross the network in clear): only on a network trusted as a whole.
    pub allow_insecure_transport: bool,
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
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            allow_insecure_transport: false,
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
            (Some(u), _) => self.check_url(u.expose(), &mut out),
            (None, RateLimitBackend::Local) => {}
        }
        self.check_tls_files(&mut out);
        out
    }

    /// Makes the TLS file paths relative to the config file's directory.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for f in [
            &mut self.redis_ca_file,
            &mut self.redis_client_cert_file,
            &mut self.redis_client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            resolve(base, f);
        }
    }

    /// Whether the configured url is a `rediss://` one.
    #[must_use]
    pub fn redis_uses_tls(&self) -> bool {
        self.redis_url
            .as_ref()
            .and_then(|u| url::Url::parse(u.expose()).ok())
            .is_some_and(|u| u.scheme() == "rediss")
    }

    /// `redis://` or `rediss://` with a host and no fragment (`#insecure` would turn off the
    /// certificate check); plain `redis://` only to loopback unless allowed.
    fn check_url(&self, raw: &str, out: &mut Vec<Problem>) {
        const KEY: &str = "rate_limit.redis_url";
        // The parser's message does not echo the input, so no password leaks here.
        let u = match url::Url::parse(raw) {
            Ok(u) => u,
            Err(e) => return out.push(Problem::new(KEY, format!("not a url: {e}"))),
        };
        let Some(host) = u
            .host()
            .filter(|_| matches!(u.scheme(), "redis" | "rediss"))
        else {
            return out.push(Problem::new(
                KEY,
                "must be a rediss:// (tls) or redis:// url with a host",
            ));
        };
        if u.fragment().is_some() {
            out.push(Problem::new(
                KEY,
                "must not have a fragment (#insecure would turn off the certificate check)",
            ));
        }
        if u.scheme() == "redis" && !self.allow_insecure_transport && !is_loopback(&host) {
            out.push(Problem::new(
                KEY,
                "a redis:// url sends the password and the limits in clear: use rediss:// \
                 for a host that is not loopback, or set rate_limit.allow_insecure_transport \
                 = true on a trusted network",
            ));
        }
    }

    /// The TLS files only with a `rediss://` url, readable, the client pair complete.
    fn check_tls_files(&self, out: &mut Vec<Problem>) {
        let files = [
            ("rate_limit.redis_ca_file", &self.redis_ca_file),
            (
                "rate_limit.redis_client_cert_file",
                &self.redis_client_cert_file,
            ),
            (
                "rate_limit.redis_client_key_file",
                &self.redis_client_key_file,
            ),
        ];
        if !self.redis_uses_tls() {
            for (key, _) in files.iter().filter(|(_, f)| f.is_some()) {
                out.push(Problem::new(*key, "set only with a rediss:// redis_url"));
            }
            return;
        }
        for (key, file) in files {
            if let Some(f) = file {
                check_file(key, f, out);
            }
        }
        match (&self.redis_client_cert_file, &self.redis_client_key_file) {
            (Some(_), None) => out.push(Problem::new(
                "rate_limit.redis_client_key_file",
                "required with redis_client_cert_file",
            )),
            (None, Some(_)) => out.push(Problem::new(
                "rate_limit.redis_client_cert_file",
                "required with redis_client_key_file",
            )),
            _ => {}
        }
    }
}

/// `localhost` or a loopback address: traffic that never leaves the machine. (`redis` is not
/// a special scheme to the url parser, so an IPv4 address arrives as a domain.)
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}
