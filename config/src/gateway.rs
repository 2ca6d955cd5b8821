//! Configuration of the gateway (`residency-gateway --config gateway.toml`) and the format of
//! its file-backed directory.
//!
//! ```toml
//! [listen]
//! public = "0.0.0.0:8443"
//! admin = "127.0.0.1:9090"          # /healthz, /readyz, /metrics; optional
//!
//! [tls]                             # optional; plain HTTP without it (local use only)
//! cert_file = "tls/gateway.pem"
//! key_file = "tls/gateway.key"
//!
//! [[issuers]]
//! issuer = "https://idp.example.com/"
//! audience = "residency-api"
//! jwks_file = "keys/jwks.json"      # or jwks_url = "http://127.0.0.1:8080/jwks.json"
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
//! max_connection_age = "1h"         # graceful close after 90-100 % of this, then shutdown_grace
//! max_connections = 10000
//! max_connections_per_ip = 256      # more from one client address are closed at once
//!
//! [rate_limit]                      # defaults shown; see `RateLimitConfig`
//! backend = "local"                 # or "redis": one limit shared by every replica
//! burst = "60s"                     # a full minute's quota may arrive at once
//! # redis_url = "redis://127.0.0.1:6379/0"
//! redis_timeout = "50ms"
//! redis_key_prefix = "residency:ratelimit:"
//! ```
//!
//! The directory file (`[directory] source = "file"`) is described by [`DirectoryFile`]; the
//! CLI writes it and the gateway reads it, so both use these types.
//!
//! This module only describes and checks configuration; the gateway crate opens the files,
//! sockets and keys after validation succeeded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::assertion::AssertionKeyConfig;
use crate::load::{resolve, Validate};
use crate::{Problem, RegionId, TenantId};

mod audit;
pub use audit::{AuditRegion, AuditSection, DEFAULT_AUDIT_TIMEOUT, MAX_AUDIT_TIMEOUT};

/// The most clock skew an issuer's `leeway` may tolerate.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// The shortest allowed pause between two JWKS fetches triggered by unknown `kid`s.
pub const MIN_JWKS_COOLDOWN: Duration = Duration::from_secs(30);
/// The smallest header block limit hyper can enforce (its minimum read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;
/// Algorithms an external issuer may be configured with: asymmetric only, so a key published
/// in a JWKS can never be used as an HMAC secret.
pub const EXTERNAL_ALGORITHMS: &[&str] = &[
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];
/// The start of every API key: `rk_<prefix>_<secret>`.
pub const API_KEY_SCHEME: &str = "rk_";

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
}

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

/// `[tls]`: certificate and key of the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[[issuers]]`: one identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` claim of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// A JWKS document on disk, read once at start.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document over HTTP, refreshed in the background.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted `alg` values, from [`EXTERNAL_ALGORITHMS`].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, at most [`MAX_LEEWAY`].
    #[serde(default = "default_leeway", with = "crate::duration::serde_str")]
    pub leeway: Duration,
    /// How often a `jwks_url` is refetched in the background.
    #[serde(default = "default_jwks_refresh", with = "crate::duration::serde_str")]
    pub jwks_refresh: Duration,
    /// The least time between two fetches caused by unknown `kid`s, at least
    /// [`MIN_JWKS_COOLDOWN`].
    #[serde(default = "default_jwks_cooldown", with = "crate::duration::serde_str")]
    pub jwks_cooldown: Duration,
    /// Timeout of one JWKS fetch.
    #[serde(default = "default_jwks_timeout", with = "crate::duration::serde_str")]
    pub jwks_timeout: Duration,
}

fn default_algorithms() -> Vec<String> {
    vec!["ES256".to_owned()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(5)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_cooldown() -> Duration {
    MIN_JWKS_COOLDOWN
}
fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `[claims]`: which JWT claims carry the subject, tenant and role.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The subject claim (default `sub`).
    pub subject: String,
    /// The tenant claim (default `tenant_id`); its value must be a UUID.
    pub tenant: String,
    /// The role claim (default `role`); optional in tokens.
    pub role: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".to_owned(),
            tenant: "tenant_id".to_owned(),
            role: "role".to_owned(),
        }
    }
}

/// `[directory]`: the source of tenants and API keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum DirectorySource {
    /// A TOML file in the [`DirectoryFile`] format, for small and test deployments.
    File {
        /// Path of the file.
        path: PathBuf,
    },
    /// The global directory database, cached in memory and invalidated by `LISTEN/NOTIFY`.
    Postgres {
        /// Connection URL (may carry a password; `Debug` masks it).
        url: DatabaseUrl,
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
    },
}

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

/// A database connection URL. It may carry a password, so `Debug` masks it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL (validation happens with the rest of the config).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL including any password: pass it to the driver, never to a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    #[must_use]
    pub fn redacted(&self) -> String {
        crate::redact_url(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// `[admin]`: the admin API on `listen.admin`.
///
/// The bearer token comes from `token_file` (first line, trimmed) or `token` (meant for the
/// environment: `RESIDENCY__ADMIN__TOKEN`); with neither, `/admin/v1/...` answers 401 to
/// everyone. `/healthz`, `/readyz` and `/metrics` need no token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A file holding the admin token.
    pub token_file: Option<PathBuf>,
    /// The admin token itself (prefer the environment over a config file).
    pub token: Option<AdminToken>,
    /// Name of the token, recorded as `admin:<name>` in the directory history.
    pub token_name: String,
    /// Time a region node has to answer a provisioning call.
    #[serde(with = "crate::duration::serde_str")]
    pub provision_timeout: Duration,
    /// The directory database as its **writer** role, through which the admin API writes
    /// (`RESIDENCY__ADMIN__DIRECTORY_URL`). Required when the admin API is enabled in front
    /// of a Postgres directory; it must name another role than `directory.url`, which the
    /// public path's cache reads as the reader role.
    pub directory_url: Option<DatabaseUrl>,
}

impl AdminConfig {
    /// Whether the admin API can be called at all: a token is configured (without one
    /// every `/admin/v1` call is refused).
    #[must_use]
    pub fn has_token(&self) -> bool {
        self.token_file.is_some() || self.token.is_some()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            directory_url: None,
            token_file: None,
            token: None,
            token_name: "admin".to_owned(),
            provision_timeout: Duration::from_secs(10),
        }
    }
}

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// An admin bearer token. `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token: compare it in constant time, never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

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

