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
}

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
        out
    }
}
