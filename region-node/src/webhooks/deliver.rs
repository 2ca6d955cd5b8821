//! The delivery worker: a [`crate::jobs::Handler`] for `webhook_delivery` jobs.
//!
//! One attempt is three steps, so no transaction stays open while a customer's server is
//! slow: (1) in the job's tenant transaction, read the delivery and its subscription and open
//! the secret; (2) outside any transaction, resolve the target, drop forbidden addresses
//! ([`super::target::resolve`], against DNS rebinding), connect to an allowed address, and
//! POST the signed body within `attempt_timeout`; (3) in a new tenant transaction, record the
//! attempt and finish the job (delivered, dead-lettered, failed) or reschedule it (backoff
//! with full jitter). Delivery is at least once: receivers deduplicate by
//! `Residency-Delivery`.
//!
//! While the tenant is frozen for a move, the worker writes nothing (the lease expires; the
//! job moves with the tenant and runs in the new home region).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use bytes::Bytes;
use chrono::Utc;
use futures_util::future::BoxFuture;
use residency_config::node::webhooks::WebhooksConfig;
use residency_core::wire::customer::WebhookAttempt;
use rustls::pki_types::ServerName;
use serde_json::Value;
use uuid::Uuid;

use super::send;
use super::target::{self, Refused};
use crate::db::tenant_tx::{Caller, Db, Tx};
use crate::error::ApiError;
use crate::jobs::{self, Claimed, Handler};
use crate::state::AppState;

/// The wait before retry `attempt` (1-based: after the first failure, `attempt` = 1): a
/// uniformly random time in `[0, min(cap, base · 2^(attempt-1))]` ("full jitter"), so
/// receivers coming back from an outage are not hit by every retry at once.
#[must_use]
pub(crate) fn backoff(cfg: &WebhooksConfig, attempt: u32, random: u64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = cfg
        .backoff_base
        .saturating_mul(1u32 << exp)
        .min(cfg.backoff_cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(if ms == 0 { 0 } else { random % (ms + 1) })
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failing RNG only makes the jitter zero, which is still a valid backoff.
    let _ = SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

/// The worker's shared parts.
pub(crate) struct Deliverer {
    state: Arc<AppState>,
    cfg: WebhooksConfig,
    tls: tokio_rustls::TlsConnector,
    worker: String,
}

impl Deliverer {
    /// The handler for runner `worker`.
    ///
    /// # Errors
    /// An unreadable `webhooks.ca_file`.
    pub(crate) fn new(
        state: Arc<AppState>,
        cfg: WebhooksConfig,
        worker: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            state,
            tls: send::tls_connector(&cfg)?,
            cfg,
            worker,
        })
    }
}

/// What step (1) found.
enum Loaded {
    /// Nothing to do now (frozen tenant): leave the lease to expire.
    Later,
    /// Done already: the job was finished in step (1).
    Done,
    /// Attempt it.
    Send(Box<Pending>),
}

struct Pending {
    delivery: Uuid,
    subscription: Uuid,
    url: String,
    secret: Vec<u8>,
    event_type: String,
    body: Bytes,
    attempts: i32,
}

/// One attempt's result.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    duration: Duration,
    at: chrono::DateTime<Utc>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

fn caller(job: &Claimed) -> Caller {
    Caller {
        tenant: job.tenant,
        subject: "system:webhooks".to_owned(),
        role_claim: String::new(),
        request_id: format!("job-{}", job.id),
    }
}

async fn frozen(tx: &Tx<'_>) -> Result<bool, ApiError> {
    Ok(tx
        .query_opt("SELECT frozen FROM tenants", &[])
        .await?
        .is_none_or(|r| r.get::<_, bool>(0)))
}

