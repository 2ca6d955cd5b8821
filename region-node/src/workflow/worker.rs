//! The workflow worker: runs queued executions, one `execution` job each
//! ([`crate::jobs`]), inside the run's tenant transaction as the run's principal.
//!
//! One claim of a job runs steps until the run ends, waits (a `delay`, a retry's backoff:
//! the job is rescheduled, no worker holds it meanwhile), or loses its lease. Each step is
//! three moves:
//! 1. **begin**, in a tenant transaction as the run's principal (its subject and the role it
//!    had when it started, resolved against live role data): the execution is locked, its
//!    status checked (a cancelled run stops here), `workflows.run` required; for an `action`,
//!    `connections.use`, the connection and the action enabled on it, and its credentials
//!    decrypted;
//! 2. **work**, outside any transaction: the connector call (timeout; the lease renewed
//!    meanwhile), or the transform/condition evaluated;
//! 3. **commit**, in a tenant transaction: the lease is checked (lost: nothing is written,
//!    the next holder runs the step again), the output stored in the execution's `state`, a
//!    log line written (timing and a redacted summary), the next step chosen.
//!
//! A step that a lost worker left unfinished is run again by the next holder (at least once;
//! logged as resumed), at most `worker.max_attempts` times before the run fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::BoxFuture;
use residency_config::node::WorkerConfig;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::action;
use super::connector::{self, CallError};
use super::definition::{Next, Step, StepKind};
use super::template;
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::jobs::{self, Claimed};
use crate::state::AppState;

mod phases;

/// The job kind of a workflow run.
pub(crate) const KIND: &str = "execution";

/// Longest summary of a step's input or output in a log line.
const SUMMARY_CHARS: usize = 200;

/// The worker: the node's state and `[worker]`.
pub(crate) struct Worker {
    st: Arc<AppState>,
    cfg: WorkerConfig,
    id: String,
}

/// Starts the worker of this node (when `worker.enabled`): the runner of `execution` jobs and
/// the queue-depth gauge, both stopped by `shutdown`.
pub(crate) fn start(
    st: Arc<AppState>,
    mut cfg: WorkerConfig,
    pool_size: u32,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Each running execution holds a pooled connection at times; requests need the rest.
    let most = usize::try_from(pool_size / 2).unwrap_or(1).max(1);
    if cfg.concurrency > most {
        tracing::warn!(
            configured = cfg.concurrency,
            used = most,
            "worker.concurrency lowered to half of database.pool_size"
        );
        cfg.concurrency = most;
    }
    let id = jobs::RunnerConfig::worker_id(KIND);
    tracing::info!(worker = %id, concurrency = cfg.concurrency, "workflow worker started");
    let runner = jobs::RunnerConfig {
        worker: id.clone(),
        concurrency: cfg.concurrency,
        poll_interval: cfg.poll_interval,
        lease: cfg.lease,
    };
    let db = st.db.clone();
    tokio::spawn(depth_gauge(
        db.clone(),
        cfg.poll_interval.max(Duration::from_secs(5)),
        shutdown.clone(),
    ));
    let handler = Arc::new(Worker { st, cfg, id });
    jobs::spawn(db, KIND, runner, handler, shutdown)
}

