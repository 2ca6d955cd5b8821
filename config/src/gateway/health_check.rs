//! `[health_check]`: active checks of every upstream.

use std::time::Duration;

use serde::Deserialize;

use crate::Problem;

/// `[health_check]`: active `GET /readyz` checks of every upstream.
///
/// They feed the same health state as passive ejection: an upstream is picked only while it
/// passes its checks and is not ejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Whether upstreams are checked at all (default true).
    pub enabled: bool,
    /// Time between two checks of one upstream (default 2s).
    #[serde(with = "crate::duration::serde_str")]
    pub interval: Duration,
    /// Time one check may take (default 1s, less than `interval`).
    #[serde(with = "crate::duration::serde_str")]
    pub timeout: Duration,
    /// Consecutive failed checks before an upstream is skipped (default 2).
    pub unhealthy_threshold: u32,
    /// Consecutive passed checks before a skipped upstream is used again (default 1).
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}

impl HealthCheckConfig {
    /// Every problem of `[health_check]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.interval < Duration::from_millis(100) {
            out.push(Problem::new(
                "health_check.interval",
                "must be at least 100ms",
            ));
        }
        if self.timeout.is_zero() || self.timeout >= self.interval {
            out.push(Problem::new(
                "health_check.timeout",
                "must be greater than 0 and less than health_check.interval",
            ));
        }
        for (key, n) in [
            ("health_check.unhealthy_threshold", self.unhealthy_threshold),
            ("health_check.healthy_threshold", self.healthy_threshold),
        ] {
            if n == 0 {
                out.push(Problem::new(key, "must be at least 1"));
            }
        }
        out
    }
}
