//! The Redis backend: one GCRA bucket per tenant in Redis, so every gateway replica that
//! points at the same Redis and key prefix enforces one combined limit.
//!
//! Each check is one atomic Lua script ([`SCRIPT`]) run with `EVALSHA` (the client loads the
//! script and retries when Redis answers `NOSCRIPT`, e.g. after a restart). The script reads
//! the clock with `TIME`, so replicas with skewed clocks still agree, and stores the bucket's
//! `TAT` in microseconds with a TTL of its remaining used time plus a second: a key that
//! expired is a full bucket, exactly as if it were still there.
//!
//! A `rediss://` url is reached over TLS (rustls, the aws-lc-rs provider): the server's
//! certificate must chain to `rate_limit.redis_ca_file` (else to the platform's trust store)
//! and name the url's host; `redis_client_cert_file` / `redis_client_key_file` are presented
//! when the server asks for a client certificate. The files are read and checked when the
//! limiter is built, so a bad file stops the start, and again when they change (rotation:
//! a new connection replaces the old one, see [`watch_tls_files`]); a handshake that fails later (unknown
//! CA, wrong name, refused client certificate) is a Redis failure like any other, reported as
//! [`RedisLimitError::metric_label`] `tls`.
//!
//! This module only talks to Redis; what to do when Redis fails (limit locally, log, count)
//! is decided in [`super::RateLimiter`].

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, TlsCertificates};
use residency_config::gateway::RateLimitConfig;
use residency_core::TenantId;
use residency_http::tls_reload::Watch;
use rustls::sign::CertifiedKey;

use crate::client_tls::{is_tls_error, read_certs, read_key};

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

    /// Whether the TLS layer failed: the server's certificate was not trusted or did not
    /// name the host, or the server refused (or required) a client certificate.
    #[must_use]
    pub(crate) fn is_tls(&self) -> bool {
        let Self::Redis(e) = self else {
            return false;
        };
        let Some(cause) = e.source() else {
            return false;
        };
        // The client keeps its cause as an `Arc<dyn Error>`, whose own `source` would skip
        // the error inside (an `io::Error` wrapping the rustls error): look into the `Arc`.
        match cause.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(inner) => is_tls_error(&**inner),
            None => is_tls_error(cause),
        }
    }

    /// A bounded label for logs and the fallback metric: `timeout`, `tls` or `error`.
    #[must_use]
    pub(crate) fn metric_label(&self) -> &'static str {
        if self.is_timeout() {
            "timeout"
        } else if self.is_tls() {
            "tls"
        } else {
            "error"
        }
    }
}

