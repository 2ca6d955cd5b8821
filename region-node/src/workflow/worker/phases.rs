//! The two transactions of a step: `begin` (lock the execution, check status, principal and
//! permissions, ready the action) and `commit` (check the lease, store the outcome, log it,
//! choose the next step). Both run in the run's tenant transaction, as its principal.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{
    describe, end, jitter, log, run_finished, summary, Begin, Outcome, Progress, Run, Worker,
};
use crate::db::tenant_tx::Caller;
use crate::error::ApiError;
use crate::jobs::{self, Claimed};
use crate::rbac::Permission;
use crate::workflow::action;
use crate::workflow::definition::{self, Definition, Next, Step, StepKind};

impl Worker {
    pub(super) async fn begin(&self, job: &Claimed, run_as: &Caller) -> Result<Begin, ApiError> {
        let (execution, worker, job_id) = (job.subject, self.id.clone(), job.id);
        let max_lost = self.cfg.max_attempts;
        let st = Arc::clone(&self.st);
        let (lease, attempts) = (self.cfg.lease, job.attempts);
        let (out, finished) = self
            .st
            .db
            .tenant(run_as, move |tx| {
                Box::pin(async move {
                    let row = tx
                        .query_opt(
                            "SELECT e.status, e.state, e.input, w.definition FROM executions e \
                             JOIN workflows w ON w.id = e.workflow_id WHERE e.id = $1 FOR UPDATE OF e",
                            &[&execution],
                        )
                        .await?;
                    let Some(row) = row else {
                        jobs::finish(tx, job_id, &worker).await?;
                        return Ok((Begin::Stop, None));
                    };
                    let status: String = row.get("status");
                    if status != "queued" && status != "running" {
                        // Cancelled (or already ended): the job has nothing left to do.
                        jobs::finish(tx, job_id, &worker).await?;
                        return Ok((Begin::Stop, None));
                    }
                    if !jobs::renew(tx, job_id, &worker, lease).await? {
                        return Ok((Begin::Stop, None));
                    }
                    let mut progress: Progress =
                        serde_json::from_value(row.get("state")).unwrap_or_default();
                    if status == "queued" {
                        tx.execute(
                            "UPDATE executions SET status = 'running', started_at = coalesce(started_at, now()) WHERE id = $1",
                            &[&execution],
                        )
                        .await?;
                        log(tx, execution, "info", &format!("started by worker {worker}")).await?;
                    }
                    if let Err(e) = tx.require(Permission::WorkflowsRun) {
                        let reason = e.client_detail();
                        end(tx, execution, job_id, &worker, "failed", Some(&format!("the run stopped: {reason}"))).await?;
                        return Ok((Begin::Stop, Some("failed")));
                    }
                    let definition: Value = row.get("definition");
                    let parsed = definition
                        .as_object()
                        .ok_or_else(|| "the definition is not an object".to_owned())
                        .and_then(|d| definition::parse(d).map_err(|e| format!("{}: {}", e.field, e.reason)));
                    let parsed: Definition = match parsed {
                        Ok(p) => p,
                        Err(why) => {
                            end(tx, execution, job_id, &worker, "failed", Some(&format!("the workflow's definition is not valid: {why}"))).await?;
                            return Ok((Begin::Stop, Some("failed")));
                        }
                    };
                    let Some(step) = parsed.steps.get(progress.next).cloned() else {
                        end(tx, execution, job_id, &worker, "succeeded", None).await?;
                        return Ok((Begin::Stop, Some("succeeded")));
                    };
                    if progress.in_step == Some(progress.next) {
                        progress.lost += 1;
                        if progress.lost >= max_lost {
                            let why = format!(
                                "{}: its worker was lost {} times; the run fails",
                                describe(&step),
                                progress.lost
                            );
                            end(tx, execution, job_id, &worker, "failed", Some(&why)).await?;
                            return Ok((Begin::Stop, Some("failed")));
                        }
                        log(
                            tx,
                            execution,
                            "warn",
                            &format!("{}: resumed after its worker was lost (claim {attempts})", describe(&step)),
                        )
                        .await?;
                    }
                    progress.in_step = Some(progress.next);
                    tx.execute(
                        "UPDATE executions SET state = $2 WHERE id = $1",
                        &[&execution, &serde_json::to_value(&progress).unwrap_or_default()],
                    )
                    .await?;
                    let ctx = json!({"trigger": row.get::<_, Value>("input"), "steps": progress
                        .outputs
                        .iter()
                        .map(|(k, v)| (k.clone(), json!({"output": v})))
                        .collect::<Map<String, Value>>()});
                    let call = match &step.kind {
                        StepKind::Action { connection_id, action, .. } => {
                            let wf_conn: Option<Uuid> = tx
                                .query_one(
                                    "SELECT w.connection_id FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE e.id = $1",
                                    &[&execution],
                                )
                                .await?
                                .get(0);
                            let Some(conn) = connection_id.or(wf_conn) else {
                                return Ok((Begin::Step(Box::new(Run { index: progress.next, step, ctx, call: None, progress, })), None));
                            };
                            match action::ready(tx, &st.cipher, conn, action).await {
                                Ok(r) => Some(r),
                                // Permission, not enabled, gone: the step fails with the reason
                                // (no retry can change it), decided in `work`.
                                Err(e @ (ApiError::Forbidden(_) | ApiError::NotFound(_))) => {
                                    let reason = e.client_detail();
                                    let why = format!("{} failed: {reason}", describe(&step));
                                    log(tx, execution, "error", &why).await?;
                                    end(tx, execution, job_id, &worker, "failed", Some(&why)).await?;
                                    return Ok((Begin::Stop, Some("failed")));
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        _ => None,
                    };
                    Ok((Begin::Step(Box::new(Run { index: progress.next, step, ctx, call, progress, })), None))
                })
            })
            .await?;
        if let Some(status) = finished {
            run_finished(job, status);
        }
        Ok(out)
    }

    /// Writes a step's outcome; `true` when the run goes on in this claim.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit(
        &self,
        job: &Claimed,
        run_as: &Caller,
        index: usize,
        step: &Step,
        mut progress: Progress,
        outcome: Outcome,
        elapsed: Duration,
        input_summary: &str,
        secrets: &[String],
    ) -> Result<bool, ApiError> {
        let (execution, worker, job_id) = (job.subject, self.id.clone(), job.id);
        let what = describe(step);
        let ms = elapsed.as_millis();
        let (lease, step, input_summary, secrets) = (
            self.cfg.lease,
            step.clone(),
            input_summary.to_owned(),
            secrets.to_vec(),
        );
        let (more, finished) = self
            .st
            .db
            .tenant(run_as, move |tx| {
                Box::pin(async move {
                    let status: Option<String> = tx
                        .query_opt("SELECT status FROM executions WHERE id = $1 FOR UPDATE", &[&execution])
                        .await?
                        .map(|r| r.get(0));
                    if status.as_deref() != Some("running") {
                        // Cancelled meanwhile: the result is dropped, and so is the job.
                        jobs::finish(tx, job_id, &worker).await?;
                        return Ok((false, None));
                    }
                    // Still ours? Otherwise another worker runs this step again; write nothing.
                    if !jobs::renew(tx, job_id, &worker, lease).await? {
                        return Ok((false, None));
                    }
                    progress.in_step = None;
                    let mut more = true;
                    match outcome {
                        Outcome::Done(output, next, note) => {
                            let out = summary(&output, &secrets);
                            let line = match (input_summary.is_empty(), note.is_empty()) {
                                (_, false) => format!("{what} succeeded in {ms} ms: {note}"),
                                (false, true) => format!("{what} succeeded in {ms} ms: input {input_summary} → output {out}"),
                                (true, true) => format!("{what} succeeded in {ms} ms: output {out}"),
                            };
                            log(tx, execution, "info", &line).await?;
                            progress.outputs.insert(step.id.clone(), output);
                            progress.attempt = 0;
                            progress.delay_until = None;
                            progress.next = match next {
                                Next::Continue => index + 1,
                                Next::End => usize::MAX,
                                Next::Step(id) => {
                                    let def: Value = tx
                                        .query_one(
                                            "SELECT w.definition FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE e.id = $1",
                                            &[&execution],
                                        )
                                        .await?
                                        .get(0);
                                    def.as_object()
                                        .and_then(|d| definition::parse(d).ok())
                                        .and_then(|d| d.index_of(&id))
                                        .unwrap_or(usize::MAX)
                                }
                            };
                        }
                        Outcome::Wait(until) => {
                            if progress.delay_until.is_none() {
                                log(tx, execution, "info", &format!("{what} waits until {}", until.to_rfc3339())).await?;
                            }
                            progress.delay_until = Some(until);
                            jobs::reschedule(tx, job_id, &worker, until).await?;
                            more = false;
                        }
                        Outcome::Failed(why, retryable) if retryable && progress.attempt < step.retries.max => {
                            progress.attempt += 1;
                            let jitter = jitter();
                            let wait = definition::backoff(step.retries, progress.attempt, jitter);
                            log(
                                tx,
                                execution,
                                "warn",
                                &format!(
                                    "{what} failed in {ms} ms: {why}; retry {} of {} in {:.1} s",
                                    progress.attempt,
                                    step.retries.max,
                                    wait.as_secs_f64()
                                ),
                            )
                            .await?;
                            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                            jobs::reschedule(tx, job_id, &worker, at).await?;
                            more = false;
                        }
                        Outcome::Failed(why, _) => {
                            let line = format!("{what} failed in {ms} ms: {why}");
                            log(tx, execution, "error", &line).await?;
                            tx.execute(
                                "UPDATE executions SET state = $2 WHERE id = $1",
                                &[&execution, &serde_json::to_value(&progress).unwrap_or_default()],
                            )
                            .await?;
                            end(tx, execution, job_id, &worker, "failed", Some(&line)).await?;
                            return Ok((false, Some("failed")));
                        }
                    }
                    tx.execute(
                        "UPDATE executions SET state = $2 WHERE id = $1",
                        &[&execution, &serde_json::to_value(&progress).unwrap_or_default()],
                    )
                    .await?;
                    Ok((more, None))
                })
            })
            .await?;
        if let Some(status) = finished {
            run_finished(job, status);
        }
        Ok(more)
    }
}