/// `[[regions]]`: one residency region and the region nodes that serve it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    /// Region id, e.g. `eu`.
    pub id: RegionId,
    /// Human name, e.g. `Europe`.
    #[serde(default)]
    pub display_name: String,
    /// Where the data physically lives, e.g. `Frankfurt, DE`.
    #[serde(default)]
    pub location: String,
    /// Base URLs of the region's nodes (`http://host:port` or `https://host:port`, one
    /// scheme per region); requests go to these only.
    pub upstreams: Vec<String>,
    /// The key the gateway signs this region's internal assertions with.
    pub assertion: AssertionKeyConfig,
    /// PEM certificates of the CA(s) that sign the region's node certificates. Required for
    /// `https` upstreams: no system or bundled roots are ever trusted for nodes.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain the gateway presents to the region's nodes (mTLS); set together
    /// with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl RegionEntry {
    /// Whether the region's nodes are reached over TLS (all upstreams share one scheme).
    #[must_use]
    pub fn uses_tls(&self) -> bool {
        self.upstreams
            .first()
            .is_some_and(|u| u.trim_start().to_ascii_lowercase().starts_with("https://"))
    }
}

/// `[limits]`: sizes, counts and timeouts, with the SPEC defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// Largest request header block in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete header block: an HTTP/1 request head, or an
    /// HTTP/2 `HEADERS` frame with all its `CONTINUATION` frames.
    #[serde(with = "crate::duration::serde_str")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and none started for this long is closed
    /// gracefully (`GOAWAY` for HTTP/2). Envoy's `idle_timeout`, with a shorter default.
    #[serde(with = "crate::duration::serde_str")]
    pub idle_timeout: Duration,
    /// A connection older than this is closed gracefully, then dropped after at most
    /// `shutdown_grace`. Each connection gets between 90 % and 100 % of it, so connections
    /// opened together do not all reconnect together (gRPC's `MAX_CONNECTION_AGE` with its
    /// jitter; Envoy's `max_connection_duration`).
    #[serde(with = "crate::duration::serde_str")]
    pub max_connection_age: Duration,
    /// Concurrent client connections per listener; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Concurrent client connections per listener from one client IP address (IPv4-mapped
    /// IPv6 counts as IPv4); more are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Time to open a TCP connection to a region node.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_connect_timeout: Duration,
    /// Time a region node has to answer with a response head; 504 after it.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_timeout: Duration,
    /// How long an upstream that refused a connection is skipped.
    #[serde(with = "crate::duration::serde_str")]
    pub upstream_eject: Duration,
    /// Idle pooled connections kept per region node.
    pub upstream_pool_idle: usize,
    /// How long in-flight requests may take to finish after shutdown starts.
    #[serde(with = "crate::duration::serde_str")]
    pub shutdown_grace: Duration,
    /// Verified tokens kept in the cache.
    pub token_cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(3600),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            h2_max_concurrent_streams: 200,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_timeout: Duration::from_secs(30),
            upstream_eject: Duration::from_secs(5),
            upstream_pool_idle: 256,
            shutdown_grace: Duration::from_secs(10),
            token_cache_entries: 100_000,
        }
    }
}

/// The largest allowed `rate_limit.burst`: a bucket never holds more than one minute of
/// quota, so `RateLimit-Remaining` never exceeds `RateLimit-Limit`.
pub const MAX_RATE_LIMIT_BURST: Duration = Duration::from_secs(60);
/// The longest allowed `rate_limit.redis_timeout`: a shared limit must never cost a request
/// more than this; past it the gateway limits locally instead.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// `[rate_limit]`: per-tenant request rate limiting (GCRA).
///
/// A tenant's quota is its per-minute limit: the directory's `rate_limit_per_min` override,
/// else its tier's default ([`Tier::default_rate_per_min`]). `burst` says how much of that
/// quota may arrive at once, as time worth of quota: the default `60s` lets a whole minute's
/// quota arrive at once (a starter tenant may send 100 requests back to back, then one every
/// 0.6 s); `"6s"` would allow 10 at once for a starter tenant and 100 for a scale tenant.
/// Expressing burst as time keeps it proportional to every tenant's quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Where the limit state lives.
    pub backend: RateLimitBackend,
    /// Time worth of quota that may arrive at once, between 1s and 60s (default 60s: the
    /// whole per-minute quota). The burst in requests is `quota * burst / 60s`, at least 1.
    #[serde(with = "crate::duration::serde_str")]
    pub burst: Duration,
    /// Redis server for `backend = "redis"`, e.g. `redis://:password@10.0.0.5:6379/0`.
    pub redis_url: Option<RedisUrl>,
    /// The most time one Redis call may take before the request is limited locally instead
    /// (default 50ms, at most 1s).
    #[serde(with = "crate::duration::serde_str")]
    pub redis_timeout: Duration,
    /// Prefix of the per-tenant Redis keys (`<prefix><tenant id>`); replicas that share a
    /// limit must use the same prefix.
    pub redis_key_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            backend: RateLimitBackend::Local,
            burst: MAX_RATE_LIMIT_BURST,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_key_prefix: "residency:ratelimit:".to_owned(),
        }
    }
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// In this gateway's memory: each replica limits on its own.
    #[default]
    Local,
    /// In Redis, so every replica shares one limit per tenant; local limiting is the
    /// fallback while Redis is unreachable.
    Redis,
}

/// A Redis connection URL. It may carry a password, so `Debug` masks it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL (validation happens with the rest of the config).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL including any password: pass it to the client, never to a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    #[must_use]
    pub fn redacted(&self) -> String {
        crate::redact_url(&self.0)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

/// The file-backed directory: `[[tenants]]` and `[[api_keys]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// Every tenant and its home region.
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
    /// API keys, stored as hashes only.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
}

/// One tenant (customer) in the directory.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant id.
    pub id: TenantId,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Home region: the only region its requests go to.
    pub region: RegionId,
    /// Commercial tier.
    pub tier: Tier,
    /// Lifecycle status; only `active` tenants are served.
    pub status: TenantStatus,
    /// Per-minute request quota overriding the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_min: Option<u32>,
}

/// The role an API key grants when it is created (or listed in a file directory) without one.
/// Keys always name a role: a node resolves a key's requests by it, since an API key's subject
/// is never a member.
pub const DEFAULT_API_KEY_ROLE: &str = "developer";

fn default_api_key_role() -> String {
    DEFAULT_API_KEY_ROLE.to_owned()
}

