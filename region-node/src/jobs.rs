//! The region's job queue: background work (workflow runs, webhook deliveries) kept in the
//! region's own Postgres (`jobs`, migration `0004_jobs.sql`) and run by the workers of this
//! region's nodes. No broker: several node replicas are safe because a job is claimed with
//! `FOR UPDATE SKIP LOCKED` and held by a lease that expires.
//!
//! Two halves, on purpose:
//! - [`claim`] is the **only** query of the node that crosses tenants. It calls the SQL
//!   function `claim_jobs` (SECURITY DEFINER, see the migration), which hands back ids and
//!   counters (`Claimed`), never content.
//! - Everything else — [`enqueue`], [`finish`], [`reschedule`], [`renew`] and whatever a
//!   handler reads or writes — runs inside the job's tenant transaction ([`Tx`]), under RLS.
//!   The lease calls check `lease_owner`, so a worker whose lease expired (and whose job another
//!   worker took) learns it and writes nothing more.
//!
//! [`spawn`] runs one kind of job: it polls [`claim`], runs up to `concurrency` jobs at once
//! through a [`Handler`], and stops claiming when the node shuts down.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use residency_core::TenantId;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::tenant_tx::{Db, Tx};
use crate::error::ApiError;

/// A job handed to this worker: ids and counters only.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    /// The job's tenant: the handler opens this tenant's transaction.
    pub(crate) tenant: TenantId,
    /// The job.
    pub(crate) id: Uuid,
    /// What it runs (an execution, a delivery), by the kind's convention.
    pub(crate) subject: Uuid,
    /// Claims so far, this one included: a handler fails the job past its limit (a worker
    /// that crashed mid-job leaves its lease to expire, and the next claim counts again).
    pub(crate) attempts: i32,
}

/// Queues a job in the caller's tenant transaction, so it exists exactly when the row it
/// runs (the execution, the delivery) commits. `run_at` `None` means now.
///
/// # Errors
/// Database errors.
pub(crate) async fn enqueue(
    tx: &Tx<'_>,
    kind: &str,
    subject: Uuid,
    run_at: Option<DateTime<Utc>>,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO jobs (tenant_id, id, kind, subject_id, run_at) \
         VALUES ($1, $2, $3, $4, coalesce($5, now()))",
        &[&tx.tenant(), &id, &kind, &subject, &run_at],
    )
    .await?;
    Ok(id)
}

/// Claims up to `max` due jobs of `kind` for `worker`, leased for `lease`: due means `run_at`
/// has passed and no lease is held (or the holder's lease expired).
///
/// # Errors
/// Database errors, or the pool's checkout timeout.
pub(crate) async fn claim(
    db: &Db,
    kind: &str,
    worker: &str,
    lease: Duration,
    max: u32,
) -> Result<Vec<Claimed>, ApiError> {
    let conn = db.checkout().await?;
    let lease_ms = i32::try_from(lease.as_millis()).unwrap_or(i32::MAX).max(1);
    let max = i32::try_from(max).unwrap_or(i32::MAX).max(1);
    // The connection's cached statement: a poll is one round trip, not a prepare and a query.
    let claim = crate::db::tenant_tx::statement(
        &conn.client,
        &conn.statements,
        "SELECT job_tenant, job_id, job_subject, job_attempts FROM claim_jobs($1, $2, $3, $4)",
    )
    .await?;
    let rows = conn
        .client
        .query(&claim, &[&kind, &worker, &lease_ms, &max])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            tenant: TenantId::from_uuid(r.get(0)),
            id: r.get(1),
            subject: r.get(2),
            attempts: r.get(3),
        })
        .collect())
}

/// Removes a finished job, if `worker` still holds its lease. `false`: the lease was lost
/// (expired and taken by another worker, or the job is gone), so the caller must not commit
/// the results it was about to write.
///
/// # Errors
/// Database errors.
pub(crate) async fn finish(tx: &Tx<'_>, id: Uuid, worker: &str) -> Result<bool, ApiError> {
    let n = tx
        .execute(
            "DELETE FROM jobs WHERE id = $1 AND lease_owner = $2",
            &[&id, &worker],
        )
        .await?;
    Ok(n == 1)
}

