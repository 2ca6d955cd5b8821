//! Compliance audit of data placement and isolation posture, read from the region databases
//! themselves (SPEC §3.5).
//!
//! [`run_audit`] takes an [`AuditInput`] (the regions with the URL of each region's auditor
//! role, and the directory's tenants, from whatever source the caller has: a TOML directory
//! file, the Postgres directory, the gateway's cache) and returns a [`Report`]:
//!
//! - **placement**: per region database, rows per tenant in every table that has a
//!   `tenant_id` column (found in the catalog, not hard-coded), counted with one grouped query
//!   per table as the read-only auditor role; rows outside the tenant's home region, rows of
//!   unknown tenants and provisioned tenants without their home record are violations
//!   ([`placement`]);
//! - **posture**: RLS enabled, forced and keyed on `app.tenant_id` on every such table; the
//!   app role not superuser, not `BYPASSRLS`, owning nothing, without `TRUNCATE` /
//!   `REFERENCES`; views `security_invoker`; `SECURITY DEFINER` functions with a pinned
//!   `search_path` ([`posture`]);
//! - **routing evidence**: each region's location, upstreams, database host and, when the
//!   caller has them, the gateway's request and refused-misroute counts.
//!
//! Regions are scanned concurrently, each in one read-only snapshot. A region that cannot be
//! reached does not stop the others: it is reported with `status: "unreachable"` and the run's
//! [`Outcome`] is `Incomplete` (exit 2).
//!
//! # Why the auditor role counts rows this way
//! Each customer table has a policy `auditor_placement FOR SELECT TO <auditor> USING (true)`
//! and the auditor holds `SELECT (tenant_id)` only: it can count rows per tenant and cannot
//! read any other column, so the audit sees no customer content. A `SECURITY DEFINER`
//! counting function was rejected: it would run as the table owner, which is itself subject
//! to `FORCE ROW LEVEL SECURITY` and would see no rows without an `app.tenant_id`, and it
//! would add an executable object whose `search_path` and grants must be policed. The audit
//! checks its own reach: a table the auditor cannot read or whose rows RLS hides from it is a
//! violation (`unauditable_table`, `auditor_blind`), so a silently empty count cannot pass
//! for a clean one; so is an auditing role that can read customer columns
//! (`auditor_overprivileged`).
//!
//! # Report schema (version 1)
//! ```json
//! { "version": 1, "clean": false,
//!   "violations": [ { "kind": "misplaced_rows", "region": "eu", "tenant_id": "…",
//!                     "table": "audit_events", "detail": "2 rows of tenant … but its home region is us" } ],
//!   "regions": [ { "id": "eu", "display_name": "Europe", "location": "Frankfurt, DE",
//!                  "upstreams": ["http://10.0.0.5:8080"],
//!                  "database": { "host": "db.eu", "port": 5432, "name": "region_eu",
//!                                "role": "eu_auditor", "server_version": "16.4" },
//!                  "app_role": "eu_app", "status": "audited", "tables_scanned": 9,
//!                  "rows_total": 1234,
//!                  "tables": [ { "table": "tenants", "rows": 3, "tenants": 3, "counted": true,
//!                                "rls_enabled": true, "rls_forced": true } ],
//!                  "tenants": [ { "tenant_id": "…", "name": "Acme", "home_region": "eu",
//!                                 "status": "active", "at_home": true, "rows": 411,
//!                                 "tables": { "tenants": 1, "workflows": 10 } } ],
//!                  "posture": { "passed": 14, "failed": 0,
//!                               "checks": [ { "name": "rls_forced", "description": "…",
//!                                             "checked": 9, "failures": 0 } ] },
//!                  "routing": { "requests_total": 10, "misroutes_refused": 0,
//!                               "upstreams_reachable": 1, "source": "…" },
//!                  "duration_ms": 41 } ] }
//! ```
//! `tenant_id`, `table`, `role` (violations), `error` (regions) and `routing` are left out
//! when they do not apply. Every violation kind is listed in [`ViolationKind`]; the full field
//! reference is `docs/audit.md`.

mod input;
mod pg;
mod placement;
mod posture;
pub mod render;
pub use residency_core::wire::audit as report;
pub mod routing;
mod scan;
pub mod sources;

use std::time::{Duration, Instant};

use residency_core::RegionId;

