//! The terminal rendering: verdict, violations first, then one line per region and the
//! tenant table. Plain text, no colour, stable column order (scripts should use `--json`).

use std::fmt::Write as _;

use super::{tenant_rows, verdict};
use crate::report::{RegionStatus, Report};

/// Renders `report` as aligned text tables.
#[must_use]
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let tenants = tenant_rows(report);
    let _ = writeln!(
        out,
        "Residency audit: {} ({} regions, {} tenants with rows, {} violations)",
        verdict(report),
        report.regions.len(),
        tenants.len(),
        report.violations.len()
    );
    for r in &report.regions {
        if r.status != RegionStatus::Audited {
            let _ = writeln!(
                out,
                "  region {} could not be audited ({}): {}",
                r.id,
                r.status,
                r.error.as_deref().unwrap_or("unknown error")
            );
        }
    }

    out.push('\n');
    if report.violations.is_empty() {
        out.push_str("VIOLATIONS: none\n");
    } else {
        out.push_str("VIOLATIONS\n");
        let rows: Vec<Vec<String>> = report
            .violations
            .iter()
            .map(|v| {
                vec![
                    v.kind.to_string(),
                    v.region.to_string(),
                    v.tenant_id.clone().unwrap_or_else(|| "-".into()),
                    v.table.clone().unwrap_or_else(|| "-".into()),
                    v.role.clone().unwrap_or_else(|| "-".into()),
                    v.detail.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &["KIND", "REGION", "TENANT", "TABLE", "ROLE", "DETAIL"],
            &rows,
        );
    }

    out.push_str("\nREGIONS\n");
    let rows: Vec<Vec<String>> = report
        .regions
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                [&r.location, &r.display_name]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                format!(
                    "{}:{}/{}",
                    r.database.host, r.database.port, r.database.name
                ),
                r.status.to_string(),
                r.tables_scanned.to_string(),
                r.tenants.len().to_string(),
                r.rows_total.to_string(),
                format!(
                    "{}/{} passed",
                    r.posture.passed,
                    r.posture.passed + r.posture.failed
                ),
                r.routing.as_ref().map_or_else(
                    || "-".into(),
                    |g| {
                        format!(
                            "{} req, {} misroutes refused, {}/{} upstreams up",
                            g.requests_total.map_or("?".into(), |n| n.to_string()),
                            g.misroutes_refused.map_or("?".into(), |n| n.to_string()),
                            g.upstreams_reachable.map_or("?".into(), |n| n.to_string()),
                            r.upstreams.len()
                        )
                    },
                ),
                if r.upstreams.is_empty() {
                    "-".into()
                } else {
                    r.upstreams.join(" ")
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "REGION",
            "LOCATION",
            "DATABASE",
            "STATUS",
            "TABLES",
            "TENANTS",
            "ROWS",
            "POSTURE",
            "ROUTING",
            "UPSTREAMS",
        ],
        &rows,
    );

    out.push_str("\nTENANTS\n");
    if tenants.is_empty() {
        out.push_str("  (no rows in any audited region)\n");
    } else {
        let mut header = vec!["TENANT", "NAME", "HOME"];
        let ids: Vec<String> = report.regions.iter().map(|r| r.id.to_string()).collect();
        header.extend(ids.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = tenants
            .iter()
            .map(|t| {
                let mut row = vec![t.tenant_id.clone(), t.name.clone(), t.home.clone()];
                row.extend(t.rows.iter().map(ToString::to_string));
                row
            })
            .collect();
        table(&mut out, &header, &rows);
    }
    out
}

/// Appends a left-aligned table; the last column is not padded.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push_str("  ");
        let mut cells = cells.peekable();
        let mut i = 0;
        while let Some(c) = cells.next() {
            out.push_str(c);
            if cells.peek().is_some() {
                let pad = widths[i] - c.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
            i += 1;
        }
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}