/// Puts a job back to wait until `run_at` (a retry's backoff, a delay step), releasing the
/// lease. `false` as for [`finish`].
///
/// # Errors
/// Database errors.
pub(crate) async fn reschedule(
    tx: &Tx<'_>,
    id: Uuid,
    worker: &str,
    run_at: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let n = tx
        .execute(
            "UPDATE jobs SET run_at = $3, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
            &[&id, &worker, &run_at],
        )
        .await?;
    Ok(n == 1)
}

/// Extends `worker`'s lease on a job by `lease` from now (a heartbeat for long work).
/// `false` as for [`finish`].
///
/// # Errors
/// Database errors.
pub(crate) async fn renew(
    tx: &Tx<'_>,
    id: Uuid,
    worker: &str,
    lease: Duration,
) -> Result<bool, ApiError> {
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let n = tx
        .execute(
            "UPDATE jobs SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
             WHERE id = $1 AND lease_owner = $2 AND lease_until >= clock_timestamp()",
            &[&id, &worker, &(ms as f64)],
        )
        .await?;
    Ok(n == 1)
}

/// Jobs per kind: `(kind, due and unleased, leased)`, for the queue-depth gauge.
///
/// # Errors
/// Database errors, or the pool's checkout timeout.
pub(crate) async fn depth(db: &Db) -> Result<Vec<(String, i64, i64)>, ApiError> {
    let conn = db.checkout().await?;
    let depth = crate::db::tenant_tx::statement(
        &conn.client,
        &conn.statements,
        "SELECT job_kind, due, leased FROM job_queue_depth()",
    )
    .await?;
    let rows = conn.client.query(&depth, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Runs the jobs of one kind. Implementations open the job's tenant transaction, do the work,
/// and end with [`finish`] or [`reschedule`]; an error they return is logged and the lease
/// left to expire, so the job is claimed again (its `attempts` counting the failure).
pub(crate) trait Handler: Send + Sync + 'static {
    /// Runs one claimed job.
    fn run(&self, job: Claimed) -> BoxFuture<'static, Result<(), ApiError>>;
}

/// How a runner claims.
#[derive(Debug, Clone)]
pub(crate) struct RunnerConfig {
    /// This worker's id, recorded as the lease owner (unique per process).
    pub(crate) worker: String,
    /// Jobs run at once.
    pub(crate) concurrency: usize,
    /// Pause between claims when the last one found nothing.
    pub(crate) poll_interval: Duration,
    /// How long a claim holds a job before another worker may take it.
    pub(crate) lease: Duration,
}

impl RunnerConfig {
    /// A worker id unique to this process and runner: host-independent, random.
    #[must_use]
    pub(crate) fn worker_id(kind: &str) -> String {
        format!("{kind}-{}", Uuid::new_v4().simple())
    }
}

/// Starts the runner of `kind`: claims while permits are free, runs each job on its own task,
/// and on `shutdown` stops claiming and waits for the jobs it runs.
pub(crate) fn spawn(
    db: Db,
    kind: &'static str,
    cfg: RunnerConfig,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        let mut running = JoinSet::new();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = permits.available_permits();
            let found = if free == 0 {
                0
            } else {
                let want = u32::try_from(free).unwrap_or(u32::MAX);
                match claim(&db, kind, &cfg.worker, cfg.lease, want).await {
                    Ok(jobs) => {
                        let n = jobs.len();
                        for job in jobs {
                            // Never fails: `free` permits were available and only this loop
                            // takes them.
                            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                                break;
                            };
                            let h = Arc::clone(&handler);
                            running.spawn(async move {
                                let (id, attempts) = (job.id, job.attempts);
                                if let Err(e) = h.run(job).await {
                                    tracing::warn!(kind, job = %id, attempts, error = %e, "job failed; its lease will expire and it will be claimed again");
                                }
                                drop(permit);
                            });
                        }
                        n
                    }
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "claiming jobs failed");
                        0
                    }
                }
            };
            if found == 0 || permits.available_permits() == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(cfg.poll_interval) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
        }
        while running.join_next().await.is_some() {}
    })
}
