//! Tenant moves between regions (issue 13): the admin API's bodies
//! (`POST /admin/v1/tenants/{id}/move`, `GET /admin/v1/moves/{move_id}`, …) and the internal
//! calls of a move ([`node`]): the admin drives, the target node pulls rows straight from the
//! source node, neither node ever holds the other's keys.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::TenantId;

/// `POST /admin/v1/tenants/{id}/move` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The target region: configured, and not the tenant's current one.
    pub to: String,
    /// Answer the plan (200) and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The phase of a move. `done` and `rolled_back` are final; `failed` waits for an operator's
/// `resume` (continue where it stopped) or `abort` (roll back).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// Recorded with its plan; nothing changed yet.
    Planned,
    /// Writes refused everywhere (`moving`), reads served by the source.
    Frozen,
    /// Rows being copied, source node → target node, in batches.
    Copying,
    /// Row counts and checksums compared, per table, in both databases.
    Verifying,
    /// The directory routes the tenant to the target.
    Flipped,
    /// The source's rows being deleted.
    Purging,
    /// Finished.
    Done,
    /// Stopped on an error: `resume` or `abort`.
    Failed,
    /// Aborted or failed verification: the target's rows deleted, the tenant back on the
    /// source.
    RolledBack,
}

impl MovePhase {
    /// Every phase, in order.
    pub const ALL: [Self; 9] = [
        Self::Planned,
        Self::Frozen,
        Self::Copying,
        Self::Verifying,
        Self::Flipped,
        Self::Purging,
        Self::Done,
        Self::Failed,
        Self::RolledBack,
    ];

    /// The phase as written on the wire and in the directory.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Frozen => "frozen",
            Self::Copying => "copying",
            Self::Verifying => "verifying",
            Self::Flipped => "flipped",
            Self::Purging => "purging",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    /// The phase spelled `s`, if any.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// `done` or `rolled_back`: nothing more happens.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::RolledBack)
    }
}

/// One table of a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoveTable {
    /// Table name, in foreign-key order.
    pub table: String,
    /// Rows of the tenant in the source when the move was planned.
    pub rows_total: i64,
    /// Rows copied so far.
    pub rows_copied: i64,
    /// Estimated bytes (sum of the rows' stored sizes) when planned.
    pub estimated_bytes: i64,
    /// `rows:checksum` computed in the source database, once verified.
    pub checksum_source: Option<String>,
    /// The same, computed in the target database.
    pub checksum_target: Option<String>,
}

/// A move record: `POST` (202), `GET /admin/v1/moves/{move_id}`, resume and abort answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Move {
    /// Id.
    pub move_id: Uuid,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Source region.
    pub from: String,
    /// Target region.
    pub to: String,
    /// Current phase.
    pub phase: MovePhase,
    /// The phase a `failed` move stopped in (resume continues there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in: Option<MovePhase>,
    /// An abort was asked for and is (or will be) carried out.
    #[serde(default)]
    pub abort_requested: bool,
    /// Per table, in foreign-key order.
    pub tables: Vec<MoveTable>,
    /// When each phase was entered (RFC 3339), by phase name.
    #[schema(value_type = Object)]
    pub phases: BTreeMap<String, String>,
    /// Who asked for the move (`admin:<token name>`).
    pub actor: String,
    /// Why the move failed or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Creation time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

/// One table of a dry run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanTable {
    /// Table name, in foreign-key order.
    pub table: String,
    /// The tenant's rows in the source.
    pub rows: i64,
    /// Their stored size in bytes (an estimate of what crosses the wire).
    pub estimated_bytes: i64,
}

/// A dry run's answer (200): what a move would copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovePlan {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Source region.
    pub from: String,
    /// Target region.
    pub to: String,
    /// Per table, in foreign-key order (the copy order; the purge runs in reverse).
    pub tables: Vec<PlanTable>,
    /// Sum of the rows.
    pub rows_total: i64,
    /// Sum of the estimated bytes.
    pub estimated_bytes: i64,
}

/// The internal calls of a move, on region nodes (`/internal/v1/moves/…`, system assertion
/// whose `tid` is the tenant). The gateway's admin calls every one except [`EXPORT_PATH`],
/// which only a target node calls on the source node, with an export assertion the admin
/// minted for the source region ([`EXPORT_SUBJECT_PREFIX`]).
pub mod node {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use uuid::Uuid;

    pub use super::PlanTable;

    /// Plan: the tenant's tables in foreign-key order with counts and sizes.
    pub const PLAN_PATH: &str = "/internal/v1/moves/plan";
    /// Freeze or unfreeze the tenant's writes on this node.
    pub const FREEZE_PATH: &str = "/internal/v1/moves/freeze";
    /// One batch of rows of one table (source side).
    pub const EXPORT_PATH: &str = "/internal/v1/moves/export";
    /// Pull one batch from the source and insert it (target side).
    pub const COPY_PATH: &str = "/internal/v1/moves/copy";
    /// Per-table counts and checksums.
    pub const CHECKSUM_PATH: &str = "/internal/v1/moves/checksum";
    /// Delete every row of the tenant (source after the flip, target on rollback).
    pub const PURGE_PATH: &str = "/internal/v1/moves/purge";
    /// Make the target the tenant's home: thaw it (before the flip), then, once flipped,
    /// append `tenant.moved` (once).
    pub const ARRIVE_PATH: &str = "/internal/v1/moves/arrive";

