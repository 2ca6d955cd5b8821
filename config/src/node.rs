//! Configuration of a region node (`region-node --config node.toml`).
//!
//! ```toml
//! [node]
//! listen = "127.0.0.1:8541"
//! health = "127.0.0.1:8551"     # optional: plain /healthz, /readyz, /metrics only
//!
//! [region]
//! id = "eu"
//! display_name = "Europe"
//! location = "Frankfurt, DE"
//!
//! [database]
//! url = "postgres://eu_app:...@127.0.0.1:5432/residency_eu"        # app role (NOBYPASSRLS)
//! owner_url = "postgres://eu_owner:...@127.0.0.1:5432/residency_eu" # migrations only
//! auditor_role = "eu_auditor"
//!
//! [[assertion.keys]]
//! kid = "eu-1"
//! alg = "HS256"
//! key_file = "keys/eu-assertion.key"
//!
//! [credentials]
//! key_file = "keys/eu-credentials.key"
//!
//! [tracing]                     # optional OTLP span export, as in the gateway config
//! # otlp_endpoint = "http://127.0.0.1:4318"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::assertion::AssertionKeyConfig;
use crate::load::{check_file, check_postgres_url, resolve, Validate};
use crate::pg_url::check_transport;
use crate::{ConnectionUrl, Problem, Secret};
use residency_core::RegionId;

pub mod webhooks;
mod worker;
pub use worker::{ConnectorConfig, WorkerConfig};

/// The whole node configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Listener settings.
    pub node: ListenConfig,
    /// Which region this node serves.
    pub region: RegionConfig,
    /// Database connections.
    pub database: DatabaseConfig,
    /// Keys accepted for the gateway's internal assertion.
    pub assertion: AssertionConfig,
    /// Encryption of connection credentials at rest.
    pub credentials: CredentialsConfig,
    /// Optional TLS for the node listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Connection limits of the node listener.
    #[serde(default)]
    pub limits: NodeLimits,
    /// Tenant moves: how this node, as a move's target, reaches source nodes.
    #[serde(default)]
    pub moves: MovesConfig,
    /// Optional OTLP span export (`[tracing]`, as in the gateway config); off without
    /// `otlp_endpoint`.
    #[serde(default)]
    pub tracing: crate::tracing::TracingConfig,
    /// Customer webhook deliveries (`[webhooks]`, on by default).
    #[serde(default)]
    pub webhooks: webhooks::WebhooksConfig,
    /// The workflow worker (`[worker]`; on by default).
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Per-connector overrides (`[connectors.<id>] base_url`), by catalogue connector id.
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorConfig>,
}

/// `[moves]`: this node as the target of a tenant move pulls the tenant's rows from a node of
/// the source region. Plain `http` is used only to a loopback address; an `https` source is
/// trusted through `peer_ca_file` only (no system roots), with an optional client certificate
/// for sources whose `tls.client_ca_file` requires one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesConfig {
    /// PEM CA certificate(s) of the other regions' nodes. Without it, https sources are
    /// refused.
    pub peer_ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to source nodes.
    pub client_cert_file: Option<PathBuf>,
    /// Its PEM private key.
    pub client_key_file: Option<PathBuf>,
}

/// `[limits]`: connection limits of the node listener (the drain time is
/// `node.shutdown_grace`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeLimits {
    /// Concurrent connections; one more is closed as soon as it is accepted. Keep it above
    /// the gateways' pooled connections to this node (`limits.upstream_pool_idle` of each).
    pub max_connections: usize,
    /// Time a client has to send a complete HTTP/1 request head, and to finish a TLS
    /// handshake.
    #[serde(with = "crate::duration::serde_str")]
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 256,
        }
    }
}

impl NodeLimits {
    /// Every problem of `[limits]`.
    fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_connections == 0 {
            out.push(Problem::new(
                "limits.max_connections",
                "must be greater than 0",
            ));
        }
        if self.header_read_timeout.is_zero() {
            out.push(Problem::new(
                "limits.header_read_timeout",
                "must be greater than 0",
            ));
        }
        if self.h2_max_concurrent_streams == 0 {
            out.push(Problem::new(
                "limits.h2_max_concurrent_streams",
                "must be greater than 0",
            ));
        }
        out
    }
}

