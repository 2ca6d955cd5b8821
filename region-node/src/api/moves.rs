//! The internal endpoints of a tenant move (`/internal/v1/moves/…`), all behind a system
//! assertion whose `tid` is the tenant, all through `Db::system` (the app role, in the
//! tenant's RLS context):
//!
//! - `plan` (source): the catalogue's tables with the tenant's row counts and sizes; refuses
//!   when the database holds a tenant table the catalogue does not list;
//! - `freeze` (source, or target on rollback): writes of the tenant wait for nothing in flight
//!   and are refused from then on (`tenants.frozen`, see `db/tenant_tx.rs`); `frozen: false`
//!   thaws;
//! - `export` (source; only with an export assertion, `system:move-export:<move>`): one batch
//!   of one table after a key, credentials opened with this region's key; only while frozen;
//! - `copy` (target): calls the source's `export` with the export assertion it was handed and
//!   inserts the batch idempotently, credentials sealed with this region's key;
//! - `checksum` (both): per table, the count and an order-independent checksum;
//! - `purge` (source after the flip, target on rollback): `purge_moved_tenant`;
//! - `arrive` (target): before the flip, thaw and set the home record's region; after it,
//!   append `tenant.moved` once.

mod catalogue;
mod peer;

pub(crate) use peer::Peers;

use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use axum::extract::State;
use axum::Json;
use residency_core::wire::moves::node::{
    Arrive, ChecksumRequest, Checksums, Copied, CopyRequest, ExportBatch, ExportRequest, Freeze,
    Frozen, Plan, PlanTable, Purged, TableChecksum, EXPORT_SUBJECT_PREFIX,
};
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::Body;
use crate::db::tenant_tx::{Caller, Tx, FREEZE};
use crate::error::ApiError;
use crate::state::AppState;
use catalogue::{find, sealed_column, Table, TABLES, TENANT_TABLES_SQL};

/// The largest batch a copy or export asks for.
const MAX_BATCH: i64 = 10_000;

fn table(name: &str) -> Result<&'static Table, ApiError> {
    find(name).ok_or_else(|| ApiError::invalid("table", "not a customer table"))
}

fn batch(limit: i64) -> Result<i64, ApiError> {
    if (1..=MAX_BATCH).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_BATCH}"),
        ))
    }
}

/// `POST /internal/v1/moves/plan`.
pub(super) async fn plan(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Plan>, ApiError> {
    let tables = st
        .db
        .system(&caller, |tx| {
            Box::pin(async move {
                let present: Vec<String> = tx
                    .query(TENANT_TABLES_SQL, &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if let Some(missing) = present.iter().find(|t| find(t).is_none()) {
                    return Err(ApiError::Unexpected(anyhow::anyhow!(
                        "table {missing} holds tenant rows but is not in the move catalogue"
                    )));
                }
                let mut out = Vec::with_capacity(TABLES.len());
                for t in TABLES {
                    let row = tx.query_one(&t.plan_sql(), &[]).await?;
                    out.push(PlanTable {
                        table: t.name.to_owned(),
                        rows: row.get(0),
                        estimated_bytes: row.get(1),
                    });
                }
                Ok(out)
            })
        })
        .await?;
    if tables.first().is_none_or(|t| t.rows == 0) {
        return Err(ApiError::NotFound("tenant"));
    }
    Ok(Json(Plan { tables }))
}

/// `POST /internal/v1/moves/freeze`.
pub(super) async fn freeze(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<Freeze>,
) -> Result<Json<Frozen>, ApiError> {
    let frozen = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                let tenant = tx.tenant().to_string();
                tx.execute(FREEZE, &[&tenant]).await?;
                tx.execute("UPDATE tenants SET frozen = $1", &[&body.frozen])
                    .await?;
                let now: Option<bool> = tx
                    .query_opt("SELECT frozen FROM tenants", &[])
                    .await?
                    .map(|r| r.get(0));
                Ok(now)
            })
        })
        .await?;
    // A tenant with no home record here (a target before its first batch) is neither.
    Ok(Json(Frozen {
        frozen: frozen.unwrap_or(false),
    }))
}

