//! The mover: drives one tenant move through its phases, persisting every step in the
//! directory before the next, so a driver that dies anywhere is resumed from the record.
//!
//! It holds a lease on the move (renewed by every directory write, each conditioned on it) and
//! never sees a row: it tells the target node to pull a batch from the source node with an
//! export assertion it mints for the source region (bound to the tenant and the move), and it
//! compares the checksums both nodes compute in their own databases.
//!
//! Every step is idempotent: freezing twice, copying a batch twice (`ON CONFLICT DO NOTHING`
//! after the persisted cursor), re-verifying, flipping an already flipped tenant (the flip
//! runs only from `verifying`), purging an empty tenant, `arrive` recording `tenant.moved`
//! once.

use std::sync::Arc;

use http::HeaderValue;
use residency_core::assertion::now_secs;
use residency_core::wire::moves::node::{
    self as mv, Arrive, ChecksumRequest, Checksums, Copied, CopyRequest, Freeze, Frozen, Plan,
    Purged, Source,
};
use residency_core::wire::moves::MovePhase;
use residency_core::{RegionId, TenantId};
use residency_directory::{Lease, MoveRecord, StoreError};
use uuid::Uuid;

use super::super::provision::NodeCall;
use super::super::{AdminError, AdminState};

/// Why a step stopped the driver.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Another driver holds the move now, or the gateway shuts down: leave the record as is.
    Leave(String),
    /// A step failed: record `failed` where it happened (resume continues there).
    Fail(String),
    /// Verification found a difference, or an abort was asked for: roll back.
    RollBack(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) => Self::Leave(why),
            other => Self::Fail(format!("directory: {other}")),
        }
    }
}

impl From<AdminError> for Stop {
    fn from(e: AdminError) -> Self {
        Self::Fail(e.problem().detail)
    }
}

fn call(path: &'static str, what: &'static str) -> NodeCall {
    NodeCall {
        path,
        what,
        kind: "move_step_failed",
    }
}

/// The phase a move is really in: where a `failed` one stopped.
pub(crate) fn effective(m: &MoveRecord) -> MovePhase {
    match m.phase {
        MovePhase::Failed => m.failed_in.unwrap_or(MovePhase::Planned),
        p => p,
    }
}

fn region(id: &str) -> Result<RegionId, Stop> {
    RegionId::new(id).map_err(|e| Stop::Fail(format!("stored region {id}: {e}")))
}

/// One driving task of one move.
pub(crate) struct Driver {
    st: Arc<AdminState>,
    lease: Lease,
    rid: HeaderValue,
}

impl Driver {
    /// A driver with a fresh lease id.
    pub(crate) fn new(st: Arc<AdminState>) -> Self {
        let lease = Lease {
            driver: Uuid::now_v7(),
            ttl: st.moves.lease,
        };
        let rid = HeaderValue::try_from(format!("move-{}", lease.driver))
            .unwrap_or_else(|_| HeaderValue::from_static("move"));
        Self { st, lease, rid }
    }

    /// This driver's lease.
    pub(crate) fn lease(&self) -> Lease {
        self.lease
    }

    /// Drives the move until it is `done`, `rolled_back` or `failed`, or the lease is lost,
    /// then gives the lease up. Never panics the task: every error ends in the record.
    pub(crate) async fn run(self, id: Uuid) {
        let shutdown = self.st.shutdown.clone();
        let outcome = tokio::select! {
            r = self.steps(id) => r,
            () = shutdown.cancelled() => Err(Stop::Leave("the gateway is shutting down".into())),
        };
        let store = match self.st.store() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        match outcome {
            Ok(()) => {}
            Err(Stop::Leave(why)) => {
                tracing::warn!(move_id = %id, why, "move driver stopped; resume continues it");
            }
            Err(Stop::Fail(why)) => {
                let at = store
                    .get_move(id)
                    .await
                    .ok()
                    .flatten()
                    .map_or(MovePhase::Planned, |m| effective(&m));
                tracing::warn!(move_id = %id, phase = at.as_str(), why, "move failed");
                metrics::counter!(crate::metrics::TENANT_MOVE_PHASES_TOTAL, "phase" => "failed")
                    .increment(1);
                if let Err(e) = store.fail_move(id, self.lease, at, &why).await {
                    tracing::warn!(move_id = %id, error = %e, "recording the failure");
                }
            }
            Err(Stop::RollBack(why)) => {
                if let Err(stop) = self.roll_back(id, &why).await {
                    let why = match stop {
                        Stop::Leave(w) | Stop::Fail(w) | Stop::RollBack(w) => w,
                    };
                    tracing::warn!(move_id = %id, why, "rollback failed");
                    let at = store
                        .get_move(id)
                        .await
                        .ok()
                        .flatten()
                        .map_or(MovePhase::Planned, |m| effective(&m));
                    let _ = store
                        .fail_move(id, self.lease, at, &format!("rollback: {why}"))
                        .await;
                }
            }
        }
        let _ = store.release_move(id, self.lease).await;
    }