impl Deliverer {
    async fn load(&self, job: &Claimed) -> Result<Loaded, ApiError> {
        let (id, subject, worker) = (job.id, job.subject, self.worker.clone());
        let state = Arc::clone(&self.state);
        self.state
            .db
            .system(&caller(job), move |tx| {
                Box::pin(async move {
                    if frozen(tx).await? {
                        return Ok(Loaded::Later);
                    }
                    let row = tx
                        .query_opt(
                            "SELECT d.status, d.attempts, d.payload, d.event_type, d.subscription_id, \
                                    s.url, s.secret, s.enabled \
                             FROM webhook_deliveries d JOIN webhook_subscriptions s \
                               ON s.tenant_id = d.tenant_id AND s.id = d.subscription_id \
                             WHERE d.id = $1",
                            &[&subject],
                        )
                        .await?;
                    let Some(row) = row else {
                        // The subscription (and with it the delivery) was deleted.
                        jobs::finish(tx, id, &worker).await?;
                        return Ok(Loaded::Done);
                    };
                    if row.get::<_, &str>("status") != "pending" {
                        jobs::finish(tx, id, &worker).await?;
                        return Ok(Loaded::Done);
                    }
                    if !row.get::<_, bool>("enabled") {
                        tx.execute(
                            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, \
                             last_error = 'the webhook is disabled', updated_at = now() WHERE id = $1",
                            &[&subject],
                        )
                        .await?;
                        jobs::finish(tx, id, &worker).await?;
                        count("failed");
                        return Ok(Loaded::Done);
                    }
                    let subscription: Uuid = row.get("subscription_id");
                    let sealed: Vec<u8> = row.get("secret");
                    let Ok(secret) = state.cipher.open(tx.tenant(), subscription, &sealed) else {
                        // Sealed under another key (a key rotated without re-sealing): no
                        // retry can help. Given up, visibly, instead of looping on the lease.
                        tracing::error!(tenant = %tx.tenant(), %subscription, "webhook secret cannot be opened with this region's key");
                        tx.execute(
                            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, \
                             last_error = 'the signing secret cannot be read; recreate the webhook', \
                             updated_at = now() WHERE id = $1",
                            &[&subject],
                        )
                        .await?;
                        jobs::finish(tx, id, &worker).await?;
                        count("failed");
                        return Ok(Loaded::Done);
                    };
                    let payload: Value = row.get("payload");
                    let body = serde_json::to_vec(&payload)
                        .map_err(|e| ApiError::Unexpected(e.into()))?;
                    Ok(Loaded::Send(Box::new(Pending {
                        delivery: subject,
                        subscription,
                        url: row.get("url"),
                        secret,
                        event_type: row.get("event_type"),
                        body: Bytes::from(body),
                        attempts: row.get("attempts"),
                    })))
                })
            })
            .await
    }

    async fn attempt(&self, s: &Pending) -> Outcome {
        let at = Utc::now();
        let start = Instant::now();
        let result = tokio::time::timeout(self.cfg.attempt_timeout, self.post(s)).await;
        let duration = start.elapsed();
        metrics::histogram!(crate::metrics::WEBHOOK_ATTEMPT_SECONDS).record(duration.as_secs_f64());
        let (status, error) = match result {
            Ok(Ok(code)) if (200..300).contains(&code) => (Some(code), None),
            Ok(Ok(code)) => (Some(code), Some(format!("the receiver answered {code}"))),
            Ok(Err(why)) => (None, Some(why)),
            Err(_) => (None, Some("timed out".to_owned())),
        };
        Outcome {
            status,
            error,
            duration,
            at,
        }
    }

    /// Resolves, checks, connects and POSTs. The error text is client-safe: it never holds a
    /// resolved address, a TLS library message or the receiver's body.
    async fn post(&self, s: &Pending) -> Result<u16, String> {
        let t = target::parse(&s.url, &self.cfg).map_err(|e| e.to_string())?;
        let addrs = target::resolve(&t, &self.cfg).await.map_err(|e| match e {
            Refused::Forbidden => {
                "the host resolves to a private, loopback, link-local or otherwise reserved address: not delivered"
                    .to_owned()
            }
            other => other.to_string(),
        })?;
        let tcp = send::connect(&addrs).await?;
        let now = Utc::now().timestamp();
        let sig = send::signature(&s.secret, now, &s.body);
        let req = send::request(
            &t,
            &send::Signed {
                signature: &sig,
                event_type: &s.event_type,
                delivery: s.delivery,
                body: &s.body,
            },
        )?;
        if t.tls {
            let name = ServerName::try_from(t.host.clone())
                .map_err(|_| "the host is not a valid tls server name".to_owned())?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|_| "tls handshake failed".to_owned())?;
            send::exchange(tls, req).await
        } else {
            send::exchange(tcp, req).await
        }
    }

    async fn record(&self, job: &Claimed, s: Pending, out: Outcome) -> Result<(), ApiError> {
        let (id, worker) = (job.id, self.worker.clone());
        let cfg = self.cfg.clone();
        self.state
            .db
            .system(&caller(job), move |tx| {
                Box::pin(async move {
                    if frozen(tx).await? {
                        // Frozen meanwhile: record nothing; the move carries the delivery
                        // and its job, and the new home sends it again (at least once).
                        return Ok(());
                    }
                    let attempts = s.attempts.saturating_add(1);
                    let log = serde_json::to_value([WebhookAttempt {
                        at: out.at,
                        status_code: out.status.map(i32::from),
                        duration_ms: i32::try_from(out.duration.as_millis()).unwrap_or(i32::MAX),
                        error: out.error.clone(),
                    }])
                    .map_err(|e| ApiError::Unexpected(e.into()))?;
                    let gone = out.status == Some(410);
                    let max = i32::try_from(cfg.max_attempts).unwrap_or(i32::MAX);
                    let (status, next) = if out.delivered() {
                        ("delivered", None)
                    } else if gone {
                        ("failed", None)
                    } else if attempts >= max {
                        ("dead", None)
                    } else {
                        let wait = backoff(&cfg, u32::try_from(attempts).unwrap_or(1), random_u64());
                        let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                        ("pending", Some(Utc::now() + wait))
                    };
                    tx.execute(
                        "UPDATE webhook_deliveries SET status = $2, attempts = $3, \
                           last_status_code = $4, last_error = $5, last_duration_ms = $6, \
                           next_attempt_at = $7, attempt_log = attempt_log || $8::jsonb, \
                           updated_at = now() WHERE id = $1",
                        &[
                            &s.delivery,
                            &status,
                            &attempts,
                            &out.status.map(i32::from),
                            &out.error,
                            &i32::try_from(out.duration.as_millis()).unwrap_or(i32::MAX),
                            &next,
                            &log,
                        ],
                    )
                    .await?;
                    if gone {
                        // 410 Gone: the receiver says the endpoint is retired for good. The
                        // subscription is disabled (its other pending deliveries fail when
                        // their turn comes) and the audit says who did it.
                        tx.execute(
                            "UPDATE webhook_subscriptions SET enabled = false, updated_at = now() WHERE id = $1",
                            &[&s.subscription],
                        )
                        .await?;
                        tx.audit(
                            "webhook.disable",
                            "webhook",
                            &s.subscription.to_string(),
                            serde_json::json!({ "reason": "the receiver answered 410 Gone" }),
                        )
                        .await?;
                    }
                    let kept = match next {
                        Some(at) => jobs::reschedule(tx, id, &worker, at).await?,
                        None => jobs::finish(tx, id, &worker).await?,
                    };
                    if !kept {
                        // Another worker took the job after our lease expired: roll back.
                        return Err(ApiError::Conflict("the job's lease was lost".into()));
                    }
                    count(if out.delivered() { "delivered" } else if gone { "gone" } else if status == "dead" { "dead" } else { "retry" });
                    Ok(())
                })
            })
            .await
    }
}

