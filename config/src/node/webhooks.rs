//! `[webhooks]`: customer webhook deliveries from this region's node.
//!
//! ```toml
//! [webhooks]
//! enabled = true                 # run the delivery worker (default true)
//! allow_http = false             # plain http targets (tests, a closed network only)
//! allow_private_targets = false  # private, loopback, link-local, CGNAT… targets
//! max_attempts = 8               # then the delivery is dead-lettered
//! backoff_base = "5s"            # retry n waits a random time in [0, min(cap, base·2^(n-1))]
//! backoff_cap = "1h"
//! attempt_timeout = "10s"        # connect + TLS + request + response, per attempt
//! concurrency = 8                # deliveries in flight at once on this node
//! poll_interval = "1s"           # pause between claims when nothing was due
//! # ca_file = "webhook-ca.pem"   # extra trust roots for https targets (else the platform's)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Problem;

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Whether this node runs the delivery worker. Subscriptions and events are recorded
    /// either way; deliveries wait for a node of the region that runs it.
    pub enabled: bool,
    /// Accept `http://` targets. Off by default: signatures do not hide the payload.
    pub allow_http: bool,
    /// Accept targets whose address is private (RFC 1918, fc00::/7), loopback, link-local
    /// (169.254/16, fe80::/10), unspecified, broadcast, CGNAT (100.64/10) or multicast.
    /// Off by default: a customer must not make this node call into its own network.
    pub allow_private_targets: bool,
    /// Attempts before a delivery is dead-lettered (`dead`).
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; doubled per attempt (full jitter).
    #[serde(with = "crate::duration::serde_str")]
    pub backoff_base: Duration,
    /// The largest backoff ceiling.
    #[serde(with = "crate::duration::serde_str")]
    pub backoff_cap: Duration,
    /// How long one attempt may take, connect to last response byte.
    #[serde(with = "crate::duration::serde_str")]
    pub attempt_timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Pause between claims when none was due.
    #[serde(with = "crate::duration::serde_str")]
    pub poll_interval: Duration,
    /// PEM CA certificates trusted for `https` targets instead of the platform's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_http: false,
            allow_private_targets: false,
            max_attempts: 8,
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            ca_file: None,
        }
    }
}

impl WebhooksConfig {
    /// Every problem of `[webhooks]`.
    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !(1..=100).contains(&self.max_attempts) {
            out.push(Problem::new(
                "webhooks.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.backoff_cap < self.backoff_base {
            out.push(Problem::new(
                "webhooks.backoff_cap",
                "must be at least webhooks.backoff_base",
            ));
        }
        if self.attempt_timeout.is_zero() || self.attempt_timeout > Duration::from_secs(120) {
            out.push(Problem::new(
                "webhooks.attempt_timeout",
                "must be between 1ms and 120s",
            ));
        }
        if !(1..=1000).contains(&self.concurrency) {
            out.push(Problem::new(
                "webhooks.concurrency",
                "must be between 1 and 1000",
            ));
        }
        if self.poll_interval.is_zero() {
            out.push(Problem::new(
                "webhooks.poll_interval",
                "must be greater than 0",
            ));
        }
        out
    }
}
