//! Active health checks: every `health_check.interval`, `GET /readyz` on every upstream of
//! every region, concurrently, each bounded by `health_check.timeout`. The outcome feeds the
//! same health state as passive ejection ([`Region::record_check`]): `unhealthy_threshold`
//! consecutive failures take an upstream out of rotation, `healthy_threshold` successes bring
//! it back.
//!
//! A region node's `/readyz` fails while its database is unreachable, so a node whose
//! database is down stops receiving requests (503 + `Retry-After` for its tenants) and gets
//! them again once it recovers, without a gateway restart.
//!
//! Checks use a client built from the region's own TLS settings
//! ([`crate::proxy::tls::NodeTls`]), so an upstream whose certificate the region's CA does not
//! accept, or that refuses the gateway's client certificate, fails its checks (`tls error`).
//!
//! Not here: which upstream a request goes to ([`crate::proxy::upstream`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_config::gateway::HealthCheckConfig;
use residency_core::assertion::now_secs;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::proxy::tls::{self, NodeConnector};
use crate::proxy::upstream::{CheckResult, Region, Thresholds, Upstream};

/// The path every region node answers without a credential.
pub(crate) const READYZ: &str = "/readyz";

type CheckClient = Client<NodeConnector, Empty<Bytes>>;

/// Starts the checker for `regions`; it runs until `shutdown`. Does nothing when checks are
/// disabled.
pub(crate) fn spawn(
    regions: Vec<Arc<Region>>,
    cfg: &HealthCheckConfig,
    shutdown: CancellationToken,
) {
    if !cfg.enabled {
        return;
    }
    // One client per region, with the region's trust and client certificate. No idle
    // connections kept: a check must notice a node that stopped accepting (or whose
    // certificate changed).
    let clients: Vec<CheckClient> = regions
        .iter()
        .map(|r| {
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(r.tls().connector(cfg.timeout))
        })
        .collect();
    for r in &regions {
        r.set_check_interval(cfg.interval);
    }
    let thresholds = Thresholds {
        unhealthy: cfg.unhealthy_threshold,
        healthy: cfg.healthy_threshold,
    };
    let (interval, timeout) = (cfg.interval, cfg.timeout);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checks = regions.iter().zip(&clients).flat_map(|(region, client)| {
                region.upstreams().iter().map(move |up| {
                    async move {
                        let result = check(client, up, timeout).await;
                        let label = if result.ok { "ok" } else { "error" };
                        metrics::counter!(m::HEALTH_CHECKS_TOTAL, "region" => region.label().clone(), "result" => label)
                            .increment(1);
                        region.record_check(up, result, thresholds);
                    }
                })
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = join_all(checks) => {}
            }
        }
    });
}

/// One `GET /readyz`.
async fn check(client: &CheckClient, upstream: &Upstream, timeout: Duration) -> CheckResult {
    let at = now_secs();
    let req = Request::get(format!("{}{READYZ}", upstream.url()))
        .header(http::header::USER_AGENT, "residency-gateway-health")
        .body(Empty::new());
    let (ok, detail) = match req {
        Err(_) => (false, "invalid upstream url".to_owned()),
        Ok(req) => match tokio::time::timeout(timeout, client.request(req)).await {
            Err(_) => (false, "timeout".to_owned()),
            Ok(Err(e)) if tls::is_tls_error(&e) => (false, "tls error".to_owned()),
            Ok(Err(e)) if e.is_connect() => (false, "connect error".to_owned()),
            Ok(Err(_)) => (false, "request failed".to_owned()),
            Ok(Ok(resp)) => (
                resp.status().is_success(),
                resp.status().as_u16().to_string(),
            ),
        },
    };
    CheckResult { at, ok, detail }
}
