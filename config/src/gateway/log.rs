//! `[log]`: what the gateway logs beyond its own events.
//!
//! ```toml
//! [log]
//! access = false      # one line per request on target `residency::access`; RESIDENCY__LOG__ACCESS
//! ```
//!
//! The line format (`text` or `json`) is not configured here: it is the binary's
//! `--log-format` flag (or `RESIDENCY_LOG_FORMAT`), so a config problem can be reported in the
//! chosen format, and the level filter is `RUST_LOG`. A value of the wrong type
//! (`access = "yes"`) and an unknown key are refused by name when the file is read.

use serde::Deserialize;

/// `[log]` of the gateway config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// One access log line per request on the public listener (default false): request id,
    /// tenant, region, credential kind, method, route template, status, bytes sent, duration
    /// and upstream time, as an `info` event on target `residency::access`.
    pub access: bool,
}