/// One API key in the directory: only its hash is stored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Key id, used as the subject of requests made with the key.
    pub id: String,
    /// The tenant the key belongs to.
    pub tenant: TenantId,
    /// The public part of the key (`rk_<prefix>_<secret>`), used to find the entry.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    /// Role granted to requests made with the key; [`DEFAULT_API_KEY_ROLE`] when absent.
    #[serde(default = "default_api_key_role")]
    pub role: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A revoked key is refused.
    #[serde(default)]
    pub revoked: bool,
}

/// Commercial tier of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// 100 requests per minute.
    Starter,
    /// 500 requests per minute.
    Growth,
    /// 1000 requests per minute; API keys allowed.
    Scale,
    /// Custom quota; API keys allowed.
    Enterprise,
}

impl Tier {
    /// The tier's default per-minute quota (enterprise defaults to the scale quota until a
    /// per-tenant override is set).
    #[must_use]
    pub const fn default_rate_per_min(self) -> u32 {
        match self {
            Self::Starter => 100,
            Self::Growth => 500,
            Self::Scale | Self::Enterprise => 1000,
        }
    }

    /// Whether tenants of this tier may use API keys.
    #[must_use]
    pub const fn allows_api_keys(self) -> bool {
        matches!(self, Self::Scale | Self::Enterprise)
    }

    /// The tier as written in config and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starter => "starter",
            Self::Growth => "growth",
            Self::Scale => "scale",
            Self::Enterprise => "enterprise",
        }
    }
}

/// Lifecycle status of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Being created on its home node; not served yet.
    Provisioning,
    /// Served.
    Active,
    /// Refused with 403.
    Suspended,
    /// Being moved to another region; not served meanwhile.
    Moving,
    /// Gone; treated as unknown.
    Deleted,
}

/// Splits an API key `rk_<prefix>_<secret>` into its public prefix and its secret.
///
/// The prefix is 8-32 characters of `[a-z0-9]`; the secret is at least 32 characters of
/// `[A-Za-z0-9_-]`. Anything else is not an API key.
#[must_use]
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_SCHEME)?;
    let (prefix, secret) = rest.split_once('_')?;
    let prefix_ok = (8..=32).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let secret_ok = (32..=128).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (prefix_ok && secret_ok).then_some((prefix, secret))
}

impl Validate for GatewayConfig {
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            resolve(base, &mut tls.cert_file);
            resolve(base, &mut tls.key_file);
        }
        for i in &mut self.issuers {
            if let Some(f) = &mut i.jwks_file {
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
    }

    fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.listen.admin == Some(self.listen.public) && self.listen.public.port() != 0 {
            out.push(Problem::new(
                "listen.admin",
                "must differ from listen.public",
            ));
        }
        if let Some(tls) = &self.tls {
            check_file("tls.cert_file", &tls.cert_file, &mut out);
            check_file("tls.key_file", &tls.key_file, &mut out);
        }
        if self.issuers.is_empty() {
            out.push(Problem::new("issuers", "at least one issuer is required"));
        }
        for (i, iss) in self.issuers.iter().enumerate() {
            iss.validate(&format!("issuers[{i}]"), &mut out);
            if self.issuers[..i].iter().any(|o| o.issuer == iss.issuer) {
                out.push(Problem::new(
                    format!("issuers[{i}].issuer"),
                    format!("issuer {:?} is configured twice", iss.issuer),
                ));
            }
        }
        self.claims.validate(&mut out);
        self.directory.validate(&mut out);
        if self.regions.is_empty() {
            out.push(Problem::new("regions", "at least one region is required"));
        }
        for (i, r) in self.regions.iter().enumerate() {
            let prefix = format!("regions[{i}]");
            if self.regions[..i].iter().any(|o| o.id == r.id) {
                out.push(Problem::new(
                    format!("{prefix}.id"),
                    format!("region {} is configured twice", r.id),
                ));
            }
            if r.upstreams.is_empty() {
                out.push(Problem::new(
                    format!("{prefix}.upstreams"),
                    "at least one upstream url is required",
                ));
            }
            for (j, u) in r.upstreams.iter().enumerate() {
                check_upstream(&format!("{prefix}.upstreams[{j}]"), u, &mut out);
            }
            check_upstream_tls(&prefix, r, &mut out);
            out.extend(r.assertion.validate(&format!("{prefix}.assertion")));
        }
        if let Some(audit) = &self.audit {
            audit.validate(&self.regions, &mut out);
        }
        self.limits.validate(&mut out);
        self.admin.validate(&mut out);
        self.validate_admin_directory(&mut out);
        self.health_check.validate(&mut out);
        self.rate_limit.validate(&mut out);
        out
    }
}

