//! Residency Gateway region node: the customer API for one region, over that region's own
//! Postgres, with tenant isolation enforced by Row-Level Security.
//!
//! Entry points: [`run`] serves a validated [`NodeConfig`] on a bound listener until the
//! shutdown token fires (tests call it with a port-0 listener); [`build_state`] and
//! [`api::router`] build the parts for in-process tests.
//!
//! Invariants (see ARCHITECTURE.md):
//! - every request except `/healthz`, `/readyz` and `/metrics` carries a verified gateway
//!   assertion addressed to this region; the tenant comes from it and nothing else;
//! - every database access goes through [`db::tenant_tx`]: one transaction with
//!   `app.tenant_id` and `app.role` set transaction-locally before any query;
//! - the node connects as the application role, which cannot bypass RLS and owns nothing;
//!   [`prepare`] refuses to start otherwise.

pub mod api;
mod auth;
mod crypto;
pub mod db;
pub mod error;
mod jobs;
pub mod metrics;
pub mod rbac;
mod request_id;
mod state;
mod tls;
mod webhooks;
mod workflow;

use std::sync::Arc;

use anyhow::Context;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse;
use hyper_util::service::TowerToHyperService;
use residency_config::assertion::AssertionKeyConfig;
use residency_config::node::NodeConfig;
use residency_core::assertion::Verifier;
use residency_http::serve::{self, Limits, ServeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::migrate::GrantRoles;
use crate::db::tenant_tx::Db;
use crate::error::ApiError;
use crate::state::AppState;

/// The roles the migrations grant to, derived from config: the app role is the user of
/// `database.url`; the auditor role is `database.auditor_role`.
///
/// # Errors
/// When the URL has no user or no auditor role is configured.
pub fn grant_roles(cfg: &NodeConfig) -> anyhow::Result<GrantRoles> {
    let app = url::Url::parse(cfg.database.url.expose())
        .context("database.url")?
        .username()
        .to_owned();
    let auditor = cfg
        .database
        .auditor_role
        .clone()
        .context("database.auditor_role is required to apply migrations")?;
    Ok(GrantRoles { app, auditor })
}

/// Builds the shared state from a validated config (does not connect yet).
///
/// # Errors
/// Unreadable keys or an unparsable database URL.
pub(crate) fn build_state(cfg: &NodeConfig) -> anyhow::Result<Arc<AppState>> {
    let keys = cfg
        .assertion
        .keys
        .iter()
        .map(AssertionKeyConfig::load)
        .collect::<Result<Vec<_>, _>>()
        .context("assertion.keys")?;
    let cred_key = std::fs::read(&cfg.credentials.key_file).context("credentials.key_file")?;
    let cipher = crypto::CredentialCipher::new(&cfg.credentials.kid, &cred_key)
        .context("credentials.key_file")?;
    let pool = db::pool::build(&cfg.database, &format!("region-node-{}", cfg.region.id))?;
    Ok(Arc::new(AppState {
        db: Db::new(pool),
        verifier: Verifier::new(cfg.region.id.clone(), &keys).with_peers(&cfg.region.peers),
        region: cfg.region.clone(),
        cipher,
        max_body_bytes: cfg.node.max_body_bytes,
        peers: api::Peers::new(&cfg.moves).map_err(|e| anyhow::anyhow!(e))?,
        webhooks: cfg.webhooks.clone(),
        connectors: workflow::connector::Connectors::new(&cfg.connectors, cfg.worker.call_timeout)?,
        metrics: metrics::recorder(),
    }))
}

/// Connections the health listener serves at once: probes and a scraper, not traffic.
const HEALTH_MAX_CONNECTIONS: usize = 64;
/// HTTP/2 streams per health connection.
const HEALTH_MAX_STREAMS: u32 = 8;
/// A health connection with nothing in flight this long is closed (probes reconnect).
const HEALTH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A node that passed its start-up checks, ready to serve on a listener.
pub struct Prepared {
    cfg: NodeConfig,
    /// The shared state (the worker runs over it).
    state: Arc<AppState>,
    app: axum::Router,
    /// The health listener's router (`/healthz`, `/readyz`, `/metrics` only).
    health: axum::Router,
    tls: Option<tls::NodeTls>,
    /// The webhook delivery runner, started by [`Prepared::serve_with_health`].
    deliveries: Option<webhooks::deliver::Runner>,
}

/// Everything a node does before it binds: migrations (when `migrate_on_start`), the check
/// that `database.url`'s role is bound by row-level security ([`db::pool::check_app_role`]:
/// not a superuser, no `BYPASSRLS`, owns nothing), keys and TLS files.
///
/// # Errors
/// Any of those failing; the node must not serve then.
pub async fn prepare(cfg: NodeConfig) -> anyhow::Result<Prepared> {
    if cfg.database.migrate_on_start {
        let owner = cfg
            .database
            .owner_url
            .as_ref()
            .map(|u| u.expose().as_str())
            .context("database.owner_url")?;
        let applied = db::migrate::migrate(owner, &grant_roles(&cfg)?).await?;
        tracing::info!(?applied, "migrations applied");
    }
    let app_name = format!("region-node-{}", cfg.region.id);
    db::pool::check_app_role(&cfg.database, &app_name).await?;
    let state = build_state(&cfg)?;
    let tls = cfg.tls.as_ref().map(tls::tls_acceptor).transpose()?;
    let timeout = cfg.node.request_timeout;
    let deliveries = webhooks::deliver::prepare(&state, &cfg.webhooks).context("webhooks")?;
    let health = api::health_router(Arc::clone(&state));
    let app = api::router(Arc::clone(&state)).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => ApiError::Unavailable("request timed out".into()).into_response(),
            }
        },
    ));
    Ok(Prepared {
        cfg,
        state,
        app,
        health,
        tls,
        deliveries,
    })
}