/// `[node]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A second, plain-HTTP listener that serves only `GET /healthz`, `GET /readyz` and
    /// `GET /metrics` (everything else is a 404 problem), so kubelet probes and a metrics
    /// scraper reach them while the main listener requires a client certificate (mTLS).
    /// None when absent: the main listener serves them (without mTLS, or with a client
    /// certificate).
    #[serde(default)]
    pub health: Option<SocketAddr>,
    /// Largest accepted request body in bytes. Default 10 MiB, the gateway's default
    /// (SPEC §6). Keep it at least the gateway's `limits.max_body_bytes`: the gateway then
    /// always refuses an oversized body itself (413) before the node would cut the upload off
    /// mid-stream, which the gateway could only report as a failed upstream (502).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Whole-request timeout.
    #[serde(
        default = "default_request_timeout",
        with = "crate::duration::serde_str"
    )]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default = "default_grace", with = "crate::duration::serde_str")]
    pub shutdown_grace: Duration,
}

fn default_max_body() -> usize {
    10 * 1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}

/// `[region]`: identity of the region this node serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region id, e.g. `eu`.
    pub id: RegionId,
    /// Human name, e.g. `Europe`.
    #[serde(default)]
    pub display_name: String,
    /// Where the data physically lives, e.g. `Frankfurt, DE`.
    #[serde(default)]
    pub location: String,
    /// The other regions of this deployment. An assertion addressed to one of them is answered
    /// `421 Misdirected Request` (the gateway misrouted); any other audience is a plain 401.
    #[serde(default)]
    pub peers: Vec<RegionId>,
}

/// `[database]`: the region's own Postgres.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL of the application role (non-superuser, `NOBYPASSRLS`, owns nothing).
    /// `Debug` masks its password.
    pub url: Secret<ConnectionUrl>,
    /// Connection URL of the owner role; used only by `region-node migrate`.
    #[serde(default)]
    pub owner_url: Option<Secret<ConnectionUrl>>,
    /// Name of the read-only auditor role that migrations grant to.
    #[serde(default)]
    pub auditor_role: Option<String>,
    /// Allow `sslmode=disable` to a host that is not loopback (both URLs); without it such a
    /// config is refused at start.
    #[serde(default)]
    pub allow_insecure_transport: bool,
    /// Apply pending migrations with `owner_url` at start.
    #[serde(default)]
    pub migrate_on_start: bool,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Timeout to open a new connection.
    #[serde(
        default = "default_connect_timeout",
        with = "crate::duration::serde_str"
    )]
    pub connect_timeout: Duration,
    /// Timeout to check a connection out of the pool.
    #[serde(
        default = "default_checkout_timeout",
        with = "crate::duration::serde_str"
    )]
    pub checkout_timeout: Duration,
    /// `statement_timeout` applied to every connection.
    #[serde(
        default = "default_statement_timeout",
        with = "crate::duration::serde_str"
    )]
    pub statement_timeout: Duration,
}