/// `POST /internal/v1/moves/export`: only for an export assertion, only while frozen.
pub(super) async fn export(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<ExportRequest>,
) -> Result<Json<ExportBatch>, ApiError> {
    if !caller.subject.starts_with(EXPORT_SUBJECT_PREFIX) {
        return Err(ApiError::Forbidden(
            "the export needs a move export assertion".into(),
        ));
    }
    let t = table(&body.table)?;
    let limit = batch(body.limit)?;
    let st2 = Arc::clone(&st);
    let batch = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                let frozen: Option<bool> = tx
                    .query_opt("SELECT frozen FROM tenants", &[])
                    .await?
                    .map(|r| r.get(0));
                if frozen != Some(true) {
                    return Err(ApiError::Conflict(
                        "the tenant is not frozen here: nothing is exported from a tenant that may still be written".into(),
                    ));
                }
                let rows = tx.query(&t.export_sql(), &[&body.after, &limit]).await?;
                let last_key: Option<Value> = rows.last().map(|r| r.get("key"));
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let mut row: Value = r.get("row");
                    if let Some(cols) = sealed_column(t.name) {
                        open_sealed(&st2, tx.tenant(), cols, &mut row)?;
                    }
                    out.push(row);
                }
                Ok(ExportBatch {
                    rows: out,
                    last_key,
                })
            })
        })
        .await?;
    Ok(Json(batch))
}

/// The row's sealed column (`\x…` bytea text) and id.
fn sealed(row: &Value, column: &str) -> Result<(Uuid, Vec<u8>), ApiError> {
    let bad = |what: &str| ApiError::Unexpected(anyhow::anyhow!("sealed row: {what}"));
    let id: Uuid = row["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("id"))?;
    let blob = row[column]
        .as_str()
        .and_then(|s| s.strip_prefix("\\x"))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad(column))?;
    Ok((id, blob))
}

/// Replaces a row's ciphertext (connection credentials, a webhook secret) by its plaintext
/// (hex), opened with this region's key; the key id column goes (the target seals with its
/// own).
fn open_sealed(
    st: &AppState,
    tenant: Uuid,
    (column, kid): (&str, &str),
    row: &mut Value,
) -> Result<(), ApiError> {
    let (id, blob) = sealed(row, column)?;
    let plain = st.cipher.open(tenant, id, &blob).map_err(|e| {
        ApiError::Unexpected(anyhow::anyhow!("row {id}: {e} with this region's key"))
    })?;
    row[column] = Value::String(hex::encode(plain));
    if let Some(o) = row.as_object_mut() {
        o.remove(kid);
    }
    Ok(())
}

/// Seals a received row's plaintext (hex) with this region's key.
fn seal_received(
    st: &AppState,
    tenant: Uuid,
    (column, kid): (&str, &str),
    row: &mut Value,
) -> Result<(), ApiError> {
    let bad = |what: &str| ApiError::Peer(format!("the source sent a row without {what}"));
    let id: Uuid = row["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("an id"))?;
    let plain = row[column]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad(column))?;
    let blob = st
        .cipher
        .seal(tenant, id, &plain)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("sealing: {e}")))?;
    row[column] = Value::String(format!("\\x{}", hex::encode(blob)));
    row[kid] = Value::String(st.cipher.kid().to_owned());
    Ok(())
}

/// `POST /internal/v1/moves/copy`: one batch from the source into this database.
pub(super) async fn copy(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CopyRequest>,
) -> Result<Json<Copied>, ApiError> {
    let t = table(&body.table)?;
    let limit = batch(body.limit)?;
    let base = st.peers.check_url(&body.source.url)?;
    if body.source.region == st.region.id.as_str() {
        return Err(ApiError::invalid(
            "source.region",
            "a tenant is not copied from its own region",
        ));
    }
    let request = ExportRequest {
        table: t.name.to_owned(),
        after: body.after.clone(),
        limit,
    };
    let got = peer::export(
        &st.peers,
        &base,
        &body.export_token,
        &caller.request_id,
        &request,
    )
    .await?;
    let n = i64::try_from(got.rows.len()).unwrap_or(i64::MAX);
    if n > limit {
        return Err(ApiError::Peer(
            "the source sent more rows than asked".into(),
        ));
    }
    let mut rows = got.rows;
    if let Some(cols) = sealed_column(t.name) {
        for row in &mut rows {
            seal_received(&st, caller.tenant.as_uuid(), cols, row)?;
        }
    }
    let region = st.region.id.to_string();
    if n > 0 {
        st.db
            .system(&caller, move |tx| {
                Box::pin(async move {
                    tx.execute(&t.import_sql(), &[&Value::Array(rows)]).await?;
                    if t.name == "tenants" {
                        tx.execute("UPDATE tenants SET region = $1", &[&region])
                            .await?;
                    }
                    Ok(())
                })
            })
            .await?;
    }
    Ok(Json(Copied {
        rows: n,
        last_key: got.last_key,
    }))
}

