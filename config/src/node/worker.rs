//! `[worker]` and `[connectors.<id>]`: the region node's workflow worker and how it reaches
//! connectors.
//!
//! ```toml
//! [worker]
//! enabled = true          # run workflows on this node (default)
//! concurrency = 4         # executions run at once by this node (≤ database.pool_size / 2)
//! poll_interval = "1s"    # how often the queue is polled when idle
//! lease = "30s"           # a claimed execution is this node's for this long (renewed while a step runs)
//! max_attempts = 5        # claims of one execution's job before the run is failed
//! call_timeout = "30s"    # upper bound of one connector call (a step's own timeout may be shorter)
//!
//! [connectors.slack]
//! base_url = "http://127.0.0.1:9900/slack"   # instead of the catalogue's https://slack.com/api
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::Problem;

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Whether this node runs workflows (several nodes of a region may; leases keep each
    /// execution on one at a time).
    pub enabled: bool,
    /// Executions run at once; at most half of `database.pool_size` (each running execution
    /// holds a connection at times, requests need the rest), lowered with a warning otherwise.
    pub concurrency: usize,
    /// Polling interval of the queue when it was empty.
    #[serde(with = "crate::duration::serde_str")]
    pub poll_interval: Duration,
    /// Lease of a claimed execution; renewed while a step runs, so a lost node's execution is
    /// claimed again by another node once it runs out.
    #[serde(with = "crate::duration::serde_str")]
    pub lease: Duration,
    /// Claims of one execution's job (a lost lease counts) before the run is failed.
    pub max_attempts: u32,
    /// Upper bound of one connector call.
    #[serde(with = "crate::duration::serde_str")]
    pub call_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            call_timeout: Duration::from_secs(30),
        }
    }
}

impl WorkerConfig {
    /// Every problem of `[worker]`.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.concurrency == 0 || self.concurrency > 256 {
            out.push(Problem::new(
                "worker.concurrency",
                "must be between 1 and 256",
            ));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(60) {
            out.push(Problem::new(
                "worker.poll_interval",
                "must be greater than 0 and at most 60s",
            ));
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(3600) {
            out.push(Problem::new("worker.lease", "must be between 1s and 1h"));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            out.push(Problem::new(
                "worker.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.call_timeout.is_zero() || self.call_timeout > Duration::from_secs(300) {
            out.push(Problem::new(
                "worker.call_timeout",
                "must be greater than 0 and at most 300s",
            ));
        }
        out
    }
}

/// `[connectors.<id>]`: overrides of one catalogue connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Base URL the connector's action paths are appended to: `https`, or plain `http` to a
    /// loopback host (a local fake or sandbox).
    pub base_url: String,
}

/// Every problem of `[connectors]`.
pub(crate) fn validate_connectors<'a>(
    connectors: impl Iterator<Item = (&'a String, &'a ConnectorConfig)>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (id, c) in connectors {
        let valid_id = !id.is_empty()
            && id.len() <= 63
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_id {
            out.push(Problem::new(
                format!("connectors.{id}"),
                "a connector id is [a-z][a-z0-9_]{0,62}",
            ));
        }
        match crate::gateway::check_remote_url(&c.base_url) {
            Ok(u) if u.query().is_none() && u.fragment().is_none() => {}
            Ok(_) => out.push(Problem::new(
                format!("connectors.{id}.base_url"),
                "must not have a query or fragment",
            )),
            Err(why) => out.push(Problem::new(format!("connectors.{id}.base_url"), why)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_limits_are_named() {
        assert!(WorkerConfig::default().validate().is_empty());
        let bad = WorkerConfig {
            concurrency: 0,
            poll_interval: Duration::ZERO,
            lease: Duration::from_millis(10),
            max_attempts: 0,
            call_timeout: Duration::from_secs(301),
            ..WorkerConfig::default()
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "worker.concurrency",
                "worker.poll_interval",
                "worker.lease",
                "worker.max_attempts",
                "worker.call_timeout"
            ]
        );
    }

    #[test]
    fn connector_urls_are_https_or_loopback_http() {
        let c = |u: &str| ConnectorConfig {
            base_url: u.to_owned(),
        };
        let ok = [
            ("slack".to_owned(), c("https://slack.com/api")),
            ("hubspot".to_owned(), c("http://127.0.0.1:9/hubspot")),
        ];
        assert!(validate_connectors(ok.iter().map(|(k, v)| (k, v))).is_empty());
        let bad = [
            ("slack".to_owned(), c("http://slack.com/api")),
            ("Bad".to_owned(), c("https://x.example/?q=1")),
        ];
        let keys: Vec<String> = validate_connectors(bad.iter().map(|(k, v)| (k, v)))
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "connectors.slack.base_url",
                "connectors.Bad",
                "connectors.Bad.base_url"
            ]
        );
    }
}
