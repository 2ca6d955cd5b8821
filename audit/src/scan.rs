//! Reading one region database as the auditing role: the catalog (posture) and the per-tenant
//! row counts (placement input).
//!
//! Everything runs in one `REPEATABLE READ, READ ONLY` transaction, so the counts of all tables
//! and the home records come from one snapshot. The auditing role needs no privilege beyond
//! `SELECT (tenant_id)` and the `auditor_placement` policy on each customer table: the catalog
//! views and the `has_*_privilege` / `pg_has_role` functions are open to every role.
//!
//! Counts are one grouped query per table, `SELECT tenant_id, count(*) ... GROUP BY tenant_id`,
//! which Postgres answers with an index-only scan of the `tenant_id`-leading primary key or a
//! parallel sequential scan with hash aggregation, whichever it finds cheaper; never one query
//! per tenant (1,000,000 rows take about 0.3 s, see `docs/audit.md`). This module does not decide what is a
//! placement violation: [`crate::placement`] does, with the directory.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::input::{Progress, RegionInput};
use crate::pg::{database_info, query_err, quote_ident, ScanError};
use crate::posture::{check_app_role, check_objects, read_tenant_tables, Posture};
use crate::report::{DatabaseInfo, PostureSummary, Violation};

/// How long to wait for a region database to accept the connection, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One customer table (a relation with a `tenant_id` column).
#[derive(Debug, Clone)]
pub(crate) struct TableScan {
    /// `name` in `public`, `schema.name` elsewhere.
    pub name: String,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// Whether every row was counted (readable and visible to the auditing role).
    pub counted: bool,
    /// `(tenant_id as text, rows)`, ordered by tenant.
    pub counts: Vec<(String, u64)>,
}

/// What one region database holds, as read by the auditing role.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    pub database: DatabaseInfo,
    pub tables: Vec<TableScan>,
    pub posture: PostureSummary,
    /// Posture violations (placement ones are computed later, with the directory).
    pub violations: Vec<Violation>,
}

/// Connects as the auditing role and reads everything the audit needs from one region.
pub(crate) async fn scan(
    region: &RegionInput,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Scan, ScanError> {
    let mut info = database_info(&region.auditor_url)?;
    let mut target = residency_pg::Target::parse(&region.auditor_url)
        .map_err(|e| ScanError::Url(format!("{e}")))?;
    let cfg = target.config_mut();
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(CONNECT_TIMEOUT);
    }
    cfg.application_name("residency-audit");
    let place = format!("{}:{}/{}", info.host, info.port, info.name);
    progress(Progress::Connecting {
        region: &region.id,
        database: &place,
    });
    let (mut client, conn) =
        target
            .config()
            .connect(target.tls())
            .await
            .map_err(|e| ScanError::Connect {
                host: format!("{place} (sslmode {})", target.mode().as_str()),
                message: residency_pg::tls::reason(&e),
            })?;
    let driver = tokio::spawn(conn);
    let result = scan_connected(&mut client, region, &mut info, progress).await;
    drop(client);
    // The connection task ends once the client is gone; its result adds nothing.
    let _ = driver.await;
    result.map(|(tables, posture, violations)| Scan {
        database: info,
        tables,
        posture,
        violations,
    })
}

type Scanned = (Vec<TableScan>, PostureSummary, Vec<Violation>);

async fn scan_connected(
    client: &mut Client,
    region: &RegionInput,
    info: &mut DatabaseInfo,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Scanned, ScanError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| query_err("begin", &e))?;
    let who = tx
        .query_one(
            "SELECT current_user::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| query_err("reading the server version", &e))?;
    info.role = who.get(0);
    info.server_version = Some(who.get(1));

    let mut posture = Posture::new(region);
    let tenant_tables = read_tenant_tables(&tx, &mut posture).await?;
    check_app_role(&tx, &mut posture).await?;
    check_objects(&tx, &mut posture).await?;

    let countable: Vec<usize> = tenant_tables
        .iter()
        .enumerate()
        .filter(|(_, t)| t.countable())
        .map(|(i, _)| i)
        .collect();
    let mut tables = Vec::with_capacity(tenant_tables.len());
    for t in &tenant_tables {
        tables.push(TableScan {
            name: t.display_name(),
            rls_enabled: t.rls_enabled,
            rls_forced: t.rls_forced,
            counted: false,
            counts: Vec::new(),
        });
    }
    for (done, &i) in countable.iter().enumerate() {
        let t = &tenant_tables[i];
        let started = Instant::now();
        let counts = count_rows(&tx, &t.schema, &t.name).await?;
        let scan = &mut tables[i];
        scan.counted = true;
        scan.counts = counts;
        progress(Progress::TableCounted {
            region: &region.id,
            table: &scan.name,
            rows: scan.counts.iter().map(|(_, n)| n).sum(),
            tenants: scan.counts.len(),
            elapsed: started.elapsed(),
            done: done + 1,
            of: countable.len(),
        });
    }
    tx.commit().await.map_err(|e| query_err("commit", &e))?;
    let (summary, violations) = posture.finish();
    Ok((tables, summary, violations))
}

async fn count_rows(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, u64)>, ScanError> {
    // Identifiers come from the catalog and are quoted, so any name is safe here.
    let sql = format!(
        "SELECT tenant_id::text, count(*) FROM {}.{} GROUP BY tenant_id ORDER BY 1",
        quote_ident(schema),
        quote_ident(table)
    );
    let rows = tx
        .query(&sql, &[])
        .await
        .map_err(|e| query_err(&format!("counting rows of {schema}.{table}"), &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let tenant: Option<String> = r.get(0);
            let n: i64 = r.get(1);
            (
                tenant.unwrap_or_else(|| "null".to_owned()),
                u64::try_from(n).unwrap_or(0),
            )
        })
        .collect())
}