/// A connection to the shared limit store.
pub(crate) struct RedisLimiter {
    /// Swapped for a new one when the TLS files change (see [`watch_tls_files`]); a check
    /// loads it without a lock.
    conn: Arc<ArcSwap<ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    /// The url with its password redacted, for logs.
    url: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Prepares a connection to `cfg.redis_url` (with its TLS files for `rediss://`); it is
    /// opened on first use and re-opened in the background after a failure, so the gateway
    /// starts (and limits locally) while Redis is down. Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// A message naming the url (password redacted) and the reason: no url, a TLS file that
    /// cannot be read or used, or a url the client refuses (validation checked its form).
    pub(crate) fn new(cfg: &RateLimitConfig) -> Result<Self, String> {
        let url = cfg
            .redis_url
            .as_ref()
            .ok_or("rate_limit.redis_url is required with backend = \"redis\"")?;
        let redacted = url.to_string();
        let fail = |e: &dyn std::fmt::Display| format!("redis {redacted}: {e}");
        let client = client(cfg, url.expose()).map_err(|e| fail(&e))?;
        let timeout = cfg.redis_timeout;
        let conn = connection(client, timeout).map_err(|e| fail(&e))?;
        let conn = Arc::new(ArcSwap::from_pointee(conn));
        let files: Vec<PathBuf> = [
            &cfg.redis_ca_file,
            &cfg.redis_client_cert_file,
            &cfg.redis_client_key_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if cfg.redis_uses_tls() && !files.is_empty() {
            watch_tls_files(
                Arc::downgrade(&conn),
                Watch::new(files),
                cfg.clone(),
                redacted.clone(),
            );
        }
        Ok(Self {
            conn,
            script: redis::Script::new(SCRIPT),
            prefix: cfg.redis_key_prefix.clone(),
            timeout,
            url: redacted,
        })
    }

    /// The url, password redacted.
    #[must_use]
    pub(crate) fn url(&self) -> &str {
        &self.url
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
        let mut conn = ConnectionManager::clone(&self.conn.load());
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

/// A lazily connected manager of `client`: opened on first use, re-opened in the background
/// after a failure.
fn connection(client: redis::Client, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        // Every call is bounded by `timeout` in `check_at`; these bound the connection's
        // own work (reconnects, replies that come too late), a little longer so the
        // per-call timeout is the one that fires.
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
        .set_response_timeout(Some(timeout.saturating_mul(2)))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Certificate rotation for `rediss://`: the client reads its CA and client certificate as
/// PEM bytes when it is built, so when a file changes (looked at every second) a new client
/// and connection replace the old ones; checks in flight finish on the old connection. Files
/// that no longer form a usable set are logged once per change and the current connection
/// stays. The task ends with the limiter.
fn watch_tls_files(
    conn: Weak<ArcSwap<ConnectionManager>>,
    watch: Watch,
    cfg: RateLimitConfig,
    redacted: String,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(conn) = conn.upgrade() else { break };
            if !watch.changed() {
                continue;
            }
            let Some(url) = cfg.redis_url.as_ref() else {
                break;
            };
            match client(&cfg, url.expose())
                .and_then(|c| connection(c, cfg.redis_timeout).map_err(|e| e.to_string()))
            {
                Ok(new) => {
                    conn.store(Arc::new(new));
                    tracing::info!(url = %redacted, "redis tls files reloaded");
                }
                Err(e) => tracing::error!(
                    url = %redacted,
                    error = %e,
                    "redis tls files reload failed; keeping the current connection"
                ),
            }
        }
    });
}

/// The client of `url`: plain for `redis://`; for `rediss://` TLS with `redis_ca_file`
/// (else the platform's roots) and the client certificate pair, both checked here.
fn client(cfg: &RateLimitConfig, url: &str) -> Result<redis::Client, String> {
    if !cfg.redis_uses_tls() {
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    const CA: &str = "rate_limit.redis_ca_file";
    const CERT: &str = "rate_limit.redis_client_cert_file";
    const KEY: &str = "rate_limit.redis_client_key_file";
    let root_cert = match &cfg.redis_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca).map_err(|e| format!("{CA} {e}"))? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{CA} {}: {e}", ca.display()))?;
            }
            Some(read(CA, ca)?)
        }
        None => None,
    };
    let client_tls = match (&cfg.redis_client_cert_file, &cfg.redis_client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(|e| format!("{CERT} {e}"))?;
            let der = read_key(key).map_err(|e| format!("{KEY} {e}"))?;
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            CertifiedKey::from_der(chain, der, &provider)
                .map_err(|e| format!("{CERT} and {KEY} do not form a usable pair: {e}"))?;
            Some(ClientTlsConfig {
                client_cert: read(CERT, cert)?,
                client_key: read(KEY, key)?,
            })
        }
        (None, None) => None,
        _ => return Err(format!("{CERT} and {KEY} are set together")),
    };
    // The client builds its rustls config from the process's default provider: make sure it
    // is aws-lc-rs, as everywhere else, whatever other rustls features the build has (a
    // provider installed earlier is kept).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if root_cert.is_none() && client_tls.is_none() {
        // The platform's roots, loaded by the client on each connect.
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    let certs = TlsCertificates {
        client_tls,
        root_cert,
    };
    redis::Client::build_with_tls(url, certs).map_err(|e| e.to_string())
}