/// `POST /internal/v1/moves/checksum`.
pub(super) async fn checksum(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<ChecksumRequest>,
) -> Result<Json<Checksums>, ApiError> {
    let tables = body
        .tables
        .iter()
        .map(|t| table(t))
        .collect::<Result<Vec<_>, _>>()?;
    let st2 = Arc::clone(&st);
    let out = st
        .db
        .system(&caller, move |tx| {
            Box::pin(async move {
                tx.batch_execute("SET LOCAL TimeZone = 'UTC'").await?;
                let mut out = Vec::with_capacity(tables.len());
                for t in tables {
                    let row = tx.query_one(&t.checksum_sql(), &[&t.skipped()]).await?;
                    let rows: i64 = row.get(0);
                    let mut checksum = format!("{rows}:{}", row.get::<_, String>(1));
                    if let Some((column, _)) = sealed_column(t.name) {
                        let digest = sealed_digest(&st2, tx, t.name, column).await?;
                        checksum.push_str(&format!(":{digest}"));
                    }
                    out.push(TableChecksum {
                        table: t.name.to_owned(),
                        rows,
                        checksum,
                    });
                }
                Ok(out)
            })
        })
        .await?;
    Ok(Json(Checksums { tables: out }))
}

/// An order-independent digest of a table's sealed column by plaintext (connection
/// credentials, webhook secrets): the wrapping sum of the first 8 bytes of
/// SHA-256(id ‖ plaintext) per row. Ciphertexts under two regions' keys differ; their
/// plaintexts must not. `table` and `column` come from the catalogue, never from a request.
async fn sealed_digest(
    st: &AppState,
    tx: &Tx<'_>,
    table: &str,
    column: &str,
) -> Result<u64, ApiError> {
    let mut sum = 0u64;
    for r in tx
        .query(&format!("SELECT id, {column} FROM {table}"), &[])
        .await?
    {
        let (id, blob): (Uuid, Vec<u8>) = (r.get(0), r.get(1));
        let plain = st.cipher.open(tx.tenant(), id, &blob).map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!("{table} {id}: {e} with this region's key"))
        })?;
        let mut input = id.as_bytes().to_vec();
        input.extend_from_slice(&plain);
        let d = digest(&SHA256, &input);
        let mut first = [0u8; 8];
        first.copy_from_slice(&d.as_ref()[..8]);
        sum = sum.wrapping_add(u64::from_be_bytes(first));
    }
    Ok(sum)
}

/// `POST /internal/v1/moves/purge`: every row of the (frozen) tenant in this region.
pub(super) async fn purge(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Purged>, ApiError> {
    let rows = st
        .db
        .system(&caller, |tx| {
            Box::pin(async move {
                let frozen: Option<bool> = tx
                    .query_opt("SELECT frozen FROM tenants", &[])
                    .await?
                    .map(|r| r.get(0));
                if frozen == Some(false) {
                    return Err(ApiError::Conflict(
                        "the tenant is not frozen here: only a tenant being moved is purged".into(),
                    ));
                }
                let n: i64 = tx
                    .query_one("SELECT purge_moved_tenant($1)", &[&tx.tenant()])
                    .await?
                    .get(0);
                Ok(n)
            })
        })
        .await?;
    tracing::info!(tenant = %caller.tenant, rows, "tenant purged after a move");
    Ok(Json(Purged { rows }))
}

/// `POST /internal/v1/moves/arrive`: the target becomes the tenant's home (thaw, before the
/// flip), then records it (`tenant.moved`, once, after the flip).
pub(super) async fn arrive(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<Arrive>,
) -> Result<Json<Frozen>, ApiError> {
    let region = st.region.id.to_string();
    st.db
        .system(&caller, move |tx| {
            Box::pin(async move {
                if !body.record_event {
                    let tenant = tx.tenant().to_string();
                    tx.execute(FREEZE, &[&tenant]).await?;
                    let n = tx
                        .execute(
                            "UPDATE tenants SET frozen = false, region = $1",
                            &[&region],
                        )
                        .await?;
                    if n == 0 {
                        return Err(ApiError::NotFound("tenant"));
                    }
                    return Ok(());
                }
                let move_id = body.move_id.to_string();
                let recorded: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE action = 'tenant.moved' AND target_id = $1)",
                        &[&move_id],
                    )
                    .await?
                    .get(0);
                if !recorded {
                    tx.audit(
                        "tenant.moved",
                        "move",
                        &move_id,
                        json!({ "from": body.from, "to": region }),
                    )
                    .await?;
                    // Once, with the audit event: the subscriptions arrived with the tenant,
                    // and this node (the new home) delivers it.
                    crate::webhooks::emit(
                        tx,
                        crate::webhooks::EventType::TenantMoved,
                        json!({ "move_id": body.move_id, "from": body.from, "to": region }),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(Json(Frozen { frozen: false }))
}
