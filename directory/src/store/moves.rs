//! Tenant move records (migration 0005): the plan, the phase, per-table progress with the
//! keyset cursor, and the driver's lease. The admin's mover is the only writer; every write
//! it makes after creating a move is conditioned on holding the lease ([`Lease`]) and renews
//! it, so a resumed driver and a stale one never both act.
//!
//! The directory transitions that touch the tenant itself run in one transaction each,
//! attributed to the actor so the tenant history records them: freeze (`moving`), flip
//! (region and `active`; the migration's trigger refuses a region change without a verified
//! move), and the rollback's unfreeze.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use residency_core::wire::moves::{Move, MovePhase, MoveTable, PlanTable};
use residency_core::TenantId;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

/// A driver's claim on a move: its id and how long each renewal lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The driver (one per driving task).
    pub driver: Uuid,
    /// Renewal length.
    pub ttl: Duration,
}

impl Lease {
    fn secs(&self) -> f64 {
        self.ttl.as_secs_f64()
    }
}

/// One table of a stored move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTableRecord {
    /// Position in the plan (foreign-key order).
    pub ord: i32,
    /// Table name.
    pub table: String,
    /// Rows when planned.
    pub rows_total: i64,
    /// Estimated bytes when planned.
    pub estimated_bytes: i64,
    /// Rows copied (up to `last_key`).
    pub rows_copied: i64,
    /// The copy's cursor: the key of the last row copied.
    pub last_key: Option<Value>,
    /// Every batch copied.
    pub copied: bool,
    /// Source checksum, once computed.
    pub checksum_source: Option<String>,
    /// Target checksum, once computed.
    pub checksum_target: Option<String>,
}

/// A stored move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRecord {
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Source region.
    pub from: String,
    /// Target region.
    pub to: String,
    /// Phase.
    pub phase: MovePhase,
    /// Where a failed move stopped.
    pub failed_in: Option<MovePhase>,
    /// An abort was asked for.
    pub abort_requested: bool,
    /// Who asked for the move.
    pub actor: String,
    /// Why it failed or was rolled back.
    pub error: Option<String>,
    /// Phase name → when entered.
    pub phases: BTreeMap<String, String>,
    /// A driver's lease is current.
    pub leased: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Tables in plan order.
    pub tables: Vec<MoveTableRecord>,
}

impl MoveRecord {
    /// The admin API's view.
    #[must_use]
    pub fn view(&self) -> Move {
        Move {
            move_id: self.id,
            tenant_id: TenantId::from_uuid(self.tenant_id),
            from: self.from.clone(),
            to: self.to.clone(),
            phase: self.phase,
            failed_in: self.failed_in,
            abort_requested: self.abort_requested,
            tables: self
                .tables
                .iter()
                .map(|t| MoveTable {
                    table: t.table.clone(),
                    rows_total: t.rows_total,
                    rows_copied: t.rows_copied,
                    estimated_bytes: t.estimated_bytes,
                    checksum_source: t.checksum_source.clone(),
                    checksum_target: t.checksum_target.clone(),
                })
                .collect(),
            phases: self.phases.clone(),
            actor: self.actor.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
        }
    }
}

const MOVE_COLUMNS: &str =
    "id, tenant_id, from_region, to_region, phase, failed_in, abort_requested, \
     actor, error, phases, coalesce(lease_until > now(), false) AS leased, created_at";

fn phase(s: &str) -> MovePhase {
    // The CHECK constraint restricts the column to the phases' spellings.
    MovePhase::parse(s).expect("constrained phase column")
}

fn move_row(r: &Row) -> MoveRecord {
    let phases: Value = r.get("phases");
    MoveRecord {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        from: r.get("from_region"),
        to: r.get("to_region"),
        phase: phase(r.get("phase")),
        failed_in: r
            .get::<_, Option<String>>("failed_in")
            .as_deref()
            .and_then(MovePhase::parse),
        abort_requested: r.get("abort_requested"),
        actor: r.get("actor"),
        error: r.get("error"),
        phases: phases
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        leased: r.get("leased"),
        created_at: r.get("created_at"),
        tables: Vec::new(),
    }
}