    /// The subject prefix of an export assertion: `system:move-export:<move id>`. A node
    /// accepts such an assertion at [`EXPORT_PATH`] only, and [`EXPORT_PATH`] accepts no
    /// other.
    pub const EXPORT_SUBJECT_PREFIX: &str = "system:move-export:";
    /// The actor part (after `system:`) of an export assertion for `move_id`.
    #[must_use]
    pub fn export_actor(move_id: Uuid) -> String {
        format!("move-export:{move_id}")
    }

    /// [`PLAN_PATH`] answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Plan {
        /// Tables in foreign-key order.
        pub tables: Vec<PlanTable>,
    }

    /// [`FREEZE_PATH`] body.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Freeze {
        /// `true`: refuse the tenant's writes (after in-flight ones finish); `false`: allow.
        pub frozen: bool,
    }

    /// [`FREEZE_PATH`] answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Frozen {
        /// The tenant's state on this node now.
        pub frozen: bool,
    }

    /// [`EXPORT_PATH`] body.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ExportRequest {
        /// The table.
        pub table: String,
        /// Continue after this key (as returned), or from the start.
        #[serde(default)]
        pub after: Option<Value>,
        /// At most this many rows.
        pub limit: i64,
    }

    /// [`EXPORT_PATH`] answer. Connection credentials are decrypted by the source node (with
    /// its key) and travel as hex plaintext in `credentials` over this one node-to-node call.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ExportBatch {
        /// Rows as JSON objects (every column).
        pub rows: Vec<Value>,
        /// The key of the last row, for the next batch.
        pub last_key: Option<Value>,
    }

    /// Where the source node is.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Source {
        /// Source region id.
        pub region: String,
        /// Base URL of a source node (`https://…`, or `http://` on loopback).
        pub url: String,
    }

    /// [`COPY_PATH`] body.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CopyRequest {
        /// The move.
        pub move_id: Uuid,
        /// The source node.
        pub source: Source,
        /// An export assertion for the source region, valid ≤ 60 s.
        pub export_token: String,
        /// The table.
        pub table: String,
        /// Continue after this key.
        #[serde(default)]
        pub after: Option<Value>,
        /// Batch size.
        pub limit: i64,
    }

    /// [`COPY_PATH`] answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Copied {
        /// Rows received in this batch (inserted, or already there from an earlier attempt).
        pub rows: i64,
        /// The key to continue after; `None` when the batch was empty (table done).
        pub last_key: Option<Value>,
    }

    /// [`CHECKSUM_PATH`] body.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ChecksumRequest {
        /// The tables.
        pub tables: Vec<String>,
    }

    /// One table's checksum.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TableChecksum {
        /// The table.
        pub table: String,
        /// The tenant's rows.
        pub rows: i64,
        /// `rows:checksum`: order independent, over every column (credentials as a digest of
        /// their plaintext; the tenant row's `region` and `frozen` left out).
        pub checksum: String,
    }

    /// [`CHECKSUM_PATH`] answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Checksums {
        /// Per table, in the order asked.
        pub tables: Vec<TableChecksum>,
    }

    /// [`PURGE_PATH`] answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Purged {
        /// Rows deleted.
        pub rows: i64,
    }

    /// [`ARRIVE_PATH`] body.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Arrive {
        /// The move.
        pub move_id: Uuid,
        /// The source region (recorded in the `tenant.moved` event).
        pub from: String,
        /// `false`: thaw the tenant and set its region (before the flip; the rows stay as
        /// verified, so a verification repeated after a crash still matches). `true`: append
        /// the `tenant.moved` audit event unless this move already did (after the flip).
        pub record_event: bool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_spelled_as_on_the_wire_and_ordered() {
        for p in MovePhase::ALL {
            let wire = serde_json::to_value(p).unwrap();
            assert_eq!(wire, p.as_str());
            assert_eq!(MovePhase::parse(p.as_str()), Some(p));
        }
        assert!(MovePhase::Verifying < MovePhase::Flipped);
        assert!(MovePhase::Done.is_final() && MovePhase::RolledBack.is_final());
        assert!(!MovePhase::Failed.is_final());
        assert_eq!(MovePhase::parse("moving"), None);
    }

    #[test]
    fn a_move_request_refuses_unknown_fields() {
        assert!(serde_json::from_str::<MoveRequest>(r#"{"to":"eu","force":true}"#).is_err());
        let r: MoveRequest = serde_json::from_str(r#"{"to":"eu"}"#).unwrap();
        assert!(!r.dry_run);
    }
}