impl Prepared {
    /// Serves on `listener` until `shutdown` is cancelled, then drains.
    ///
    /// # Errors
    /// When the listener's address cannot be read or serving fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        self.serve_with_health(listener, None, shutdown).await
    }

    /// [`Prepared::serve`], and the plain-HTTP health listener (`node.health`: `/healthz`,
    /// `/readyz`, `/metrics`, nothing else) on `health` when given; both stop on `shutdown`.
    ///
    /// # Errors
    /// When the listener's address cannot be read or serving fails.
    pub async fn serve_with_health(
        self,
        listener: TcpListener,
        health: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Self {
            cfg,
            state,
            app,
            health: health_app,
            tls,
            deliveries,
        } = self;
        // The webhook delivery worker runs beside the listener and stops with it.
        let deliveries = deliveries.map(|r| r.spawn(shutdown.clone()));
        let tls = match (tls, &cfg.tls) {
            (Some(t), Some(c)) => {
                t.cert
                    .spawn_reloader(c.reload_interval, shutdown.clone())
                    .context("tls reloader: SIGHUP handler")?;
                if let Some(ca) = &t.client_ca {
                    ca.spawn_reloader(c.reload_interval, shutdown.clone())
                        .context("tls client ca reloader: SIGHUP handler")?;
                }
                Some(t.acceptor)
            }
            _ => None,
        };
        tracing::info!(
            region = %cfg.region.id,
            addr = %listener.local_addr()?,
            tls = tls.is_some(),
            "region node listening"
        );
        let limits = cfg.limits;
        let opts = ServeOptions {
            limits: Limits {
                max_connections: limits.max_connections,
                header_read_timeout: limits.header_read_timeout,
                max_header_bytes: None,
                h2_max_concurrent_streams: limits.h2_max_concurrent_streams,
                shutdown_grace: cfg.node.shutdown_grace,
                // The gateways keep pooled connections to the node; they close them.
                idle_timeout: None,
                max_connection_age: None,
            },
            tls,
        };
        let health = match health {
            Some(l) => {
                tracing::info!(addr = %l.local_addr()?, "region node health listener");
                let opts = ServeOptions {
                    limits: Limits {
                        max_connections: HEALTH_MAX_CONNECTIONS,
                        h2_max_concurrent_streams: HEALTH_MAX_STREAMS,
                        idle_timeout: Some(HEALTH_IDLE_TIMEOUT),
                        ..opts.limits
                    },
                    tls: None,
                };
                let service = TowerToHyperService::new(health_app);
                Some(tokio::spawn(serve::serve(
                    l,
                    opts,
                    service,
                    shutdown.clone(),
                )))
            }
            None => None,
        };
        // The workflow worker: stops claiming on shutdown and finishes what it runs.
        let worker = cfg.worker.enabled.then(|| {
            workflow::worker::start(
                Arc::clone(&state),
                cfg.worker.clone(),
                cfg.database.pool_size,
                shutdown.clone(),
            )
        });
        let service = TowerToHyperService::new(app);
        serve::serve(listener, opts, service, shutdown).await;
        if let Some(w) = worker {
            w.await.context("workflow worker")?;
        }
        if let Some(h) = health {
            h.await.context("health listener")?;
        }
        if let Some(d) = deliveries {
            d.await.context("webhook deliveries")?;
        }
        Ok(())
    }
}

/// Serves the node on `listener` until `shutdown` is cancelled, then drains: [`prepare`],
/// then [`Prepared::serve`] (no health listener: `node.health` is bound by `main`).
///
/// # Errors
/// Start-up failures (keys, TLS files, migrations, a database role RLS does not bind).
pub async fn run(
    cfg: NodeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    prepare(cfg).await?.serve(listener, shutdown).await
}
