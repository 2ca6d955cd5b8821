//! The HTML rendering: one self-contained page (inline CSS, no script, no external resource)
//! with the verdict, violations first, a summary card per region (location, database host,
//! upstreams, tables, posture checks) and the tenant table. Every piece of text from the
//! report or the databases goes through [`escape`].

use std::fmt::Write as _;

use super::{tenant_rows, verdict};
use crate::report::{RegionStatus, Report};

/// Escapes text for HTML element content and double-quoted attribute values.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:700;color:#fff}
.clean{background:#1a7f37}.violations{background:#cf222e}.incomplete{background:#9a6700}
table{border-collapse:collapse;width:100%;background:#fff;margin:.25rem 0 1rem}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em}.cards{display:flex;flex-wrap:wrap;gap:1rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.75rem 1rem;min-width:18rem;flex:1}
.card h3{margin:0 0 .5rem;font-size:1rem}.bad{color:#cf222e;font-weight:600}.ok{color:#1a7f37}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:0}dt{color:#57606a}dd{margin:0}
";

/// Renders `report` as a complete HTML document.
#[must_use]
pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let v = verdict(report);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Residency audit: {v}</title><style>{STYLE}</style></head><body>\n\
         <h1>Residency audit <span id=\"verdict\" class=\"verdict {}\">{v}</span></h1>\n\
         <p>Schema version {}. {} regions, {} violations.</p>\n",
        v.to_ascii_lowercase(),
        report.version,
        report.regions.len(),
        report.violations.len()
    );
    for r in report
        .regions
        .iter()
        .filter(|r| r.status != RegionStatus::Audited)
    {
        let _ = writeln!(
            h,
            "<p class=\"bad\">Region {} could not be audited ({}): {}</p>",
            escape(r.id.as_str()),
            r.status,
            escape(r.error.as_deref().unwrap_or("unknown error"))
        );
    }

    h.push_str("<h2>Violations</h2>\n");
    if report.violations.is_empty() {
        h.push_str("<p class=\"ok\" id=\"no-violations\">None.</p>\n");
    } else {
        h.push_str(
            "<table id=\"violations\"><thead><tr><th>Kind</th><th>Region</th><th>Tenant</th>\
             <th>Table</th><th>Role</th><th>Detail</th></tr></thead><tbody>\n",
        );
        for x in &report.violations {
            let opt = |o: &Option<String>| o.as_deref().map_or_else(String::new, escape);
            let _ = writeln!(
                h,
                "<tr class=\"violation\"><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.kind,
                escape(x.region.as_str()),
                opt(&x.tenant_id),
                opt(&x.table),
                opt(&x.role),
                escape(&x.detail)
            );
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2>Regions</h2>\n<div class=\"cards\">\n");
    for r in &report.regions {
        let _ = write!(
            h,
            "<section class=\"card region\" id=\"region-{id}\"><h3>{id} {name}</h3><dl>\
             <dt>Location</dt><dd>{loc}</dd>\
             <dt>Database</dt><dd><code>{host}:{port}/{db}</code> as <code>{role}</code> {ver}</dd>\
             <dt>App role</dt><dd><code>{app}</code></dd>\
             <dt>Upstreams</dt><dd>{ups}</dd>\
             <dt>Status</dt><dd class=\"{status_class}\">{status}</dd>\
             <dt>Tables scanned</dt><dd>{tables}</dd>\
             <dt>Rows</dt><dd>{rows}</dd>\
             <dt>Tenants with rows</dt><dd>{tenants}</dd>\
             <dt>Posture</dt><dd class=\"{posture_class}\">{passed}/{checks} checks passed</dd>\
             <dt>Routing</dt><dd>{routing}</dd>\
             <dt>Scan time</dt><dd>{ms} ms</dd></dl>",
            id = escape(r.id.as_str()),
            name = if r.display_name.is_empty() || r.display_name == r.id.as_str() {
                String::new()
            } else {
                format!("({})", escape(&r.display_name))
            },
            loc = if r.location.is_empty() {
                "not given".to_owned()
            } else {
                escape(&r.location)
            },
            host = escape(&r.database.host),
            port = r.database.port,
            db = escape(&r.database.name),
            role = escape(&r.database.role),
            ver = r
                .database
                .server_version
                .as_deref()
                .map_or_else(String::new, |v| format!("(Postgres {})", escape(v))),
            app = escape(&r.app_role),
            ups = if r.upstreams.is_empty() {
                "none configured".to_owned()
            } else {
                r.upstreams
                    .iter()
                    .map(|u| format!("<code>{}</code>", escape(u)))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            status_class = if r.status == RegionStatus::Audited {
                "ok"
            } else {
                "bad"
            },
            status = r.status,
            tables = r.tables_scanned,
            rows = r.rows_total,
            tenants = r.tenants.len(),
            posture_class = if r.posture.failed == 0 { "ok" } else { "bad" },
            passed = r.posture.passed,
            checks = r.posture.passed + r.posture.failed,
            routing = r.routing.as_ref().map_or_else(
                || "not collected".to_owned(),
                |g| format!(
                    "{} requests, {} misroutes refused, {}/{} upstreams up {}",
                    g.requests_total.map_or("?".into(), |n| n.to_string()),
                    g.misroutes_refused.map_or("?".into(), |n| n.to_string()),
                    g.upstreams_reachable.map_or("?".into(), |n| n.to_string()),
                    r.upstreams.len(),
                    if g.source.is_empty() {
                        String::new()
                    } else {
                        format!("(from {})", escape(&g.source))
                    }
                )
            ),
            ms = r.duration_ms,
        );
        if !r.posture.checks.is_empty() {
            h.push_str("<table class=\"posture\"><thead><tr><th>Check</th><th>Objects</th><th>Failures</th></tr></thead><tbody>");
            for c in &r.posture.checks {
                let _ = write!(
                    h,
                    "<tr><td title=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num {}\">{}</td></tr>",
                    escape(&c.description),
                    escape(&c.name),
                    c.checked,
                    if c.failures == 0 { "ok" } else { "bad" },
                    c.failures
                );
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</div>\n<h2>Tenants</h2>\n");

    let tenants = tenant_rows(report);
    if tenants.is_empty() {
        h.push_str("<p>No rows in any audited region.</p>\n");
    } else {
        h.push_str("<table id=\"tenants\"><thead><tr><th>Tenant</th><th>Name</th><th>Home</th>");
        for r in &report.regions {
            let _ = write!(h, "<th>Rows in {}</th>", escape(r.id.as_str()));
        }
        h.push_str("</tr></thead><tbody>\n");
        for t in &tenants {
            let _ = write!(
                h,
                "<tr class=\"tenant\"><td><code>{}</code></td><td>{}</td><td>{}</td>",
                escape(&t.tenant_id),
                escape(&t.name),
                escape(&t.home)
            );
            for (r, n) in report.regions.iter().zip(&t.rows) {
                let misplaced = *n > 0 && r.id.as_str() != t.home;
                let _ = write!(
                    h,
                    "<td class=\"num{}\">{n}</td>",
                    if misplaced { " bad" } else { "" }
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }
}