    async fn record(&self, id: Uuid) -> Result<MoveRecord, Stop> {
        self.st
            .store()?
            .get_move(id)
            .await?
            .ok_or_else(|| Stop::Leave("the move record is gone".into()))
    }

    async fn node<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        m: &MoveRecord,
        region_id: &str,
        c: NodeCall,
        body: &B,
    ) -> Result<R, Stop> {
        let region = region(region_id)?;
        Ok(self
            .st
            .provisioner
            .move_call(
                self.st.gateway.regions(),
                &region,
                TenantId::from_uuid(m.tenant_id),
                &c,
                body,
                &self.rid,
            )
            .await?)
    }

    /// The phases, from wherever the record is.
    async fn steps(&self, id: Uuid) -> Result<(), Stop> {
        let store = self.st.store()?.clone();
        let mut resumed = false;
        loop {
            let m = self.record(id).await?;
            let at = effective(&m);
            metrics::counter!(crate::metrics::TENANT_MOVE_PHASES_TOTAL, "phase" => m.phase.as_str())
                .increment(1);
            if m.abort_requested && at < MovePhase::Flipped {
                return Err(Stop::RollBack("aborted by an operator".into()));
            }
            if m.phase == MovePhase::Failed {
                // Resuming: back to the phase it stopped in, error cleared, then on.
                store.move_phase(id, self.lease, at).await?;
                resumed = true;
                continue;
            }
            match m.phase {
                MovePhase::Planned => {
                    store.freeze_move(&m.actor, &m, self.lease).await?;
                    self.st
                        .gateway
                        .directory()
                        .refresh_tenant(TenantId::from_uuid(m.tenant_id))
                        .await;
                }
                MovePhase::Frozen => {
                    // The node-side freeze waits for the source's writes in flight, and
                    // refuses every later one, whatever a gateway's cache still says.
                    let f: Frozen = self
                        .node(
                            &m,
                            &m.from,
                            call(mv::FREEZE_PATH, "the freeze"),
                            &Freeze { frozen: true },
                        )
                        .await?;
                    if !f.frozen {
                        return Err(Stop::Fail(
                            "the source node did not freeze the tenant".into(),
                        ));
                    }
                    // Frozen, the counts no longer change: the plan's totals become exact.
                    let plan: Plan = self
                        .node(
                            &m,
                            &m.from,
                            call(mv::PLAN_PATH, "the plan"),
                            &serde_json::json!({}),
                        )
                        .await?;
                    store.replan_move(id, self.lease, &plan.tables).await?;
                    store.move_phase(id, self.lease, MovePhase::Copying).await?;
                }
                MovePhase::Copying => {
                    self.copy(&m).await?;
                    if self.st.moves.hold_before_verify && !resumed {
                        return Err(Stop::Fail("held before verifying (test hook)".into()));
                    }
                    store
                        .move_phase(id, self.lease, MovePhase::Verifying)
                        .await?;
                }
                MovePhase::Verifying => {
                    self.verify(&m).await?;
                    let _: Frozen = self
                        .node(
                            &m,
                            &m.to,
                            call(mv::ARRIVE_PATH, "the arrival"),
                            &Arrive {
                                move_id: m.id,
                                from: m.from.clone(),
                                record_event: false,
                            },
                        )
                        .await?;
                    store.flip_move(&m.actor, &m, self.lease).await?;
                    self.st
                        .gateway
                        .directory()
                        .refresh_tenant(TenantId::from_uuid(m.tenant_id))
                        .await;
                    tracing::info!(move_id = %id, tenant = %m.tenant_id, to = %m.to, "tenant flipped");
                }
                MovePhase::Flipped => {
                    // Recorded after the flip, so a verification repeated before it (a
                    // driver that died between the thaw and the flip) still matches.
                    let event = Arrive {
                        move_id: m.id,
                        from: m.from.clone(),
                        record_event: true,
                    };
                    let _: Frozen = self
                        .node(
                            &m,
                            &m.to,
                            call(mv::ARRIVE_PATH, "the move's audit event"),
                            &event,
                        )
                        .await?;
                    let grace = self.st.moves.purge_grace;
                    if !grace.is_zero() {
                        tokio::time::sleep(grace).await;
                    }
                    store.move_phase(id, self.lease, MovePhase::Purging).await?;
                }
                MovePhase::Purging => {
                    let p: Purged = self
                        .node(
                            &m,
                            &m.from,
                            call(mv::PURGE_PATH, "the purge"),
                            &serde_json::json!({}),
                        )
                        .await?;
                    tracing::info!(move_id = %id, rows = p.rows, "source purged");
                    store.move_phase(id, self.lease, MovePhase::Done).await?;
                }
                MovePhase::Done | MovePhase::RolledBack | MovePhase::Failed => return Ok(()),
            }
        }
    }

    /// Copies every table not yet complete, batch by batch after its persisted cursor.
    async fn copy(&self, m: &MoveRecord) -> Result<(), Stop> {
        let store = self.st.store()?.clone();
        let from = region(&m.from)?;
        let source_region = self
            .st
            .gateway
            .regions()
            .get(&from)
            .ok_or_else(|| Stop::Fail(format!("region {from} is not configured")))?;
        let tenant = TenantId::from_uuid(m.tenant_id);
        for t in m.tables.iter().filter(|t| !t.copied) {
            let (mut rows, mut after) = (t.rows_copied, t.last_key.clone());
            loop {
                let upstream = source_region.pick().ok_or_else(|| {
                    Stop::Fail(format!("no healthy node in the source region {from}"))
                })?;
                let (token, _) = source_region
                    .signer()
                    .mint_system(tenant, &mv::export_actor(m.id), now_secs())
                    .map_err(|e| Stop::Fail(format!("minting the export assertion: {e}")))?;
                let body = CopyRequest {
                    move_id: m.id,
                    source: Source {
                        region: m.from.clone(),
                        url: upstream.url().to_owned(),
                    },
                    export_token: token,
                    table: t.table.clone(),
                    after: after.clone(),
                    limit: i64::from(self.st.moves.batch_rows),
                };
                let got: Copied = self
                    .node(m, &m.to, call(mv::COPY_PATH, "the copy"), &body)
                    .await?;
                let done = got.last_key.is_none() || got.rows < body.limit;
                rows += got.rows;
                metrics::counter!(crate::metrics::TENANT_MOVE_ROWS_TOTAL)
                    .increment(u64::try_from(got.rows).unwrap_or(0));
                if got.last_key.is_some() {
                    after = got.last_key;
                }
                store
                    .copy_progress(m.id, self.lease, t.ord, rows, after.as_ref(), done)
                    .await?;
                if self.record(m.id).await?.abort_requested {
                    return Err(Stop::RollBack("aborted by an operator".into()));
                }
                if done {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Counts and checksums in both databases, per table; any difference rolls back.
    async fn verify(&self, m: &MoveRecord) -> Result<(), Stop> {
        let store = self.st.store()?.clone();
        let ask = ChecksumRequest {
            tables: m.tables.iter().map(|t| t.table.clone()).collect(),
        };
        let c = call(mv::CHECKSUM_PATH, "the checksum");
        let (source, target): (Result<Checksums, Stop>, Result<Checksums, Stop>) =
            tokio::join!(self.node(m, &m.from, c, &ask), self.node(m, &m.to, c, &ask));
        let (source, target) = (source?, target?);
        let mut differ = Vec::new();
        for t in &m.tables {
            let s = source.tables.iter().find(|x| x.table == t.table);
            let g = target.tables.iter().find(|x| x.table == t.table);
            let (Some(s), Some(g)) = (s, g) else {
                return Err(Stop::Fail(format!(
                    "no checksum of {} from a node",
                    t.table
                )));
            };
            store
                .record_checksums(m.id, self.lease, t.ord, &s.checksum, &g.checksum)
                .await?;
            if s.checksum != g.checksum {
                differ.push(format!(
                    "{} (source {} rows, target {} rows)",
                    t.table, s.rows, g.rows
                ));
            }
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(Stop::RollBack(format!(
                "verification failed: the checksums of {} differ",
                differ.join(", ")
            )))
        }
    }

    /// Deletes whatever reached the target, thaws the source, and records `rolled_back`.
    async fn roll_back(&self, id: Uuid, why: &str) -> Result<(), Stop> {
        let m = self.record(id).await?;
        if effective(&m) >= MovePhase::Flipped {
            return Err(Stop::Fail("a flipped move is not rolled back".into()));
        }
        // The target may have been thawed by an arrival whose flip never happened: freeze
        // it again, so the purge (frozen tenants only) can run.
        let _: Frozen = self
            .node(
                &m,
                &m.to,
                call(mv::FREEZE_PATH, "the rollback's freeze"),
                &Freeze { frozen: true },
            )
            .await?;
        let purged: Purged = self
            .node(
                &m,
                &m.to,
                call(mv::PURGE_PATH, "the rollback's purge"),
                &serde_json::json!({}),
            )
            .await?;
        let _: Frozen = self
            .node(
                &m,
                &m.from,
                call(mv::FREEZE_PATH, "the thaw"),
                &Freeze { frozen: false },
            )
            .await?;
        self.st
            .store()?
            .roll_back_move(&m.actor, &m, self.lease, why)
            .await?;
        self.st
            .gateway
            .directory()
            .refresh_tenant(TenantId::from_uuid(m.tenant_id))
            .await;
        tracing::warn!(move_id = %id, tenant = %m.tenant_id, target_rows_deleted = purged.rows, why, "move rolled back");
        metrics::counter!(crate::metrics::TENANT_MOVE_PHASES_TOTAL, "phase" => "rolled_back")
            .increment(1);
        Ok(())
    }
}