/// Sets `residency_node_job_queue_depth{kind}` (due jobs not held by a worker) every `every`.
async fn depth_gauge(
    db: crate::db::tenant_tx::Db,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Every kind reported once stays a series: a kind with no row now (its queue emptied)
    // is set to 0 rather than left at its last value.
    let mut due: std::collections::BTreeMap<String, i64> = [(KIND.to_owned(), 0)].into();
    loop {
        if let Ok(rows) = jobs::depth(&db).await {
            due.values_mut().for_each(|n| *n = 0);
            for (kind, n, _leased) in rows {
                due.insert(kind, n);
            }
            for (kind, &n) in &due {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!(crate::metrics::JOB_QUEUE_DEPTH, "kind" => kind.clone())
                    .set(n as f64);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

impl jobs::Handler for Worker {
    fn run(&self, job: Claimed) -> BoxFuture<'static, Result<(), ApiError>> {
        let w = Worker {
            st: Arc::clone(&self.st),
            cfg: self.cfg.clone(),
            id: self.id.clone(),
        };
        Box::pin(async move { w.run_job(job).await })
    }
}

/// The run's progress, kept in `executions.state`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// Index of the next step to run.
    #[serde(default)]
    next: usize,
    /// Outputs of the steps done, by step id.
    #[serde(default)]
    outputs: Map<String, Value>,
    /// Failed attempts of the current step.
    #[serde(default)]
    attempt: u32,
    /// A step a worker started and did not finish (its worker was lost).
    #[serde(default)]
    in_step: Option<usize>,
    /// Times a worker was lost mid-step in this run.
    #[serde(default)]
    lost: u32,
    /// When the current `delay` step ends (RFC 3339).
    #[serde(default)]
    delay_until: Option<chrono::DateTime<Utc>>,
}

/// What the begin phase decided.
enum Begin {
    /// Nothing to do (finished, cancelled, or the lease is gone).
    Stop,
    /// Run this step.
    Step(Box<Run>),
}

/// A step to run: its index, definition, template context, the action ready to call, and the
/// run's progress.
struct Run {
    index: usize,
    step: Step,
    ctx: Value,
    call: Option<action::Ready>,
    progress: Progress,
}

/// How a step ended.
#[derive(Clone)]
enum Outcome {
    /// Its output, and where to go next.
    Done(Value, Next, String),
    /// It failed; whether a retry may help.
    Failed(String, bool),
    /// A delay step waits until then.
    Wait(chrono::DateTime<Utc>),
}

fn caller(job: &Claimed, subject: String, role: String, execution: Uuid) -> Caller {
    Caller {
        tenant: job.tenant,
        subject,
        role_claim: role,
        request_id: execution.to_string(),
    }
}

/// Appends a log line to an execution (under its row lock, so `seq` is free).
pub(crate) async fn log(
    tx: &Tx<'_>,
    execution: Uuid,
    level: &str,
    message: &str,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO execution_logs (tenant_id, execution_id, seq, level, message) \
         SELECT $1, $2, coalesce(max(seq), 0) + 1, $3, $4 FROM execution_logs WHERE execution_id = $2",
        &[&tx.tenant(), &execution, &level, &message],
    )
    .await?;
    Ok(())
}

/// Compact JSON of `v`, credential-looking keys and the connection's secrets redacted, cut at
/// [`SUMMARY_CHARS`].
pub(crate) fn summary(v: &Value, secrets: &[String]) -> String {
    fn redact(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let lk = k.to_ascii_lowercase();
                        let hidden = [
                            "token",
                            "secret",
                            "password",
                            "authorization",
                            "api_key",
                            "credential",
                        ]
                        .iter()
                        .any(|w| lk.contains(w));
                        (
                            k.clone(),
                            if hidden {
                                json!("[redacted]")
                            } else {
                                redact(x)
                            },
                        )
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
            other => other.clone(),
        }
    }
    connector::truncate(
        &connector::scrub(&redact(v).to_string(), secrets),
        SUMMARY_CHARS,
    )
}

fn describe(step: &Step) -> String {
    match &step.kind {
        StepKind::Action { action, .. } => format!("step {} (action {action})", step.id),
        other => format!("step {} ({})", step.id, other.name()),
    }
}