pub use input::{no_progress, AuditInput, MoveInFlight, Progress, RegionInput};
pub use pg::{describe_database, ScanError};
pub use posture::TENANT_POLICY_EXPR;
pub use report::{
    DatabaseInfo, Outcome, PostureCheck, PostureSummary, RegionReport, RegionStatus, Report,
    RoutingEvidence, TableSummary, TenantPlacement, Violation, ViolationKind, SCHEMA_VERSION,
};

/// Audits every region of `input` concurrently and builds the report. Never fails: regions
/// that cannot be audited are reported as such (see [`Report::outcome`]).
pub async fn run_audit(input: &AuditInput, progress: &(dyn Fn(Progress<'_>) + Sync)) -> Report {
    let scans = futures_util::future::join_all(input.regions.iter().map(|r| async move {
        let started = Instant::now();
        let result = match tokio::time::timeout(input.region_timeout, scan::scan(r, progress)).await
        {
            Ok(result) => result,
            Err(_) => Err(ScanError::Timeout(input.region_timeout)),
        };
        match &result {
            Ok(_) => progress(Progress::RegionDone {
                region: &r.id,
                elapsed: started.elapsed(),
            }),
            Err(e) => progress(Progress::RegionFailed {
                region: &r.id,
                error: e,
            }),
        }
        (result, started.elapsed())
    }))
    .await;

    let region_tables: Vec<placement::RegionTables<'_>> = input
        .regions
        .iter()
        .zip(&scans)
        .map(|(r, (s, _))| placement::RegionTables {
            id: &r.id,
            tables: s.as_ref().ok().map(|s| s.tables.as_slice()),
        })
        .collect();
    let (mut violations, placements) =
        placement::evaluate(&input.tenants, &input.moves, &region_tables);

    let mut regions = Vec::with_capacity(input.regions.len());
    for ((r, (scan, elapsed)), tenants) in input.regions.iter().zip(scans).zip(placements) {
        regions.push(region_report(r, scan, elapsed, tenants, &mut violations));
    }
    let order = |id: &RegionId| {
        input
            .regions
            .iter()
            .position(|r| &r.id == id)
            .unwrap_or(usize::MAX)
    };
    violations.sort_by(|a, b| {
        (
            !a.kind.is_placement(),
            order(&a.region),
            a.kind,
            &a.table,
            &a.tenant_id,
            &a.role,
        )
            .cmp(&(
                !b.kind.is_placement(),
                order(&b.region),
                b.kind,
                &b.table,
                &b.tenant_id,
                &b.role,
            ))
    });
    Report::new(violations, regions)
}

fn region_report(
    r: &RegionInput,
    scan: Result<scan::Scan, ScanError>,
    elapsed: Duration,
    tenants: Vec<TenantPlacement>,
    violations: &mut Vec<Violation>,
) -> RegionReport {
    let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let mut report = RegionReport {
        id: r.id.clone(),
        display_name: r.display_name.clone(),
        location: r.location.clone(),
        upstreams: r.upstreams.clone(),
        database: pg::database_info(&r.auditor_url).unwrap_or_else(|_| DatabaseInfo {
            host: String::new(),
            port: 0,
            name: String::new(),
            role: String::new(),
            server_version: None,
        }),
        app_role: r.app_role.clone(),
        status: RegionStatus::Audited,
        error: None,
        tables_scanned: 0,
        rows_total: 0,
        tables: Vec::new(),
        tenants,
        posture: PostureSummary::default(),
        routing: r.routing.clone(),
        duration_ms,
    };
    match scan {
        Ok(s) => {
            report.database = s.database;
            report.tables = s
                .tables
                .iter()
                .map(|t| TableSummary {
                    table: t.name.clone(),
                    rows: t.counts.iter().map(|(_, n)| n).sum(),
                    tenants: t.counts.len(),
                    counted: t.counted,
                    rls_enabled: t.rls_enabled,
                    rls_forced: t.rls_forced,
                })
                .collect();
            report.tables_scanned = s.tables.iter().filter(|t| t.counted).count();
            report.rows_total = report.tables.iter().map(|t| t.rows).sum();
            report.posture = s.posture;
            violations.extend(s.violations);
        }
        Err(e) => {
            report.status = if e.is_unreachable() {
                RegionStatus::Unreachable
            } else {
                RegionStatus::Failed
            };
            report.error = Some(e.to_string());
        }
    }
    report
}
