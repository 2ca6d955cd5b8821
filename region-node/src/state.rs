//! Shared application state: built once at start-up from validated config.

use residency_config::node::RegionConfig;
use residency_core::assertion::Verifier;

use crate::crypto::CredentialCipher;
use crate::db::tenant_tx::Db;

/// Everything handlers share. Immutable after start-up; no locks.
pub struct AppState {
    /// Tenant-scoped database access.
    pub db: Db,
    /// Verifier of the gateway's assertions for this region.
    pub verifier: Verifier,
    /// This node's region.
    pub region: RegionConfig,
    /// Encryption of connection credentials.
    pub(crate) cipher: CredentialCipher,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// The client of this node as a move's target (`[moves]`).
    pub(crate) peers: crate::api::Peers,
    /// `[webhooks]`: the target rules checked when a subscription is created or changed.
    pub(crate) webhooks: residency_config::node::webhooks::WebhooksConfig,
    /// The HTTP client of connector actions (`[connectors]`, `worker.call_timeout`).
    pub(crate) connectors: std::sync::Arc<crate::workflow::connector::Connectors>,
    /// Prometheus page renderer.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}
