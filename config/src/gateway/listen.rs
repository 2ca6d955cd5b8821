//! `[listen]`: the public and admin listener addresses.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::Problem;

/// `[listen]`: where the gateway accepts connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// The public listener for customer traffic; port 0 picks a free port.
    pub public: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`); none when absent.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// Single-threaded runtimes, one thread each, that serve the public listener's
    /// connections (each connection on one of them, in turn); 0 serves them on the process's
    /// work-stealing runtime.
    #[serde(default)]
    pub public_cores: usize,
}

/// The most per-core runtimes `listen.public_cores` may ask for.
pub(super) const MAX_PUBLIC_CORES: usize = 1024;

impl ListenConfig {
    /// `listen.admin` must not be the public address.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.admin == Some(self.public) && self.public.port() != 0 {
            out.push(Problem::new(
                "listen.admin",
                "must differ from listen.public",
            ));
        }
        if self.public_cores > MAX_PUBLIC_CORES {
            out.push(Problem::new(
                "listen.public_cores",
                format!("must be at most {MAX_PUBLIC_CORES} (0 = the process's runtime)"),
            ));
        }
        out
    }
}