fn count(outcome: &'static str) {
    metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

impl Handler for Deliverer {
    fn run(&self, job: Claimed) -> BoxFuture<'static, Result<(), ApiError>> {
        let this = Self {
            state: Arc::clone(&self.state),
            cfg: self.cfg.clone(),
            tls: self.tls.clone(),
            worker: self.worker.clone(),
        };
        Box::pin(async move {
            let s = match this.load(&job).await? {
                Loaded::Later | Loaded::Done => return Ok(()),
                Loaded::Send(s) => *s,
            };
            let out = this.attempt(&s).await;
            tracing::debug!(
                tenant = %job.tenant,
                delivery = %s.delivery,
                status = ?out.status,
                "webhook attempt"
            );
            this.record(&job, s, out).await
        })
    }
}

/// The delivery runner, built before the node binds (so a bad `webhooks.ca_file` stops the
/// start) and started by [`Runner::spawn`] beside the listener.
pub(crate) struct Runner {
    db: Db,
    cfg: jobs::RunnerConfig,
    handler: Arc<Deliverer>,
}

/// The runner when `[webhooks] enabled`.
///
/// # Errors
/// An unreadable `webhooks.ca_file`.
pub(crate) fn prepare(
    state: &Arc<AppState>,
    cfg: &WebhooksConfig,
) -> anyhow::Result<Option<Runner>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let worker = jobs::RunnerConfig::worker_id(super::KIND);
    let handler = Deliverer::new(Arc::clone(state), cfg.clone(), worker.clone())?;
    Ok(Some(Runner {
        db: state.db.clone(),
        cfg: jobs::RunnerConfig {
            worker,
            concurrency: cfg.concurrency,
            poll_interval: cfg.poll_interval,
            // Longer than an attempt plus its two short transactions, so a live attempt
            // keeps its job.
            lease: cfg.attempt_timeout + Duration::from_secs(30),
        },
        handler: Arc::new(handler),
    }))
}

impl Runner {
    /// Starts claiming; stops claiming when `shutdown` fires and finishes the attempts in
    /// flight (each bounded by `attempt_timeout`).
    pub(crate) fn spawn(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        jobs::spawn(self.db, super::KIND, self.cfg, self.handler, shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_t_dot_body() {
        // HMAC-SHA256("key", "1.{}") computed independently with Python's hmac module.
        let s = send::signature(b"key", 1, b"{}");
        assert_eq!(
            s,
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_eq!(s.len(), "t=1,v1=".len() + 64);
        assert_ne!(send::signature(b"key", 2, b"{}"), s);
        assert_ne!(send::signature(b"other", 1, b"{}"), s);
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let cfg = WebhooksConfig {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(10),
            ..WebhooksConfig::default()
        };
        assert_eq!(
            backoff(&cfg, 1, u64::MAX),
            Duration::from_millis(u64::MAX % 1001)
        );
        for (attempt, ceiling_ms) in [
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 10_000),
            (40, 10_000),
        ] {
            for r in [0, 1, 999, 123_456_789, u64::MAX] {
                assert!(backoff(&cfg, attempt, r) <= Duration::from_millis(ceiling_ms));
            }
            assert_eq!(
                backoff(&cfg, attempt, ceiling_ms),
                Duration::from_millis(ceiling_ms)
            );
        }
    }
}
