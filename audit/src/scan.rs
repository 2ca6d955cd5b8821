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

use tokio_postgres::config::Host;
use tokio_postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::report::{DatabaseInfo, PostureSummary, Violation, ViolationKind};
use crate::{Progress, RegionInput};

/// How long to wait for a region database to accept the connection, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a region database could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The auditor URL does not parse.
    #[error("invalid auditor database url: {0}")]
    Url(String),
    /// Connecting or logging in failed.
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// `host:port/database`.
        host: String,
        /// The driver's or server's message.
        message: String,
    },
    /// A query failed after connecting.
    #[error("{what} failed: {message}")]
    Query {
        /// Which step.
        what: String,
        /// The server's message.
        message: String,
    },
    /// The scan took longer than allowed.
    #[error("scan did not finish within {0:?}")]
    Timeout(Duration),
}

impl ScanError {
    /// Whether the database was not reached at all (as opposed to failing midway).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Url(_) | Self::Connect { .. })
    }
}

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

/// Describes where `url` points, without its password.
pub(crate) fn database_info(url: &str) -> Result<DatabaseInfo, ScanError> {
    let cfg: tokio_postgres::Config = url.parse().map_err(|e| ScanError::Url(format!("{e}")))?;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let role = cfg.get_user().unwrap_or_default().to_owned();
    Ok(DatabaseInfo {
        host,
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        name: cfg.get_dbname().unwrap_or(&role).to_owned(),
        role,
        server_version: None,
    })
}

/// Connects as the auditing role and reads everything the audit needs from one region.
pub(crate) async fn scan(
    region: &RegionInput,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Scan, ScanError> {
    let mut info = database_info(&region.auditor_url)?;
    let mut cfg: tokio_postgres::Config = region
        .auditor_url
        .parse()
        .map_err(|e| ScanError::Url(format!("{e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(CONNECT_TIMEOUT);
    }
    cfg.application_name("residency-audit");
    let place = format!("{}:{}/{}", info.host, info.port, info.name);
    progress(Progress::Connecting {
        region: &region.id,
        database: &place,
    });
    let (mut client, conn) = cfg.connect(NoTls).await.map_err(|e| ScanError::Connect {
        host: place.clone(),
        message: pg_message(&e),
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

    let mut posture = crate::posture::Posture::new(region);
    let tenant_tables = crate::posture::read_tenant_tables(&tx, &mut posture).await?;
    crate::posture::check_app_role(&tx, &mut posture).await?;
    crate::posture::check_objects(&tx, &mut posture).await?;

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

/// Quotes a Postgres identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's message when there is one, else the driver's.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        }
    }
}

pub(crate) fn query_err(what: &str, e: &tokio_postgres::Error) -> ScanError {
    ScanError::Query {
        what: what.to_owned(),
        message: pg_message(e),
    }
}

/// A posture violation found in `region` (posture findings name no tenant).
pub(crate) fn violation(
    region: &RegionInput,
    kind: ViolationKind,
    table: Option<String>,
    role: Option<String>,
    detail: String,
) -> Violation {
    Violation {
        kind,
        region: region.id.clone(),
        tenant_id: None,
        table,
        role,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn database_info_has_no_password() {
        let i = database_info("postgres://aud:s3cret@db.eu.internal:6432/region_eu").unwrap();
        assert_eq!(
            (i.host.as_str(), i.port, i.name.as_str(), i.role.as_str()),
            ("db.eu.internal", 6432, "region_eu", "aud")
        );
        assert!(!format!("{i:?}").contains("s3cret"));
        assert!(database_info("not a url at all ::").is_err());
    }
}