fn table_row(r: &Row) -> MoveTableRecord {
    MoveTableRecord {
        ord: r.get("ord"),
        table: r.get("table_name"),
        rows_total: r.get("rows_total"),
        estimated_bytes: r.get("estimated_bytes"),
        rows_copied: r.get("rows_copied"),
        last_key: r.get("last_key"),
        copied: r.get("copied"),
        checksum_source: r.get("checksum_source"),
        checksum_target: r.get("checksum_target"),
    }
}

/// Sets `phase` and stamps it in `phases` (SQL fragment for an UPDATE's SET list; `$p` is the
/// phase parameter).
fn enter(p: &str) -> String {
    format!(
        "phase = {p}, phases = phases || jsonb_build_object({p}::text, \
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')), updated_at = now()"
    )
}

impl Store {
    /// Records a new move (`planned`) with its plan, leased to `lease.driver`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a move of the tenant is in flight.
    pub async fn create_move(
        &self,
        actor: &str,
        tenant: Uuid,
        from: &str,
        to: &str,
        tables: &[PlanTable],
        lease: Lease,
    ) -> Result<MoveRecord, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let id = Uuid::now_v7();
        tx.execute(
            "INSERT INTO tenant_moves (id, tenant_id, from_region, to_region, phase, actor, driver, lease_until) \
             VALUES ($1, $2, $3, $4, 'planned', $5, $6, now() + make_interval(secs => $7))",
            &[&id, &tenant, &from, &to, &actor, &lease.driver, &lease.secs()],
        )
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("a move of this tenant is already in flight".into())
            }
            other => other,
        })?;
        tx.execute(
            &format!("UPDATE tenant_moves SET {} WHERE id = $1", enter("$2")),
            &[&id, &MovePhase::Planned.as_str()],
        )
        .await?;
        for (ord, t) in tables.iter().enumerate() {
            tx.execute(
                "INSERT INTO tenant_move_tables (move_id, ord, table_name, rows_total, estimated_bytes) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id, &i32::try_from(ord).unwrap_or(i32::MAX), &t.table, &t.rows, &t.estimated_bytes],
            )
            .await?;
        }
        tx.commit().await?;
        self.get_move(id).await?.ok_or(StoreError::NotFound)
    }

    /// One move with its tables.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn get_move(&self, id: Uuid) -> Result<Option<MoveRecord>, StoreError> {
        let conn = self.conn().await?;
        let Some(row) = conn
            .query_opt(
                &format!("SELECT {MOVE_COLUMNS} FROM tenant_moves WHERE id = $1"),
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut m = move_row(&row);
        m.tables = conn
            .query(
                "SELECT * FROM tenant_move_tables WHERE move_id = $1 ORDER BY ord",
                &[&id],
            )
            .await?
            .iter()
            .map(table_row)
            .collect();
        Ok(Some(m))
    }

    /// A tenant's moves, newest first.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn moves_of(&self, tenant: Uuid) -> Result<Vec<MoveRecord>, StoreError> {
        let ids: Vec<Uuid> = {
            let conn = self.conn().await?;
            conn.query(
                "SELECT id FROM tenant_moves WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
                &[&tenant],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = self.get_move(id).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every move not `done` or `rolled_back` (the placement audit's exceptions).
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn moves_in_flight(&self) -> Result<Vec<MoveRecord>, StoreError> {
        let conn = self.conn().await?;
        Ok(conn
            .query(
                &format!(
                    "SELECT {MOVE_COLUMNS} FROM tenant_moves WHERE phase NOT IN ('done', 'rolled_back')"
                ),
                &[],
            )
            .await?
            .iter()
            .map(move_row)
            .collect())
    }

    /// Takes the move's lease for `lease.driver` when nobody holds it (or it is already
    /// this driver's). `false` when another driver's lease is current.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn claim_move(&self, id: Uuid, lease: Lease) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE tenant_moves SET driver = $2, lease_until = now() + make_interval(secs => $3) \
                 WHERE id = $1 AND (driver = $2 OR lease_until IS NULL OR lease_until < now())",
                &[&id, &lease.driver, &lease.secs()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives the lease up (the driver stops).
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn release_move(&self, id: Uuid, lease: Lease) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE tenant_moves SET lease_until = NULL WHERE id = $1 AND driver = $2",
            &[&id, &lease.driver],
        )
        .await?;
        Ok(())
    }

    /// Asks for an abort; the driver carries it out. Returns the record.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown move.
    pub async fn request_abort(&self, id: Uuid) -> Result<MoveRecord, StoreError> {
        {
            let conn = self.conn().await?;
            conn.execute(
                "UPDATE tenant_moves SET abort_requested = true, updated_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
        }
        self.get_move(id).await?.ok_or(StoreError::NotFound)
    }

    /// Runs `sql` (conditioned on `id = $1 AND driver = $2`, renewing the lease with `$3`) in a
    /// transaction with `residency.actor`, after `before` statements; fails with
    /// [`StoreError::Conflict`] when the lease was lost.
    async fn leased(
        &self,
        actor: &str,
        id: Uuid,
        lease: Lease,
        before: &[(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)])],
        set: &str,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT set_config('residency.actor', $1, true)", &[&actor])
            .await?;
        let secs = lease.secs();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&id, &lease.driver, &secs];
        params.extend_from_slice(extra);
        let n = tx
            .execute(
                &format!(
                    "UPDATE tenant_moves SET {set}, lease_until = now() + make_interval(secs => $3) \
                     WHERE id = $1 AND driver = $2"
                ),
                &params,
            )
            .await?;
        if n != 1 {
            return Err(StoreError::Conflict(
                "the move's lease was lost to another driver".into(),
            ));
        }
        for (sql, p) in before {
            tx.execute(*sql, p).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enters `next` (not a phase that changes the tenant: see [`Store::freeze_move`],
    /// [`Store::flip_move`], [`Store::roll_back_move`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn move_phase(
        &self,
        id: Uuid,
        lease: Lease,
        next: MovePhase,
    ) -> Result<(), StoreError> {
        self.leased(
            "",
            id,
            lease,
            &[],
            &format!("{}, error = NULL, failed_in = NULL", enter("$4")),
            &[&next.as_str()],
        )
        .await
    }

    /// Records a failure: phase `failed`, where, and why.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn fail_move(
        &self,
        id: Uuid,
        lease: Lease,
        failed_in: MovePhase,
        error: &str,
    ) -> Result<(), StoreError> {
        self.leased(
            "",
            id,
            lease,
            &[],
            &format!("{}, failed_in = $5, error = $6", enter("$4")),
            &[&MovePhase::Failed.as_str(), &failed_in.as_str(), &error],
        )
        .await
    }

    /// Freezes: the tenant `moving` (from `active`) and the move `frozen`, in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost or the tenant is not active or moving.
    pub async fn freeze_move(
        &self,
        actor: &str,
        m: &MoveRecord,
        lease: Lease,
    ) -> Result<(), StoreError> {
        self.leased(
            actor,
            m.id,
            lease,
            &[(
                "UPDATE tenants SET status = 'moving' WHERE id = $1 AND status = 'active'",
                &[&m.tenant_id],
            )],
            &format!("{}, error = NULL, failed_in = NULL", enter("$4")),
            &[&MovePhase::Frozen.as_str()],
        )
        .await?;
        match self.tenant(m.tenant_id).await? {
            Some(t) if t.status == residency_core::TenantStatus::Moving => Ok(()),
            _ => Err(StoreError::Conflict(
                "the tenant is not active: only an active tenant is moved".into(),
            )),
        }
    }

    /// Progress of one table: rows copied up to `last_key`, and whether it is complete.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn copy_progress(
        &self,
        id: Uuid,
        lease: Lease,
        ord: i32,
        rows_copied: i64,
        last_key: Option<&Value>,
        copied: bool,
    ) -> Result<(), StoreError> {
        self.leased(
            "",
            id,
            lease,
            &[(
                "UPDATE tenant_move_tables SET rows_copied = $2, last_key = $3, copied = $4 \
                 WHERE move_id = $1 AND ord = $5",
                &[&id, &rows_copied, &last_key, &copied, &ord],
            )],
            "updated_at = now()",
            &[],
        )
        .await
    }

    /// The tables' totals counted again once the source is frozen (exact from then on).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn replan_move(
        &self,
        id: Uuid,
        lease: Lease,
        tables: &[PlanTable],
    ) -> Result<(), StoreError> {
        for t in tables {
            self.leased(
                "",
                id,
                lease,
                &[(
                    "UPDATE tenant_move_tables SET rows_total = $2, estimated_bytes = $3 \
                     WHERE move_id = $1 AND table_name = $4",
                    &[&id, &t.rows, &t.estimated_bytes, &t.table],
                )],
                "updated_at = now()",
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// The checksums of one table.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn record_checksums(
        &self,
        id: Uuid,
        lease: Lease,
        ord: i32,
        source: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        self.leased(
            "",
            id,
            lease,
            &[(
                "UPDATE tenant_move_tables SET checksum_source = $2, checksum_target = $3 \
                 WHERE move_id = $1 AND ord = $4",
                &[&id, &source, &target, &ord],
            )],
            "updated_at = now()",
            &[],
        )
        .await
    }

    /// Flips: the tenant's region := target and status := active, the move `flipped`, in one
    /// transaction attributed to `actor` (the tenant history records it). The directory's
    /// trigger refuses it unless the move is `verifying` with equal checksums for every table.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost; the trigger's refusal.
    pub async fn flip_move(
        &self,
        actor: &str,
        m: &MoveRecord,
        lease: Lease,
    ) -> Result<(), StoreError> {
        // The tenant update runs first (after the lease check), while the move is still
        // `verifying`, which the trigger requires; the phase is entered in the same
        // transaction. Re-running after a lost answer finds the region already changed.
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT set_config('residency.actor', $1, true)", &[&actor])
            .await?;
        let held = tx
            .execute(
                "SELECT 1 FROM tenant_moves WHERE id = $1 AND driver = $2 FOR UPDATE",
                &[&m.id, &lease.driver],
            )
            .await?;
        if held != 1 {
            return Err(StoreError::Conflict(
                "the move's lease was lost to another driver".into(),
            ));
        }
        tx.execute(
            "UPDATE tenants SET region = $2, status = 'active' WHERE id = $1",
            &[&m.tenant_id, &m.to],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE tenant_moves SET {}, lease_until = now() + make_interval(secs => $3) WHERE id = $1",
                enter("$2")
            ),
            &[&m.id, &MovePhase::Flipped.as_str(), &lease.secs()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rolls back in the directory: the tenant `active` again in its source region, the move
    /// `rolled_back` with why.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the lease was lost.
    pub async fn roll_back_move(
        &self,
        actor: &str,
        m: &MoveRecord,
        lease: Lease,
        why: &str,
    ) -> Result<(), StoreError> {
        self.leased(
            actor,
            m.id,
            lease,
            &[(
                "UPDATE tenants SET status = 'active' WHERE id = $1 AND status = 'moving'",
                &[&m.tenant_id],
            )],
            &format!("{}, error = $5", enter("$4")),
            &[&MovePhase::RolledBack.as_str(), &why],
        )
        .await
    }
}