impl GatewayConfig {
    /// `admin.directory_url`: the writer of a Postgres directory, distinct from the reader.
    fn validate_admin_directory(&self, out: &mut Vec<Problem>) {
        const KEY: &str = "admin.directory_url";
        let admin_enabled = self.listen.admin.is_some() && self.admin.has_token();
        match (&self.directory, &self.admin.directory_url) {
            (DirectorySource::File { .. }, Some(_)) => out.push(Problem::new(
                KEY,
                "only used with [directory] source = \"postgres\"",
            )),
            (DirectorySource::Postgres { .. }, None) if admin_enabled => out.push(Problem::new(
                KEY,
                "required when the admin api is enabled with a postgres directory: the url of \
                 the directory's writer role (RESIDENCY__ADMIN__DIRECTORY_URL)",
            )),
            (DirectorySource::Postgres { url: reader, .. }, Some(writer)) => {
                let Some(writer_user) = check_pg_url(KEY, writer, out) else {
                    return;
                };
                let reader_user = url::Url::parse(reader.expose())
                    .ok()
                    .map(|u| u.username().to_owned());
                if reader_user.as_deref() == Some(writer_user.as_str()) {
                    out.push(Problem::new(
                        KEY,
                        format!(
                            "must name another role than directory.url ({writer_user:?}): the \
                             cache reads as the reader role, the admin api writes as the writer"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Checks that `url` is a `postgres://` URL with a user; returns the user.
fn check_pg_url(key: &str, url: &DatabaseUrl, out: &mut Vec<Problem>) -> Option<String> {
    match url.expose().parse::<url::Url>() {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && !u.username().is_empty() => {
            Some(u.username().to_owned())
        }
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
            out.push(Problem::new(
                key,
                "must name its role (postgres://role@host/db)",
            ));
            None
        }
        Ok(_) => {
            out.push(Problem::new(key, "must be a postgres:// url"));
            None
        }
        // The parser's message does not echo the input, so no password leaks.
        Err(e) => {
            out.push(Problem::new(key, format!("not a url: {e}")));
            None
        }
    }
}

impl DirectorySource {
    fn validate(&self, out: &mut Vec<Problem>) {
        match self {
            Self::File { path } => check_file("directory.path", path, out),
            Self::Postgres {
                url,
                max_stale,
                negative_ttl,
                timeout,
                negative_entries,
            } => {
                match url.expose().parse::<url::Url>() {
                    Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
                    Ok(_) => out.push(Problem::new("directory.url", "must be a postgres:// url")),
                    // The parser's message does not echo the input, so no password leaks.
                    Err(e) => out.push(Problem::new("directory.url", format!("not a url: {e}"))),
                }
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
            }
        }
    }
}

impl AdminConfig {
    fn validate(&self, out: &mut Vec<Problem>) {
        match (&self.token_file, &self.token) {
            (Some(_), Some(_)) => out.push(Problem::new(
                "admin.token",
                "set at most one of admin.token_file and admin.token",
            )),
            (Some(f), None) => match std::fs::read_to_string(f) {
                Ok(text) if text.trim().len() >= MIN_ADMIN_TOKEN_BYTES => {}
                Ok(_) => out.push(Problem::new(
                    "admin.token_file",
                    format!("the token must be at least {MIN_ADMIN_TOKEN_BYTES} characters"),
                )),
                Err(e) => out.push(Problem::new(
                    "admin.token_file",
                    format!("cannot read {}: {e}", f.display()),
                )),
            },
            (None, Some(t)) if t.expose().trim().len() < MIN_ADMIN_TOKEN_BYTES => {
                out.push(Problem::new(
                    "admin.token",
                    format!("must be at least {MIN_ADMIN_TOKEN_BYTES} characters"),
                ));
            }
            _ => {}
        }
        let name_ok = (1..=64).contains(&self.token_name.len())
            && self
                .token_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            out.push(Problem::new(
                "admin.token_name",
                "must be 1-64 characters of a-z, 0-9, '-' and '_'",
            ));
        }
        if self.provision_timeout.is_zero() {
            out.push(Problem::new(
                "admin.provision_timeout",
                "must be greater than 0",
            ));
        }
    }
}

impl HealthCheckConfig {
    fn validate(&self, out: &mut Vec<Problem>) {
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
    }
}

impl IssuerConfig {
    fn validate(&self, prefix: &str, out: &mut Vec<Problem>) {
        if self.issuer.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.issuer"),
                "must not be empty",
            ));
        }
        if self.audience.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.audience"),
                "must not be empty",
            ));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(f), None) => check_file(&format!("{prefix}.jwks_file"), f, out),
            (None, Some(u)) => match url::Url::parse(u) {
                Ok(u) if u.scheme() == "http" && u.host().is_some() => {}
                Ok(u) if u.scheme() == "https" => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    "https jwks urls are not built yet; use http on a trusted network or jwks_file",
                )),
                Ok(_) => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    "must be an http url with a host",
                )),
                Err(e) => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    format!("not a url: {e}"),
                )),
            },
            _ => out.push(Problem::new(
                format!("{prefix}.jwks_file"),
                "set exactly one of jwks_file and jwks_url",
            )),
        }
        if self.algorithms.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.algorithms"),
                "at least one algorithm is required",
            ));
        }
        for (j, alg) in self.algorithms.iter().enumerate() {
            if !EXTERNAL_ALGORITHMS.contains(&alg.as_str()) {
                out.push(Problem::new(
                    format!("{prefix}.algorithms[{j}]"),
                    format!(
                        "{alg:?} is not accepted; use one of {}",
                        EXTERNAL_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if self.leeway > MAX_LEEWAY {
            out.push(Problem::new(
                format!("{prefix}.leeway"),
                "must be at most 30s",
            ));
        }
        if self.jwks_cooldown < MIN_JWKS_COOLDOWN {
            out.push(Problem::new(
                format!("{prefix}.jwks_cooldown"),
                "must be at least 30s",
            ));
        }
        if self.jwks_refresh < self.jwks_cooldown {
            out.push(Problem::new(
                format!("{prefix}.jwks_refresh"),
                "must be at least jwks_cooldown",
            ));
        }
        if self.jwks_timeout.is_zero() {
            out.push(Problem::new(
                format!("{prefix}.jwks_timeout"),
                "must be greater than 0",
            ));
        }
    }
}

impl ClaimNames {
    fn validate(&self, out: &mut Vec<Problem>) {
        for (key, v) in [
            ("claims.subject", &self.subject),
            ("claims.tenant", &self.tenant),
            ("claims.role", &self.role),
        ] {
            if v.is_empty() {
                out.push(Problem::new(key, "must not be empty"));
            }
        }
        if self.tenant == self.subject || self.tenant == self.role {
            out.push(Problem::new(
                "claims.tenant",
                "must differ from claims.subject and claims.role",
            ));
        }
    }
}

impl Limits {
    fn validate(&self, out: &mut Vec<Problem>) {
        if self.max_body_bytes == 0 {
            out.push(Problem::new(
                "limits.max_body_bytes",
                "must be greater than 0",
            ));
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            out.push(Problem::new(
                "limits.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and 1048576"),
            ));
        }
        for (key, d) in [
            ("limits.header_read_timeout", self.header_read_timeout),
            (
                "limits.upstream_connect_timeout",
                self.upstream_connect_timeout,
            ),
            ("limits.upstream_timeout", self.upstream_timeout),
            ("limits.idle_timeout", self.idle_timeout),
            ("limits.max_connection_age", self.max_connection_age),
        ] {
            if d.is_zero() {
                out.push(Problem::new(key, "must be greater than 0"));
            }
        }
        if self.max_connections == 0 {
            out.push(Problem::new(
                "limits.max_connections",
                "must be greater than 0",
            ));
        }
        if self.max_connections_per_ip == 0
            || (self.max_connections > 0 && self.max_connections_per_ip > self.max_connections)
        {
            out.push(Problem::new(
                "limits.max_connections_per_ip",
                "must be greater than 0 and at most limits.max_connections",
            ));
        }
        if self.h2_max_concurrent_streams == 0 {
            out.push(Problem::new(
                "limits.h2_max_concurrent_streams",
                "must be greater than 0",
            ));
        }
        if self.token_cache_entries == 0 {
            out.push(Problem::new(
                "limits.token_cache_entries",
                "must be greater than 0",
            ));
        }
    }
}

impl RateLimitConfig {
    fn validate(&self, out: &mut Vec<Problem>) {
        if !(Duration::from_secs(1)..=MAX_RATE_LIMIT_BURST).contains(&self.burst) {
            out.push(Problem::new(
                "rate_limit.burst",
                "must be between 1s and 60s (time worth of quota that may arrive at once)",
            ));
        }
        if self.redis_timeout.is_zero() || self.redis_timeout > MAX_REDIS_TIMEOUT {
            out.push(Problem::new(
                "rate_limit.redis_timeout",
                "must be greater than 0 and at most 1s",
            ));
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.len() > 128 {
            out.push(Problem::new(
                "rate_limit.redis_key_prefix",
                "must be 1 to 128 bytes long",
            ));
        }
        match (&self.redis_url, self.backend) {
            (None, RateLimitBackend::Redis) => out.push(Problem::new(
                "rate_limit.redis_url",
                "is required when backend = \"redis\"",
            )),
            (Some(u), _) => match url::Url::parse(u.expose()) {
                Ok(p) if p.scheme() == "redis" && p.host().is_some() => {}
                Ok(p) if p.scheme() == "rediss" => out.push(Problem::new(
                    "rate_limit.redis_url",
                    "tls to redis is not built yet; use a redis:// url on a trusted network",
                )),
                Ok(_) => out.push(Problem::new(
                    "rate_limit.redis_url",
                    "must be a redis:// url with a host",
                )),
                // The parser's message does not echo the input, so no password leaks here.
                Err(e) => out.push(Problem::new(
                    "rate_limit.redis_url",
                    format!("not a url: {e}"),
                )),
            },
            (None, RateLimitBackend::Local) => {}
        }
    }
}

fn check_upstream(key: &str, raw: &str, out: &mut Vec<Problem>) {
    match url::Url::parse(raw) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
            out.push(Problem::new(
                key,
                "must be an http or https url with a host",
            ));
        }
        Ok(u) if u.path() != "/" || u.query().is_some() || u.fragment().is_some() => {
            out.push(Problem::new(
                key,
                "must be a base url without path, query or fragment",
            ));
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            out.push(Problem::new(key, "must not carry credentials"));
        }
        Ok(_) => {}
        Err(e) => out.push(Problem::new(key, format!("not a url: {e}"))),
    }
}

/// One scheme per region; `https` needs `ca_file`; TLS settings without `https` upstreams and
/// half a client certificate are refused, so nobody believes TLS is on when it is not.
fn check_upstream_tls(prefix: &str, r: &RegionEntry, out: &mut Vec<Problem>) {
    let https = r.uses_tls();
    let mixed = r.upstreams.iter().any(|u| {
        let lower = u.trim_start().to_ascii_lowercase();
        lower.starts_with("https://") != https
    });
    if mixed {
        out.push(Problem::new(
            format!("{prefix}.upstreams"),
            "all upstreams of a region must use the same scheme (http or https)",
        ));
    }
    match (&r.ca_file, https) {
        (None, true) => out.push(Problem::new(
            format!("{prefix}.ca_file"),
            "required for https upstreams: the pem ca certificate that signed the region's node certificates (no system roots are used)",
        )),
        (Some(f), true) => check_file(&format!("{prefix}.ca_file"), f, out),
        (Some(_), false) => out.push(Problem::new(
            format!("{prefix}.ca_file"),
            "set only with https upstreams",
        )),
        (None, false) => {}
    }
    if !https && (r.client_cert_file.is_some() || r.client_key_file.is_some()) {
        out.push(Problem::new(
            format!("{prefix}.client_cert_file"),
            "set only with https upstreams",
        ));
        return;
    }
    match (&r.client_cert_file, &r.client_key_file) {
        (Some(c), Some(k)) => {
            check_file(&format!("{prefix}.client_cert_file"), c, out);
            check_file(&format!("{prefix}.client_key_file"), k, out);
        }
        (Some(_), None) => out.push(Problem::new(
            format!("{prefix}.client_key_file"),
            "required with client_cert_file",
        )),
        (None, Some(_)) => out.push(Problem::new(
            format!("{prefix}.client_cert_file"),
            "required with client_key_file",
        )),
        (None, None) => {}
    }
}

fn check_file(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if let Err(e) = std::fs::metadata(path) {
        out.push(Problem::new(
            key,
            format!("cannot read {}: {e}", path.display()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{from_str, load};

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    const GOOD: &str = r#"
[listen]
public = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[issuers]]
issuer = "https://idp.test/"
audience = "api"
jwks_file = "jwks.json"

[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
upstreams = ["http://127.0.0.1:8542"]
assertion = { kid = "eu-1", key_file = "eu.key" }

[[regions]]
id = "us"
upstreams = ["http://127.0.0.1:8541", "http://127.0.0.1:8540/"]
assertion = { kid = "us-1", key_file = "us.key" }
"#;

    fn dir_with_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "jwks.json", b"{\"keys\":[]}");
        write(dir.path(), "directory.toml", b"");
        write(dir.path(), "eu.key", &[1; 32]);
        write(dir.path(), "us.key", &[2; 32]);
        dir
    }

    fn load_text(dir: &Path, text: &str) -> Result<GatewayConfig, crate::ConfigError> {
        write(dir, "gateway.toml", text.as_bytes());
        load(&dir.join("gateway.toml"), &Vec::new())
    }

    fn problem_keys(dir: &Path, text: &str) -> Vec<String> {
        load_text(dir, text)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn loads_with_spec_defaults_and_resolved_paths() {
        let dir = dir_with_files();
        let cfg = load_text(dir.path(), GOOD).unwrap();
        assert_eq!(cfg.limits.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(cfg.limits.max_header_bytes, 16 * 1024);
        assert_eq!(cfg.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(cfg.limits.max_connection_age, Duration::from_secs(3600));
        assert_eq!(cfg.limits.max_connections_per_ip, 256);
        assert_eq!(cfg.claims, ClaimNames::default());
        assert_eq!(cfg.claims.tenant, "tenant_id");
        assert_eq!(cfg.issuers[0].algorithms, ["ES256"]);
        assert_eq!(cfg.issuers[0].leeway, Duration::from_secs(5));
        assert_eq!(
            cfg.issuers[0].jwks_file.as_deref(),
            Some(dir.path().join("jwks.json").as_path())
        );
        assert_eq!(cfg.regions[1].assertion.key_file, dir.path().join("us.key"));
        assert!(matches!(
            &cfg.directory,
            DirectorySource::File { path } if path == &dir.path().join("directory.toml")
        ));
    }

    #[test]
    fn a_fourth_region_is_config_only() {
        let dir = dir_with_files();
        write(dir.path(), "sa.key", &[3; 32]);
        let text = format!(
            "{GOOD}\n[[regions]]\nid = \"sa\"\nupstreams = [\"http://10.0.0.1:80\"]\n\
             assertion = {{ kid = \"sa-1\", key_file = \"sa.key\" }}\n"
        );
        let cfg = load_text(dir.path(), &text).unwrap();
        assert_eq!(cfg.regions.len(), 3);
        assert_eq!(cfg.regions[2].id.as_str(), "sa");
    }

    #[test]
    fn issuer_problems_name_their_keys() {
        let dir = dir_with_files();
        let text = GOOD.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"missing.json\"\nalgorithms = [\"HS256\", \"none\", \"ES256\"]\n\
             leeway = \"31s\"\njwks_cooldown = \"1s\"",
        );
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "issuers[0].jwks_file",
                "issuers[0].algorithms[0]",
                "issuers[0].algorithms[1]",
                "issuers[0].leeway",
                "issuers[0].jwks_cooldown",
            ]
        );
    }

    #[test]
    fn jwks_source_must_be_exactly_one() {
        let dir = dir_with_files();
        let both = GOOD.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"jwks.json\"\njwks_url = \"http://127.0.0.1:1/jwks\"",
        );
        assert_eq!(problem_keys(dir.path(), &both), ["issuers[0].jwks_file"]);
        let url = GOOD.replace(
            "jwks_file = \"jwks.json\"",
            "jwks_url = \"http://127.0.0.1:1/jwks\"",
        );
        assert!(load_text(dir.path(), &url).is_ok());
    }

    #[test]
    fn region_problems_name_their_keys() {
        let dir = dir_with_files();
        let text = GOOD
            .replace("http://127.0.0.1:8542", "https://127.0.0.1:8542")
            .replace("\"http://127.0.0.1:8540/\"", "\"http://127.0.0.1:8540/v1\"")
            .replace("id = \"us\"", "id = \"eu\"")
            .replace("us.key", "short.key");
        write(dir.path(), "short.key", &[1; 8]);
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "regions[0].ca_file",
                "regions[1].id",
                "regions[1].upstreams[1]",
                "regions[1].assertion.key_file",
            ]
        );
    }

    #[test]
    fn https_upstreams_need_a_ca_one_scheme_and_whole_client_certs() {
        let dir = dir_with_files();
        write(dir.path(), "ca.pem", b"pem");
        write(dir.path(), "client.pem", b"pem");
        write(dir.path(), "client.key", b"pem");
        let https = GOOD.replace(
            "upstreams = [\"http://127.0.0.1:8542\"]",
            "upstreams = [\"https://127.0.0.1:8542\"]\nca_file = \"ca.pem\"\n\
             client_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"",
        );
        let cfg = load_text(dir.path(), &https).unwrap();
        assert!(cfg.regions[0].uses_tls());
        assert!(!cfg.regions[1].uses_tls());
        assert_eq!(cfg.regions[0].ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(
            cfg.regions[0].client_key_file,
            Some(dir.path().join("client.key"))
        );
        // Mixed schemes, a missing CA file and half a client pair are refused by key.
        let bad = GOOD
            .replace(
                "upstreams = [\"http://127.0.0.1:8542\"]",
                "upstreams = [\"https://127.0.0.1:8542\"]\nca_file = \"nope.pem\"\n\
                 client_cert_file = \"client.pem\"",
            )
            .replace("\"http://127.0.0.1:8540/\"", "\"https://127.0.0.1:8540/\"");
        let problems = load_text(dir.path(), &bad).unwrap_err();
        let keys: Vec<&str> = problems.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "regions[0].ca_file",
                "regions[0].client_key_file",
                "regions[1].upstreams",
            ],
            "{problems}"
        );
        // TLS settings on an http region would suggest TLS that is not there.
        let http_with_ca = GOOD.replace(
            "upstreams = [\"http://127.0.0.1:8542\"]",
            "upstreams = [\"http://127.0.0.1:8542\"]\nca_file = \"ca.pem\"",
        );
        assert_eq!(
            problem_keys(dir.path(), &http_with_ca),
            ["regions[0].ca_file"]
        );
        let e = load_text(
            dir.path(),
            &GOOD.replace("http://127.0.0.1:8542", "https://127.0.0.1:8542"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("regions[0].ca_file: required for https upstreams"),
            "{e}"
        );
    }

    #[test]
    fn audit_section_names_every_region_and_refuses_the_app_role() {
        let dir = dir_with_files();
        let good = format!(
            "{GOOD}\n[audit]\n[audit.regions.eu]\n\
             database_url = \"postgres://eu_auditor:s3cret@db/eu\"\napp_role = \"eu_app\"\n\
             [audit.regions.us]\n\
             database_url = \"postgres://us_auditor@db/us\"\napp_role = \"us_app\"\n"
        );
        let cfg = load_text(dir.path(), &good).unwrap();
        let audit = cfg.audit.unwrap();
        assert_eq!(audit.timeout, DEFAULT_AUDIT_TIMEOUT);
        let eu = &audit.regions[&RegionId::new("eu").unwrap()];
        assert_eq!(eu.app_role, "eu_app");
        assert!(!format!("{eu:?}").contains("s3cret"));
        let bad = format!(
            "{GOOD}\n[audit]\ntimeout = \"0s\"\n[audit.regions.eu]\n\
             database_url = \"postgres://eu_app@db/eu\"\napp_role = \"eu_app\"\n\
             [audit.regions.sa]\n\
             database_url = \"mysql://x@db/sa\"\napp_role = \"Bad\"\n"
        );
        assert_eq!(
            problem_keys(dir.path(), &bad),
            [
                "audit.timeout",
                "audit.regions.us",
                "audit.regions.eu.database_url",
                "audit.regions.sa",
                "audit.regions.sa.app_role",
                "audit.regions.sa.database_url",
            ]
        );
    }

    #[test]
    fn postgres_directory_loads_with_defaults_and_masks_the_password() {
        let dir = dir_with_files();
        let text = GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            "source = \"postgres\"\nurl = \"postgres://d:s3cret@127.0.0.1/dir\"",
        );
        let cfg = load_text(dir.path(), &text).unwrap();
        let DirectorySource::Postgres {
            url,
            max_stale,
            negative_ttl,
            timeout,
            negative_entries,
        } = &cfg.directory
        else {
            panic!("postgres source expected");
        };
        assert_eq!(url.expose(), "postgres://d:s3cret@127.0.0.1/dir");
        assert_eq!(*max_stale, Duration::from_secs(600));
        assert_eq!(*negative_ttl, Duration::from_secs(5));
        assert_eq!(*timeout, Duration::from_secs(2));
        assert_eq!(*negative_entries, 100_000);
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn postgres_directory_problems_name_their_keys() {
        let dir = dir_with_files();
        let text = GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            "source = \"postgres\"\nurl = \"mysql://x@h/d\"\nmax_stale = \"25h\"\n\
             negative_ttl = \"0s\"\ntimeout = \"31s\"\nnegative_entries = 0",
        );
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "directory.url",
                "directory.max_stale",
                "directory.negative_ttl",
                "directory.timeout",
                "directory.negative_entries",
            ]
        );
        let unknown = GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            "source = \"postgres\"\nurl = \"postgres://h/d\"\nmax_stail = \"1m\"",
        );
        assert!(load_text(dir.path(), &unknown).is_err());
    }

    #[test]
    fn the_admin_writes_through_its_own_directory_role() {
        let dir = dir_with_files();
        write(dir.path(), "admin.token", b"0123456789abcdef0123\n");
        let pg = GOOD.replace(
            "source = \"file\"\npath = \"directory.toml\"",
            "source = \"postgres\"\nurl = \"postgres://d_reader:r3ader@127.0.0.1/dir\"",
        );
        let with_admin =
            |extra: &str| format!("{pg}\n[admin]\ntoken_file = \"admin.token\"\n{extra}");
        // Enabled admin api, postgres directory, no writer: refused, naming the key.
        let err = load_text(dir.path(), &with_admin("")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "admin.directory_url");
        assert!(err
            .to_string()
            .contains("gateway.toml: admin.directory_url: required"));
        // The writer is its own role.
        let cfg = load_text(
            dir.path(),
            &with_admin("directory_url = \"postgres://d_writer:wr1ter@127.0.0.1/dir\"\n"),
        )
        .unwrap();
        assert_eq!(
            cfg.admin.directory_url.as_ref().map(DatabaseUrl::expose),
            Some("postgres://d_writer:wr1ter@127.0.0.1/dir")
        );
        assert!(!format!("{cfg:?}").contains("wr1ter"));
        // ... and comes from the environment like the reader.
        write(dir.path(), "gateway.toml", with_admin("").as_bytes());
        let env = vec![(
            "RESIDENCY__ADMIN__DIRECTORY_URL".to_owned(),
            "postgres://d_writer:wr1ter@127.0.0.1/dir".to_owned(),
        )];
        assert!(load::<GatewayConfig>(&dir.path().join("gateway.toml"), &env).is_ok());
        for (bad, why) in [
            (
                "postgres://d_reader:x@127.0.0.1/dir",
                "must name another role than directory.url",
            ),
            ("mysql://w@h/d", "must be a postgres:// url"),
            ("postgres://127.0.0.1/dir", "must name its role"),
        ] {
            let err = load_text(
                dir.path(),
                &with_admin(&format!("directory_url = \"{bad}\"\n")),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!("admin.directory_url: {why}")),
                "{bad}: {err}"
            );
            assert!(!err.contains(":x@"), "{err}");
        }
        // No token (admin api refuses everything) or no admin listener: no writer needed.
        assert!(load_text(dir.path(), &pg).is_ok());
        let no_listener = with_admin("").replace("admin = \"127.0.0.1:0\"\n", "");
        assert!(load_text(dir.path(), &no_listener).is_ok());
        // A file directory has no writer.
        let file = format!("{GOOD}\n[admin]\ndirectory_url = \"postgres://w@h/d\"\n");
        assert_eq!(problem_keys(dir.path(), &file), ["admin.directory_url"]);
    }

    #[test]
    fn admin_token_comes_from_a_file_or_the_environment() {
        let dir = dir_with_files();
        write(dir.path(), "admin.token", b"0123456789abcdef0123\n");
        let text = format!("{GOOD}\n[admin]\ntoken_file = \"admin.token\"\ntoken_name = \"ops\"\n");
        let cfg = load_text(dir.path(), &text).unwrap();
        assert_eq!(
            cfg.admin.token_file.as_deref(),
            Some(dir.path().join("admin.token").as_path())
        );
        assert_eq!(cfg.admin.token_name, "ops");
        assert_eq!(cfg.admin.provision_timeout, Duration::from_secs(10));

        write(dir.path(), "gateway.toml", GOOD.as_bytes());
        let env = vec![(
            "RESIDENCY__ADMIN__TOKEN".to_owned(),
            "from-the-environment-0123".to_owned(),
        )];
        let cfg: GatewayConfig = load(&dir.path().join("gateway.toml"), &env).unwrap();
        assert_eq!(
            cfg.admin.token.as_ref().map(AdminToken::expose),
            Some("from-the-environment-0123")
        );
        assert!(!format!("{cfg:?}").contains("from-the-environment"));
    }

    #[test]
    fn admin_and_health_check_problems_name_their_keys() {
        let dir = dir_with_files();
        write(dir.path(), "short.token", b"short");
        let text = format!(
            "{GOOD}\n[admin]\ntoken_file = \"short.token\"\ntoken_name = \"Ops Team\"\n\
             provision_timeout = \"0s\"\n[health_check]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
             unhealthy_threshold = 0\n"
        );
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "admin.token_file",
                "admin.token_name",
                "admin.provision_timeout",
                "health_check.timeout",
                "health_check.unhealthy_threshold",
            ]
        );
        let both = format!(
            "{GOOD}\n[admin]\ntoken_file = \"missing.token\"\ntoken = \"0123456789abcdef0\"\n"
        );
        assert_eq!(problem_keys(dir.path(), &both), ["admin.token"]);
        let cfg = load_text(dir.path(), GOOD).unwrap();
        assert!(cfg.health_check.enabled);
        assert_eq!(cfg.health_check.interval, Duration::from_secs(2));
        assert_eq!(cfg.health_check.unhealthy_threshold, 2);
    }

    #[test]
    fn limits_are_checked() {
        let dir = dir_with_files();
        let text = format!("{GOOD}\n[limits]\nmax_header_bytes = 1024\nmax_body_bytes = 0\n");
        assert_eq!(
            problem_keys(dir.path(), &text),
            ["limits.max_body_bytes", "limits.max_header_bytes"]
        );
        let text = format!(
            "{GOOD}\n[limits]\nidle_timeout = \"0s\"\nmax_connection_age = \"0s\"\n\
             max_connections = 10\nmax_connections_per_ip = 11\n"
        );
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "limits.idle_timeout",
                "limits.max_connection_age",
                "limits.max_connections_per_ip"
            ]
        );
        let zero = format!("{GOOD}\n[limits]\nmax_connections_per_ip = 0\n");
        assert_eq!(
            problem_keys(dir.path(), &zero),
            ["limits.max_connections_per_ip"]
        );
        let equal = format!("{GOOD}\n[limits]\nmax_connections = 8\nmax_connections_per_ip = 8\n");
        assert!(load_text(dir.path(), &equal).is_ok());
    }

    #[test]
    fn rate_limit_defaults_to_local_with_a_full_minute_of_burst() {
        let dir = dir_with_files();
        let cfg = load_text(dir.path(), GOOD).unwrap();
        assert_eq!(cfg.rate_limit.backend, RateLimitBackend::Local);
        assert_eq!(cfg.rate_limit.burst, Duration::from_secs(60));
        assert_eq!(cfg.rate_limit.redis_timeout, Duration::from_millis(50));
        assert_eq!(cfg.rate_limit.redis_key_prefix, "residency:ratelimit:");
        assert!(cfg.rate_limit.redis_url.is_none());
    }

    #[test]
    fn rate_limit_redis_backend_loads() {
        let dir = dir_with_files();
        let text = format!(
            "{GOOD}\n[rate_limit]\nbackend = \"redis\"\nburst = \"10s\"\n\
             redis_url = \"redis://:hunter2@127.0.0.1:6379/0\"\nredis_timeout = \"20ms\"\n\
             redis_key_prefix = \"rl:\"\n"
        );
        let cfg = load_text(dir.path(), &text).unwrap();
        let rl = &cfg.rate_limit;
        assert_eq!(rl.backend, RateLimitBackend::Redis);
        assert_eq!(rl.burst, Duration::from_secs(10));
        assert_eq!(rl.redis_timeout, Duration::from_millis(20));
        assert_eq!(rl.redis_key_prefix, "rl:");
        let url = rl.redis_url.as_ref().unwrap();
        assert_eq!(url.expose(), "redis://:hunter2@127.0.0.1:6379/0");
        // The password never reaches Debug output (and so never a log of the config).
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis://:***@127.0.0.1:6379/0"), "{debug}");
    }

    #[test]
    fn rate_limit_problems_name_their_keys() {
        let dir = dir_with_files();
        let text = format!(
            "{GOOD}\n[rate_limit]\nbackend = \"redis\"\nburst = \"61s\"\nredis_timeout = \"0s\"\n\
             redis_key_prefix = \"\"\n"
        );
        assert_eq!(
            problem_keys(dir.path(), &text),
            [
                "rate_limit.burst",
                "rate_limit.redis_timeout",
                "rate_limit.redis_key_prefix",
                "rate_limit.redis_url",
            ]
        );
        for (url, why) in [
            ("rediss://127.0.0.1:6379", "not built yet"),
            ("http://127.0.0.1:6379", "redis:// url"),
            ("not a url", "not a url"),
        ] {
            let text =
                format!("{GOOD}\n[rate_limit]\nbackend = \"redis\"\nredis_url = \"{url}\"\n");
            let err = load_text(dir.path(), &text).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "rate_limit.redis_url");
            assert!(err.problems[0].message.contains(why), "{err}");
        }
        let text = format!("{GOOD}\n[rate_limit]\nburst = \"500ms\"\nredis_timeout = \"2s\"\n");
        assert_eq!(
            problem_keys(dir.path(), &text),
            ["rate_limit.burst", "rate_limit.redis_timeout"]
        );
        let text = format!("{GOOD}\n[rate_limit]\nbackend = \"memcached\"\n");
        assert!(load_text(dir.path(), &text).is_err());
    }

    #[test]
    fn claim_names_must_be_distinct_and_non_empty() {
        let dir = dir_with_files();
        let text = format!("{GOOD}\n[claims]\nsubject = \"\"\ntenant = \"role\"\n");
        assert_eq!(
            problem_keys(dir.path(), &text),
            ["claims.subject", "claims.tenant"]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = from_str::<GatewayConfig>(
            &GOOD.replace("[listen]", "[listen]\npublik = \"x\""),
            &Vec::new(),
        )
        .unwrap_err();
        assert!(err.message.contains("publik"), "{err:?}");
    }

    #[test]
    fn directory_file_roundtrips() {
        let text = r#"
[[tenants]]
id = "0190a5c4-0000-7000-8000-000000000001"
name = "Acme"
region = "eu"
tier = "scale"
status = "active"

[[api_keys]]
id = "key-1"
tenant = "0190a5c4-0000-7000-8000-000000000001"
prefix = "abcdefgh"
hash = "00"
role = "developer"
"#;
        let d: DirectoryFile = toml::from_str(text).unwrap();
        assert_eq!(d.tenants[0].tier, Tier::Scale);
        assert_eq!(d.tenants[0].status, TenantStatus::Active);
        assert!(!d.api_keys[0].revoked);
        let again: DirectoryFile = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
        assert_eq!(again.tenants, d.tenants);
        assert_eq!(again.api_keys, d.api_keys);
        assert!(toml::from_str::<DirectoryFile>("[[tenants]]\nid = \"x\"\n").is_err());
    }

    #[test]
    fn api_key_format() {
        let secret = "A".repeat(32);
        let key = format!("rk_abcd1234_{secret}");
        assert_eq!(split_api_key(&key), Some(("abcd1234", secret.as_str())));
        // Secrets may contain '_' and '-'; the prefix ends at the first '_'.
        let key = format!("rk_abcd1234_{}_-x", "b".repeat(30));
        assert_eq!(split_api_key(&key).map(|p| p.0), Some("abcd1234"));
        for bad in [
            String::new(),
            format!("rk_short_{secret}"),
            format!("xx_abcd1234_{secret}"),
            "rk_abcd1234_tooshort".to_owned(),
            format!("rk_ABCD1234_{secret}"),
            format!("rk_abcd1234_{secret} "),
        ] {
            assert_eq!(split_api_key(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tiers() {
        assert_eq!(Tier::Starter.default_rate_per_min(), 100);
        assert_eq!(Tier::Growth.default_rate_per_min(), 500);
        assert!(!Tier::Growth.allows_api_keys());
        assert!(Tier::Enterprise.allows_api_keys());
    }
}