/// The bytes of a PEM file the client parses itself (already checked by the caller).
fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    //! These run the script on the Redis at 127.0.0.1:6379 (as CI provides), with explicit
    //! times so the results are exact.

    use super::super::gcra;
    use super::*;
    use residency_config::Secret;

    const URL: &str = "redis://127.0.0.1:6379/";

    fn limiter() -> RedisLimiter {
        RedisLimiter::new(&RateLimitConfig {
            redis_url: Some(Secret::url(URL)),
            redis_key_prefix: format!("residency:test:{}:", uuid::Uuid::new_v4()),
            redis_timeout: Duration::from_secs(2),
            ..RateLimitConfig::default()
        })
        .unwrap()
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
        let mut conn = ConnectionManager::clone(&redis.conn.load());
        let ttl: i64 = redis::cmd("PTTL")
            .arg(redis.key(t))
            .query_async(&mut conn)
            .await
            .unwrap();
        // At most the 60 ms of used capacity plus a second of slack; gone once full again.
        assert!((1..=1_060).contains(&ttl), "{ttl}");
    }

    /// A `rediss://` config with `files` (key, file name in `dir`) set.
    fn tls_config(dir: &Path, files: &[(&str, &str)]) -> RateLimitConfig {
        let mut cfg = RateLimitConfig {
            redis_url: Some(Secret::url("rediss://:tls-pw@127.0.0.1:1/")),
            ..RateLimitConfig::default()
        };
        for (key, name) in files {
            let path = Some(dir.join(name));
            match *key {
                "ca" => cfg.redis_ca_file = path,
                "cert" => cfg.redis_client_cert_file = path,
                _ => cfg.redis_client_key_file = path,
            }
        }
        cfg
    }

    #[tokio::test]
    async fn tls_files_are_checked_when_the_limiter_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned()]).unwrap();
        write("ca.pem", ca.cert.pem());
        write("cert.pem", ca.cert.pem());
        write("key.pem", ca.signing_key.serialize_pem());
        write("other.key", other.signing_key.serialize_pem());
        write("junk.pem", "no pem here\n".to_owned());

        // A usable CA and pair: built (the connection opens on first use).
        let good = [("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem")];
        let limiter = RedisLimiter::new(&tls_config(dir.path(), &good)).unwrap();
        assert_eq!(limiter.url(), "rediss://:***@127.0.0.1:1/");
        // The platform's roots, no client certificate: built too.
        RedisLimiter::new(&tls_config(dir.path(), &[])).unwrap();

        for (files, why) in [
            (&[("ca", "junk.pem")][..], "rate_limit.redis_ca_file"),
            (&[("ca", "missing.pem")], "rate_limit.redis_ca_file"),
            (
                &[("cert", "junk.pem"), ("key", "key.pem")],
                "rate_limit.redis_client_cert_file",
            ),
            (
                &[("cert", "cert.pem"), ("key", "ca.pem")],
                "rate_limit.redis_client_key_file",
            ),
            (
                &[("cert", "cert.pem"), ("key", "other.key")],
                "do not form a usable pair",
            ),
            (&[("cert", "cert.pem")], "are set together"),
        ] {
            let err = RedisLimiter::new(&tls_config(dir.path(), files)).unwrap_err();
            assert!(
                err.starts_with("redis rediss://:***@127.0.0.1:1/: "),
                "{err}"
            );
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("tls-pw"), "{err}");
        }
    }

    #[test]
    fn only_tls_failures_are_labelled_tls() {
        let tls = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert_eq!(RedisLimitError::Redis(tls).metric_label(), "tls");
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(RedisLimitError::Redis(refused).metric_label(), "error");
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            RedisLimitError::Redis(timeout.into()).metric_label(),
            "timeout"
        );
        assert_eq!(RedisLimitError::BadReply.metric_label(), "error");
    }
}
