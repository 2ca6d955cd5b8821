//! Residency Gateway: the public front door. It authenticates every request, finds the
//! customer's home region in the directory, and streams the request to a region node of that
//! region only.
//!
//! Code map (phases in request order, pingora style):
//! - [`listener`]: accept loop, TLS ([`tls`]), h1+h2, header limits and timeouts, drain;
//! - [`headers`]: header hygiene, first thing on every request;
//! - [`auth`]: bearer JWT ([`auth::jwt`], [`auth::jwks`], [`auth::cache`]) or API key;
//! - [`directory`]: tenant → region, tier, status;
//! - [`ratelimit`]: per-tenant GCRA, local or shared in Redis, and the `RateLimit-*` headers;
//! - [`proxy`]: the phases wired together, upstream choice and streaming;
//! - [`error`]: the one map from errors to problem+json;
//! - [`health`]: active `/readyz` checks of every upstream;
//! - [`metrics`], [`admin`]: observability and the admin API (tenants, keys, regions).
//!
//! [`run`] is the whole server; `main.rs` only loads config, binds and calls it, so tests can
//! run a gateway on port 0.

mod admin;
pub mod auth;
#[doc(hidden)]
pub mod bench;
mod client_tls;
pub mod directory;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod headers;
mod health;
mod listener;
pub mod metrics;
mod proxy;
pub mod ratelimit;
mod signup;
mod tls;

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use residency_config::gateway::GatewayConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use listener::ServeOptions;
use proxy::Gateway;

/// The bound sockets the gateway serves; binding happens in the caller so tests can use
/// port 0 and learn the address first.
pub struct Listeners {
    /// Customer traffic.
    pub public: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics` and the admin API; none to disable.
    pub admin: Option<TcpListener>,
}

/// A gateway started by [`spawn_local`].
pub struct Spawned {
    /// Address of the public listener.
    pub public: std::net::SocketAddr,
    /// Address of the admin listener.
    pub admin: std::net::SocketAddr,
    /// Cancel to shut the gateway down (it drains first).
    pub shutdown: CancellationToken,
    /// The running gateway; resolves once it has drained.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Loads `config_file` (without environment overrides), binds the public and admin listeners
/// on `127.0.0.1:0` and runs the gateway in a task: for tests and embedding. The listen
/// addresses in the file are ignored.
///
/// # Errors
/// The config's problems (naming file and key), or a bind failure.
pub async fn spawn_local(config_file: &std::path::Path) -> anyhow::Result<Spawned> {
    let cfg: GatewayConfig = residency_config::load::load(config_file, &Vec::new())?;
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        cfg,
        Listeners {
            public,
            admin: Some(admin),
        },
        shutdown.clone(),
    ));
    Ok(Spawned {
        public: public_addr,
        admin: admin_addr,
        shutdown,
        task,
    })
}

/// Loads keys and the directory, then serves until `shutdown` is cancelled and in-flight
/// requests have drained (bounded by `limits.shutdown_grace`).
///
/// # Errors
/// A startup error (unreadable key, directory or certificate); once serving, it does not fail.
pub async fn run(
    cfg: GatewayConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let prometheus = metrics::install();
    let gateway = Arc::new(Gateway::build(&cfg, &shutdown).await?);
    gateway.jwt().spawn_refresh(shutdown.clone());
    health::spawn(gateway.regions().all(), &cfg.health_check, shutdown.clone());
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| tls::acceptor(t, gateway.directory().domains(), &shutdown))
        .transpose()?;

    let admin = match listeners.admin {
        Some(l) => {
            let state =
                admin::AdminState::new(&cfg, Arc::clone(&gateway), prometheus, shutdown.clone())?;
            let app = admin::router(Arc::new(state));
            let opts = admin_serve_options(&cfg);
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move {
                    // A router's error type is `Infallible`.
                    let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                    Ok::<_, Infallible>(resp)
                }
            });
            Some(tokio::spawn(residency_http::serve::serve(
                l,
                opts,
                svc,
                shutdown.clone(),
            )))
        }
        None => None,
    };

    let opts = ServeOptions::from_limits(&cfg.limits, tls);
    let svc = service_fn(move |req| {
        let gateway = Arc::clone(&gateway);
        async move { Ok::<_, Infallible>(gateway.handle(req).await) }
    });
    tracing::info!(
        public = %listeners.public.local_addr()?,
        regions = cfg.regions.len(),
        "gateway serving"
    );
    let cores = listener::cores::Cores::start(cfg.listen.public_cores).map_err(|e| {
        anyhow::anyhow!("listen.public_cores: cannot start the per-core runtimes: {e}")
    })?;
    listener::serve(listeners.public, opts, svc, cores, shutdown).await;
    if let Some(admin) = admin {
        admin.await?;
    }
    Ok(())
}

/// The admin listener's options: its own `[admin]` limits (the public listener's `[limits]`
/// do not apply), the process-wide `limits.shutdown_grace`, no TLS (keep it private).
fn admin_serve_options(cfg: &GatewayConfig) -> residency_http::serve::ServeOptions {
    let admin = &cfg.admin;
    residency_http::serve::ServeOptions {
        limits: residency_http::serve::Limits {
            max_connections: admin.max_connections,
            header_read_timeout: admin.header_read_timeout,
            max_header_bytes: Some(admin.max_header_bytes),
            h2_max_concurrent_streams: admin.h2_max_concurrent_streams,
            shutdown_grace: cfg.limits.shutdown_grace,
            idle_timeout: Some(admin.idle_timeout),
            max_connection_age: Some(admin.max_connection_age),
        },
        tls: None,
    }
}