impl Worker {
    async fn run_job(&self, job: Claimed) -> Result<(), ApiError> {
        let execution = job.subject;
        // Who the run acts as: read under the tenant's RLS setting (system scope: no role yet).
        let sys = caller(
            &job,
            format!("system:worker:{}", self.id),
            String::new(),
            execution,
        );
        let who = self
            .st
            .db
            .system(&sys, move |tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_opt(
                            "SELECT coalesce(run_by, created_by), coalesce(run_role, '') FROM executions WHERE id = $1",
                            &[&execution],
                        )
                        .await?
                        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))))
                })
            })
            .await?;
        let Some((subject, role)) = who else {
            // The execution is gone (deleted with its workflow): drop its job.
            let id = self.id.clone();
            self.st
                .db
                .system(&sys, move |tx| {
                    Box::pin(async move { jobs::finish(tx, job.id, &id).await })
                })
                .await?;
            return Ok(());
        };
        let run_as = caller(&job, subject, role, execution);
        loop {
            let begin = match self.begin(&job, &run_as).await {
                Ok(b) => b,
                // The run's role is gone (or the tenant): the run cannot go on as its principal.
                Err(e @ (ApiError::Forbidden(_) | ApiError::NotFound(_))) => {
                    self.fail_as_system(&job, &sys, &e.client_detail()).await?;
                    return Ok(());
                }
                // Credentials this node cannot decrypt (another key), a corrupt row: no retry
                // fixes it. The cause goes to the node's log, the run fails.
                Err(ApiError::Unexpected(e)) => {
                    tracing::error!(execution = %execution, error = %e, "workflow run failed on an internal error");
                    self.fail_as_system(&job, &sys, "an internal error occurred")
                        .await?;
                    return Ok(());
                }
                // The database is unavailable: the lease expires and the job is claimed again.
                Err(e) => return Err(e),
            };
            let Begin::Step(run) = begin else {
                return Ok(());
            };
            let Run {
                index,
                step,
                ctx,
                call,
                progress,
            } = *run;
            let started = Instant::now();
            let secrets = call
                .as_ref()
                .map(|c| connector::secrets(&c.credentials))
                .unwrap_or_default();
            let (outcome, input_summary) = self.work(&job, &step, &ctx, call, &progress).await;
            let elapsed = started.elapsed();
            let outcome_label = match &outcome {
                Outcome::Done(..) => "succeeded",
                Outcome::Failed(_, true) if progress.attempt < step.retries.max => "retried",
                Outcome::Failed(..) => "failed",
                Outcome::Wait(_) => "waiting",
            };
            if !matches!(outcome, Outcome::Wait(_)) {
                metrics::histogram!(
                    crate::metrics::WORKFLOW_STEP_SECONDS,
                    "kind" => step.kind.name(),
                    "outcome" => outcome_label
                )
                .record(elapsed.as_secs_f64());
            }
            // The step's work is done (a connector may have been called): a busy pool must not
            // make the next holder run it again, so the commit is tried a few times.
            let mut tries = 0;
            let more = loop {
                let done = self
                    .commit(
                        &job,
                        &run_as,
                        index,
                        &step,
                        progress.clone(),
                        outcome.clone(),
                        elapsed,
                        &input_summary,
                        &secrets,
                    )
                    .await;
                match done {
                    Err(ApiError::Unavailable(_)) if tries < 3 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    other => break other?,
                }
            };
            if !more {
                return Ok(());
            }
        }
    }

    /// Fails the run when its principal can no longer be resolved (a system-scoped
    /// transaction: RLS still holds it to the run's tenant).
    async fn fail_as_system(
        &self,
        job: &Claimed,
        sys: &Caller,
        reason: &str,
    ) -> Result<(), ApiError> {
        let (execution, id, job_id) = (job.subject, self.id.clone(), job.id);
        let reason = format!("the run stopped: {reason}");
        let finished = self
            .st
            .db
            .system(sys, move |tx| {
                Box::pin(async move {
                    if !jobs::finish(tx, job_id, &id).await? {
                        return Ok(false);
                    }
                    let n = tx
                        .execute(
                            "UPDATE executions SET status = 'failed', error = $2, finished_at = now() \
                             WHERE id = $1 AND status IN ('queued', 'running')",
                            &[&execution, &reason],
                        )
                        .await?;
                    if n == 1 {
                        log(tx, execution, "error", &reason).await?;
                        announce(tx, execution, "failed", Some(&reason)).await?;
                    }
                    Ok(n == 1)
                })
            })
            .await?;
        if finished {
            run_finished(job, "failed");
        }
        Ok(())
    }

    /// Runs a step's work outside any transaction. Returns the outcome and the summary of the
    /// rendered input.
    async fn work(
        &self,
        job: &Claimed,
        step: &Step,
        ctx: &Value,
        call: Option<action::Ready>,
        progress: &Progress,
    ) -> (Outcome, String) {
        match &step.kind {
            StepKind::Transform { output } => match template::render(output, ctx) {
                Ok(v) => (
                    Outcome::Done(v, Next::Continue, String::new()),
                    String::new(),
                ),
                Err(e) => (Outcome::Failed(e.to_string(), false), String::new()),
            },
            StepKind::Condition {
                value,
                op,
                to,
                then,
                otherwise,
            } => {
                let v = match template::render_str(value, ctx) {
                    Ok(v) => Some(v),
                    Err(template::TemplateError::Missing(_)) => None,
                    Err(e) => return (Outcome::Failed(e.to_string(), false), String::new()),
                };
                let to = match template::render(to, ctx) {
                    Ok(t) => t,
                    Err(e) => return (Outcome::Failed(e.to_string(), false), String::new()),
                };
                let holds = op.holds(v.as_ref(), &to);
                let next = if holds {
                    then.clone()
                } else {
                    otherwise.clone()
                };
                let note = format!(
                    "{holds} → {}",
                    match &next {
                        Next::Continue => "next step".to_owned(),
                        Next::End => "end".to_owned(),
                        Next::Step(s) => s.clone(),
                    }
                );
                (
                    Outcome::Done(json!({"result": holds}), next, note),
                    String::new(),
                )
            }
            StepKind::Delay { seconds } => {
                let now = Utc::now();
                match progress.delay_until {
                    Some(until) if until <= now => (
                        Outcome::Done(json!({}), Next::Continue, String::new()),
                        String::new(),
                    ),
                    Some(until) => (Outcome::Wait(until), String::new()),
                    None => {
                        let secs = i64::try_from(*seconds).unwrap_or(i64::MAX);
                        (
                            Outcome::Wait(now + chrono::Duration::seconds(secs)),
                            String::new(),
                        )
                    }
                }
            }
            StepKind::Action { input, .. } => {
                let Some(ready) = call else {
                    return (
                        Outcome::Failed(
                            "the step names no connection and the workflow has none".into(),
                            false,
                        ),
                        String::new(),
                    );
                };
                let rendered = match template::render(input, ctx) {
                    Ok(v) => v,
                    Err(e) => return (Outcome::Failed(e.to_string(), false), String::new()),
                };
                let secrets = connector::secrets(&ready.credentials);
                let input_summary = summary(&rendered, &secrets);
                let call = self.st.connectors.call(
                    &ready.spec,
                    &ready.credentials,
                    &rendered,
                    step.timeout,
                );
                let outcome = tokio::select! {
                    r = call => match r {
                        Ok(answer) => Outcome::Done(answer.body, Next::Continue, String::new()),
                        Err(e) => {
                            let retry = e.retryable();
                            let why = match &e {
                                CallError::Status(a) => format!("{e}: {}", summary(&a.body, &secrets)),
                                _ => e.to_string(),
                            };
                            Outcome::Failed(why, retry)
                        }
                    },
                    () = self.heartbeat(job) => Outcome::Failed("the worker lost its lease during the call".into(), true),
                };
                (outcome, input_summary)
            }
        }
    }

    /// Renews the lease every third of it while a call runs; returns only when it is lost.
    async fn heartbeat(&self, job: &Claimed) {
        let every = self.cfg.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let (id, worker, lease) = (job.id, self.id.clone(), self.cfg.lease);
            let sys = caller(
                job,
                format!("system:worker:{}", self.id),
                String::new(),
                job.subject,
            );
            let held = self
                .st
                .db
                .system(&sys, move |tx| {
                    Box::pin(async move { jobs::renew(tx, id, &worker, lease).await })
                })
                .await;
            if matches!(held, Ok(false)) {
                return;
            }
        }
    }
}

