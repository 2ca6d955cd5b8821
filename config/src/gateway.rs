//! Configuration of the gateway (`residency-gateway --config gateway.toml`) and the format of
//! its file-backed directory.
//!
//! ```toml
//! [listen]
//! public = "0.0.0.0:8443"
//! admin = "127.0.0.1:8480"          # /healthz, /readyz, /metrics; optional
//! public_cores = 0                  # N > 0: N one-thread runtimes serve the public connections
//!
//! [tls]                             # optional; plain HTTP without it (local use only)
//! cert_file = "tls/gateway.pem"
//! key_file = "tls/gateway.key"
//! reload_interval = "10s"           # file-change check; SIGHUP reloads too; "0s": SIGHUP only
//! # domains_dir = "tls/domains"     # custom domains: <domains_dir>/<cert_ref>/tls.crt, tls.key
//!
//! [[issuers]]
//! issuer = "https://idp.example.com/"
//! audience = "residency-api"
//! jwks_file = "keys/jwks.json"      # or jwks_url = "https://idp.example.com/jwks.json", or
//!                                   # neither: OIDC discovery from the issuer URL
//! # ca_file = "idp-ca.pem"          # https trust for jwks_url/discovery; default: system roots
//! algorithms = ["ES256"]
//! leeway = "5s"
//!
//! [claims]                          # defaults shown
//! subject = "sub"
//! tenant = "tenant_id"
//! role = "role"
//!
//! [directory]
//! source = "file"
//! path = "directory.toml"
//! # or: the global directory database, cached in memory and kept fresh by LISTEN/NOTIFY
//! # source = "postgres"
//! # url = "postgres://directory_reader@10.0.0.9/directory"   # RESIDENCY__DIRECTORY__URL
//! # max_stale = "10m"      # serve cached tenants this long while the directory is down
//! # negative_ttl = "5s"    # remember "no such tenant/key" this long
//! # timeout = "2s"         # one directory query
//!
//! [admin]                           # the admin API on listen.admin; optional
//! token_file = "secrets/admin.token"  # or admin.token via RESIDENCY__ADMIN__TOKEN
//! token_name = "ops"                # recorded as actor `admin:ops` in the directory history
//! # directory_url = "postgres://directory_writer@10.0.0.9/directory"  # RESIDENCY__ADMIN__DIRECTORY_URL
//! #   the writer role of a postgres directory: required when the admin api is enabled
//! #   (listen.admin and a token); a different role than directory.url (the reader)
//!
//! [health_check]                    # active checks of every upstream; defaults shown
//! interval = "2s"
//! timeout = "1s"
//! unhealthy_threshold = 2           # consecutive failed GET /readyz before it is skipped
//! healthy_threshold = 1             # consecutive passed checks before it is used again
//!
//! [[regions]]
//! id = "eu"
//! display_name = "Europe"
//! location = "Frankfurt, DE"
//! upstreams = ["https://127.0.0.1:8542"] # or http:// on a trusted network
//! assertion = { kid = "eu-1", alg = "HS256", key_file = "keys/eu-assertion.key" }
//! ca_file = "tls/ca.pem"            # required for https upstreams: the CA of the node certs
//! client_cert_file = "tls/gateway-client.pem"   # optional pair: mTLS to the nodes
//! client_key_file = "tls/gateway-client.key"
//!
//! [log]                             # defaults shown; see `LogConfig`
//! access = false                    # one line per request, target residency::access
//!
//! [tracing]                         # optional OTLP span export; see `TracingConfig`
//! # otlp_endpoint = "http://127.0.0.1:4318"   # off when absent
//! # service_name = "residency-gateway"
//! # sample_ratio = 1.0
//!
//! [audit]                           # optional: GET /admin/v1/audit; see `AuditSection`
//! timeout = "60s"
//! [audit.regions.eu]                # one entry per configured region
//! database_url = "postgres://eu_auditor@db.eu/region_eu"   # the read-only auditor role
//! app_role = "eu_app"
//!
//! [limits]                          # defaults shown
//! max_body_bytes = 10485760
//! max_header_bytes = 16384
//! header_read_timeout = "10s"      # also bounds an unfinished HTTP/2 header block
//! idle_timeout = "60s"              # no request for that long: GOAWAY (h2) / close (HTTP/1)
//! park_idle_after = "1s"            # HTTP/1 idle that long: buffers freed until it sends again
//! max_connection_age = "1h"         # graceful close after 90-100 % of this, then shutdown_grace
//! max_connections = 10000
//! max_connections_per_ip = 256      # more from one client address are closed at once
//!
//! [rate_limit]                      # defaults shown; see `RateLimitConfig`
//! backend = "local"                 # or "redis": one limit shared by every replica
//! burst = "60s"                     # a full minute's quota may arrive at once
//! # redis_url = "rediss://:password@redis.internal:6380/0"   # RESIDENCY__RATE_LIMIT__REDIS_URL
//! # redis_ca_file = "tls/redis-ca.pem"  # the CA of the Redis certificate; else system roots
//! # redis_client_cert_file = "tls/redis-client.pem"  # optional pair, for tls-auth-clients
//! # redis_client_key_file = "tls/redis-client.key"
//! # allow_insecure_transport = false  # true allows redis:// to a non-loopback host
//! redis_timeout = "50ms"
//! redis_key_prefix = "residency:ratelimit:"
//! ```
//!
//! The directory file (`[directory] source = "file"`) is described by [`DirectoryFile`]; the
//! CLI writes it and the gateway reads it, so both use these types.
//!
//! Each section lives in its own module with its own `validate()`, which names every problem
//! by its key path; [`GatewayConfig`]'s validation runs them in file order and adds the checks
//! that span sections.
//!
//! This module only describes and checks configuration; the gateway crate opens the files,
//! sockets and keys after validation succeeded.

