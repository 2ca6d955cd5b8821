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

pub mod admin;
pub mod auth;
pub mod directory;
pub mod error;
pub mod headers;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod tls;

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
    let tls = cfg.tls.as_ref().map(tls::acceptor).transpose()?;

    let admin = match listeners.admin {
        Some(l) => {
            let state = admin::AdminState::new(&cfg, Arc::clone(&gateway), prometheus)?;
            let app = admin::router(Arc::new(state));
            let opts = ServeOptions::from_limits(&cfg.limits, None);
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move {
                    // A router's error type is `Infallible`.
                    let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                    Ok::<_, Infallible>(resp)
                }
            });
            Some(tokio::spawn(listener::serve(
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
    listener::serve(listeners.public, opts, svc, shutdown).await;
    if let Some(admin) = admin {
        admin.await?;
    }
    Ok(())
}