/// A number in [0.5, 1] from the system RNG, the backoff's jitter.
fn jitter() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0
}

/// Ends a run (`succeeded`, `failed`), drops its job, logs and audits it.
async fn end(
    tx: &Tx<'_>,
    execution: Uuid,
    job: Uuid,
    worker: &str,
    status: &str,
    error: Option<&str>,
) -> Result<(), ApiError> {
    jobs::finish(tx, job, worker).await?;
    tx.execute(
        "UPDATE executions SET status = $2, error = $3, finished_at = now() WHERE id = $1",
        &[&execution, &status, &error],
    )
    .await?;
    if status == "succeeded" {
        log(tx, execution, "info", "the run succeeded").await?;
    }
    tx.audit(
        "execution.finish",
        "execution",
        &execution.to_string(),
        json!({ "status": status }),
    )
    .await?;
    announce(tx, execution, status, error).await
}

/// The `workflow.run.finished` webhook event, in the transaction that ends the run: it exists
/// exactly when the end commits.
pub(crate) async fn announce(
    tx: &Tx<'_>,
    execution: Uuid,
    status: &str,
    error: Option<&str>,
) -> Result<(), ApiError> {
    let workflow: Option<Uuid> = tx
        .query_opt(
            "SELECT workflow_id FROM executions WHERE id = $1",
            &[&execution],
        )
        .await?
        .map(|r| r.get(0));
    crate::webhooks::emit(
        tx,
        crate::webhooks::EventType::WorkflowRunFinished,
        json!({
            "execution_id": execution,
            "workflow_id": workflow,
            "status": status,
            "error": error,
        }),
    )
    .await?;
    Ok(())
}

/// Called once a run has ended and its end is committed (the webhook event was written with
/// the end, [`announce`]).
fn run_finished(job: &Claimed, status: &str) {
    tracing::info!(execution = %job.subject, status, "workflow run finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_redact_credentials_and_are_short() {
        let v = json!({"text": "hi sk-live-123456", "api_key": "abc", "nested": {"Authorization": "x"}});
        let s = summary(&v, &["sk-live-123456".to_owned()]);
        assert!(
            !s.contains("sk-live-123456") && !s.contains("\"abc\""),
            "{s}"
        );
        assert!(s.contains("[redacted]"), "{s}");
        let long = json!({"text": "x".repeat(1000)});
        assert!(summary(&long, &[]).chars().count() <= SUMMARY_CHARS + 1);
    }

    #[test]
    fn jitter_stays_in_its_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }
}