use std::path::Path;

use serde::Deserialize;

use crate::load::{resolve, Validate};
use crate::Problem;

mod admin;
mod audit;
mod claims;
mod directory;
mod health_check;
mod issuers;
mod limits;
mod listen;
mod log;
mod rate_limit;
mod regions;
mod signup;
#[cfg(test)]
mod tests;
mod tls;

pub use admin::AdminConfig;
pub use audit::{AuditRegion, AuditSection};
pub use claims::ClaimNames;
pub use directory::{DirectoryMode, DirectorySource};
pub use health_check::HealthCheckConfig;
pub use issuers::{check_remote_url, IssuerConfig};
pub use limits::Limits;
pub use listen::ListenConfig;
pub use log::LogConfig;
pub use rate_limit::{RateLimitBackend, RateLimitConfig};
pub use regions::RegionEntry;
pub use signup::{
    is_blocked_domain_entry, LlmConfig, SignupConfig, DEFAULT_SIGNUPS_PER_IP_PER_MIN,
};
pub(crate) use tls::default_reload_interval;
pub use tls::TlsConfig;

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listener addresses.
    pub listen: ListenConfig,
    /// TLS for the public listener; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Identity providers whose JWTs are accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Names of the claims the gateway reads from a verified JWT.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Where tenants and API keys come from.
    pub directory: DirectorySource,
    /// The residency regions and their region nodes. Regions are data: a new one is an entry.
    pub regions: Vec<RegionEntry>,
    /// Size limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// The admin API (token and provisioning).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Active health checks of the region nodes.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Per-tenant rate limiting.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// `GET /admin/v1/audit`: the auditor role of every region database; the endpoint
    /// answers 404 `audit_not_configured` without it.
    #[serde(default)]
    pub audit: Option<AuditSection>,
    /// The public signup pipeline (`POST /v1/signups`); absent: no signup route.
    #[serde(default)]
    pub signup: Option<SignupConfig>,
    /// The access log switch (`[log] access`).
    #[serde(default)]
    pub log: LogConfig,
    /// Optional OTLP span export (`[tracing]`); off without `otlp_endpoint`.
    #[serde(default)]
    pub tracing: crate::tracing::TracingConfig,
}

impl Validate for GatewayConfig {
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            resolve(base, &mut tls.cert_file);
            resolve(base, &mut tls.key_file);
            if let Some(dir) = &mut tls.domains_dir {
                resolve(base, dir);
            }
        }
        for i in &mut self.issuers {
            for f in [&mut i.jwks_file, &mut i.ca_file].into_iter().flatten() {
                resolve(base, f);
            }
        }
        if let DirectorySource::File { path } = &mut self.directory {
            resolve(base, path);
        }
        for r in &mut self.regions {
            r.assertion.resolve_paths(base);
            for f in [
                &mut r.ca_file,
                &mut r.client_cert_file,
                &mut r.client_key_file,
            ]
            .into_iter()
            .flatten()
            {
                resolve(base, f);
            }
        }
        if let Some(f) = &mut self.admin.token_file {
            resolve(base, f);
        }
        self.rate_limit.resolve_paths(base);
    }

    fn validate(&self) -> Vec<Problem> {
        let mut out = self.listen.validate();
        if let Some(tls) = &self.tls {
            out.extend(tls.validate());
        }
        out.extend(issuers::validate(&self.issuers));
        out.extend(self.claims.validate());
        out.extend(self.directory.validate());
        out.extend(regions::validate(&self.regions));
        if let Some(audit) = &self.audit {
            out.extend(audit.validate(&self.regions));
        }
        out.extend(self.limits.validate());
        out.extend(self.admin.validate());
        let admin_listener = self.listen.admin.is_some();
        out.extend(
            self.admin
                .validate_directory_url(&self.directory, admin_listener),
        );
        out.extend(self.health_check.validate());
        out.extend(self.rate_limit.validate());
        out.extend(self.tracing.validate());
        if let Some(signup) = &self.signup {
            out.extend(signup.validate());
            if self.admin.directory_url.is_none() {
                out.push(Problem::new(
                    "signup",
                    "needs admin.directory_url (the directory writer role): signups are stored in the directory",
                ));
            }
        }
        out
    }
}
