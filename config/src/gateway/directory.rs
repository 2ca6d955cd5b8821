//! `[directory]`: where tenants and API keys come from (a file or the directory database).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::load::check_file;
use crate::pg_url::check_transport;
use crate::secret::{ConnectionUrl, Secret};
use crate::Problem;

/// `[directory]`: the source of tenants and API keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum DirectorySource {
    /// A TOML file in the [`DirectoryFile`](super::DirectoryFile) format, for small and test deployments.
    File {
        /// Path of the file.
        path: PathBuf,
    },
    /// The global directory database, cached in memory and invalidated by `LISTEN/NOTIFY`.
    Postgres {
        /// Connection URL (may carry a password; `Debug` masks it).
        url: Secret<ConnectionUrl>,
        /// How long cached tenants keep being served while the directory is unreachable
        /// (default 10m, at most 24h); after that they fail closed with 503 as well.
        #[serde(default = "default_max_stale", with = "crate::duration::serde_str")]
        max_stale: Duration,
        /// How long "no such tenant / api key" is remembered (default 5s, at most 5m).
        #[serde(default = "default_negative_ttl", with = "crate::duration::serde_str")]
        negative_ttl: Duration,
        /// Timeout of one directory query (default 2s, at most 30s).
        #[serde(
            default = "default_directory_timeout",
            with = "crate::duration::serde_str"
        )]
        timeout: Duration,
        /// Most "no such tenant / api key" answers remembered at once (default 100000).
        #[serde(default = "default_negative_entries")]
        negative_entries: usize,
        /// Allow `sslmode=disable` to a host that is not loopback, for `url` and
        /// `admin.directory_url`; without it such a config is refused at start.
        #[serde(default)]
        allow_insecure_transport: bool,
        /// `full` (default): every tenant is loaded at start and kept in memory; `bounded`:
        /// tenants are loaded on their first request and at most `capacity` are kept.
        #[serde(default)]
        mode: DirectoryMode,
        /// Most tenants cached at once in `bounded` mode (default 100000); refused with
        /// `mode = "full"`, which holds every tenant.
        #[serde(default)]
        capacity: Option<usize>,
    },
}

/// `directory.mode`: how many tenants the gateway keeps in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryMode {
    /// Every tenant, loaded at start (about 200 bytes each).
    #[default]
    Full,
    /// At most `directory.capacity` tenants, loaded on a miss and evicted when unused.
    Bounded,
}

/// Default of `directory.capacity` in bounded mode.
pub(super) const DEFAULT_CAPACITY: usize = 100_000;
/// Least `directory.capacity`: fewer would evict tenants that requests in flight still need.
pub(super) const MIN_CAPACITY: usize = 16;
/// Most `directory.capacity` (a 1,000,000,000-tenant directory is not what bounded mode is
/// for: at about 200 bytes each that is 200 GB).
pub(super) const MAX_CAPACITY: usize = 100_000_000;

impl DirectorySource {
    /// The tenant capacity of a bounded Postgres directory (`None`: every tenant is held).
    #[must_use]
    pub fn bounded_capacity(&self) -> Option<usize> {
        match self {
            Self::Postgres {
                mode: DirectoryMode::Bounded,
                capacity,
                ..
            } => Some(capacity.unwrap_or(DEFAULT_CAPACITY)),
            _ => None,
        }
    }
}

/// The key allowing clear text to a remote directory (both of its URLs).
pub(super) const ALLOW_INSECURE_KEY: &str = "directory.allow_insecure_transport";

fn default_max_stale() -> Duration {
    Duration::from_secs(600)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_directory_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_negative_entries() -> usize {
    100_000
}

impl DirectorySource {
    /// Every problem of `[directory]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match self {
            Self::File { path } => check_file("directory.path", path, &mut out),
            Self::Postgres {
                url,
                max_stale,
                negative_ttl,
                timeout,
                negative_entries,
                allow_insecure_transport,
                mode,
                capacity,
            } => {
                match url.expose().parse::<url::Url>() {
                    Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
                    Ok(_) => out.push(Problem::new("directory.url", "must be a postgres:// url")),
                    // The parser's message does not echo the input, so no password leaks.
                    Err(e) => out.push(Problem::new("directory.url", format!("not a url: {e}"))),
                }
                check_transport(
                    "directory.url",
                    url,
                    *allow_insecure_transport,
                    ALLOW_INSECURE_KEY,
                    &mut out,
                );
                for (key, d, max, max_text) in [
                    ("directory.max_stale", *max_stale, 86_400, "24h"),
                    ("directory.negative_ttl", *negative_ttl, 300, "5m"),
                    ("directory.timeout", *timeout, 30, "30s"),
                ] {
                    if d.is_zero() || d > Duration::from_secs(max) {
                        out.push(Problem::new(
                            key,
                            format!("must be greater than 0 and at most {max_text}"),
                        ));
                    }
                }
                if *negative_entries == 0 {
                    out.push(Problem::new(
                        "directory.negative_entries",
                        "must be greater than 0",
                    ));
                }
                match (mode, capacity) {
                    (DirectoryMode::Full, Some(_)) => out.push(Problem::new(
                        "directory.capacity",
                        "only applies with mode = \"bounded\" (mode \"full\" holds every tenant)",
                    )),
                    (DirectoryMode::Bounded, Some(n))
                        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(n) =>
                    {
                        out.push(Problem::new(
                            "directory.capacity",
                            format!("must be between {MIN_CAPACITY} and {MAX_CAPACITY}"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        out
    }
}
