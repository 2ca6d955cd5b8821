//! Renders a [`Report`](crate::Report) for people: a terminal table ([`text`]) and a
//! self-contained HTML page ([`html`]). JSON is the serde form of the report itself.

pub mod html;
pub mod text;

use crate::report::Report;

/// The one-word verdict shown at the top of every rendering.
#[must_use]
pub fn verdict(report: &Report) -> &'static str {
    match report.outcome().exit_code() {
        0 => "CLEAN",
        1 => "VIOLATIONS",
        _ => "INCOMPLETE",
    }
}

/// Every tenant seen in any region or in the directory view of the report, with its home
/// region and rows per audited region (columns in region order).
pub(crate) struct TenantRow {
    pub tenant_id: String,
    pub name: String,
    pub home: String,
    pub rows: Vec<u64>,
}

pub(crate) fn tenant_rows(report: &Report) -> Vec<TenantRow> {
    let mut rows: std::collections::BTreeMap<&str, TenantRow> = std::collections::BTreeMap::new();
    for (i, region) in report.regions.iter().enumerate() {
        for t in &region.tenants {
            let row = rows.entry(&t.tenant_id).or_insert_with(|| TenantRow {
                tenant_id: t.tenant_id.clone(),
                name: t.name.clone().unwrap_or_default(),
                home: t
                    .home_region
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), ToString::to_string),
                rows: vec![0; report.regions.len()],
            });
            row.rows[i] += t.rows;
        }
    }
    let mut rows: Vec<TenantRow> = rows.into_values().collect();
    rows.sort_by(|a, b| (&a.home, &a.name, &a.tenant_id).cmp(&(&b.home, &b.name, &b.tenant_id)));
    rows
}