fn default_pool_size() -> u32 {
    16
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_checkout_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[assertion]`: keys this node accepts (several during rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// Accepted keys by `kid`.
    pub keys: Vec<AssertionKeyConfig>,
}

/// `[credentials]`: key for encrypting connection credentials at rest (AES-256-GCM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Key id stored beside each ciphertext, so keys can be rotated.
    #[serde(default = "default_cred_kid")]
    pub kid: String,
    /// File holding exactly 32 raw key bytes.
    pub key_file: PathBuf,
}

fn default_cred_kid() -> String {
    "k1".to_owned()
}

/// `[tls]`: serve HTTPS instead of plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// When set, clients (the gateway) must present a certificate signed by this CA (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change, which reloads them
    /// without dropping connections (`SIGHUP` reloads too). `"0s"`: only on `SIGHUP`.
    #[serde(
        default = "crate::gateway::default_reload_interval",
        with = "crate::duration::serde_str"
    )]
    pub reload_interval: Duration,
}

/// Whether `name` is a plain Postgres identifier this project is willing to interpolate into
/// DDL (`[a-z_][a-z0-9_]{0,62}`); role names in migrations are always checked with this first.
#[must_use]
pub fn is_simple_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl Validate for NodeConfig {
    fn resolve_paths(&mut self, base: &Path) {
        for k in &mut self.assertion.keys {
            k.resolve_paths(base);
        }
        resolve(base, &mut self.credentials.key_file);
        if let Some(ca) = &mut self.webhooks.ca_file {
            resolve(base, ca);
        }
        for f in [
            &mut self.moves.peer_ca_file,
            &mut self.moves.client_cert_file,
            &mut self.moves.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            resolve(base, f);
        }
        if let Some(tls) = &mut self.tls {
            resolve(base, &mut tls.cert_file);
            resolve(base, &mut tls.key_file);
            if let Some(ca) = &mut tls.client_ca_file {
                resolve(base, ca);
            }
        }
    }

    fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.node.health == Some(self.node.listen) && self.node.listen.port() != 0 {
            out.push(Problem::new("node.health", "must differ from node.listen"));
        }
        if self.node.max_body_bytes == 0 {
            out.push(Problem::new(
                "node.max_body_bytes",
                "must be greater than 0",
            ));
        }
        const ALLOW: &str = "database.allow_insecure_transport";
        let allow = self.database.allow_insecure_transport;
        check_postgres_url("database.url", &self.database.url, &mut out);
        check_transport("database.url", &self.database.url, allow, ALLOW, &mut out);
        if let Some(owner) = &self.database.owner_url {
            check_postgres_url("database.owner_url", owner, &mut out);
            check_transport("database.owner_url", owner, allow, ALLOW, &mut out);
        }
        if self.database.migrate_on_start && self.database.owner_url.is_none() {
            out.push(Problem::new(
                "database.owner_url",
                "required when database.migrate_on_start is true",
            ));
        }
        if let Some(r) = &self.database.auditor_role {
            if !is_simple_identifier(r) {
                out.push(Problem::new(
                    "database.auditor_role",
                    "must match [a-z_][a-z0-9_]{0,62}",
                ));
            }
        }
        if self.database.pool_size == 0 || self.database.pool_size > 1000 {
            out.push(Problem::new(
                "database.pool_size",
                "must be between 1 and 1000",
            ));
        }
        if self.region.peers.contains(&self.region.id) {
            out.push(Problem::new(
                "region.peers",
                format!("must not name this node's own region {}", self.region.id),
            ));
        }
        if self.assertion.keys.is_empty() {
            out.push(Problem::new(
                "assertion.keys",
                "at least one key is required",
            ));
        }
        for (i, k) in self.assertion.keys.iter().enumerate() {
            out.extend(k.validate(&format!("assertion.keys[{i}]")));
        }
        match std::fs::metadata(&self.credentials.key_file) {
            Ok(m) if m.len() != 32 => out.push(Problem::new(
                "credentials.key_file",
                format!(
                    "{} must hold exactly 32 bytes, found {}",
                    self.credentials.key_file.display(),
                    m.len()
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Problem::new(
                "credentials.key_file",
                format!("cannot read {}: {e}", self.credentials.key_file.display()),
            )),
        }
        if let Some(tls) = &self.tls {
            check_file("tls.cert_file", &tls.cert_file, &mut out);
            check_file("tls.key_file", &tls.key_file, &mut out);
            if let Some(ca) = &tls.client_ca_file {
                check_file("tls.client_ca_file", ca, &mut out);
            }
        }
        let m = &self.moves;
        for (key, f) in [
            ("moves.peer_ca_file", &m.peer_ca_file),
            ("moves.client_cert_file", &m.client_cert_file),
            ("moves.client_key_file", &m.client_key_file),
        ] {
            if let Some(f) = f {
                check_file(key, f, &mut out);
            }
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            out.push(Problem::new(
                "moves.client_cert_file",
                "set both moves.client_cert_file and moves.client_key_file, or neither",
            ));
        }
        if m.client_cert_file.is_some() && m.peer_ca_file.is_none() {
            out.push(Problem::new(
                "moves.peer_ca_file",
                "required with a client certificate: it is used for https sources only",
            ));
        }
        out.extend(self.limits.validate());
        out.extend(self.tracing.validate());
        out.extend(self.webhooks.validate());
        if let Some(ca) = &self.webhooks.ca_file {
            check_file("webhooks.ca_file", ca, &mut out);
        }
        out.extend(self.worker.validate());
        out.extend(worker::validate_connectors(self.connectors.iter()));
        out
    }
}

#[cfg(test)]
mod tests;
