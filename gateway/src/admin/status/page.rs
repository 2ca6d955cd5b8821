//! The status page's HTML: what it shows ([`View::gather`]) and how ([`status`], [`login`]).
//! One self-contained document: inline CSS, no script, no external resource; every piece of
//! text from config, the directory or a node goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use residency_audit::render::html::escape;
use residency_core::wire::admin::Region as RegionView;
use residency_core::{TenantStatus, Tier};

use super::super::audit::{tenants, LastAudit};
use super::super::AdminState;
use super::RegionRate;
use crate::directory::DirectoryHealth;

/// The tiers, in column order.
const TIERS: [Tier; 4] = [Tier::Starter, Tier::Growth, Tier::Scale, Tier::Enterprise];

/// Customers of one region: served ones per tier, and the others (suspended, provisioning).
#[derive(Debug, Default, Clone)]
pub(crate) struct Customers {
    pub(crate) by_tier: [usize; 4],
    pub(crate) not_served: usize,
}

/// Everything the page shows, gathered once per request.
pub(crate) struct View {
    pub(crate) now: u64,
    pub(crate) regions: Vec<RegionView>,
    pub(crate) rates: Vec<RegionRate>,
    pub(crate) window: Option<Duration>,
    pub(crate) customers: Result<BTreeMap<String, Customers>, String>,
    pub(crate) directory: DirectoryHealth,
    pub(crate) audit_configured: bool,
    pub(crate) audit: Option<LastAudit>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl View {
    /// Reads regions, rates, customers (the directory, read now), directory health and the
    /// last audit.
    pub(crate) async fn gather(st: &AdminState) -> Self {
        let (rates, window) = st.rates.now();
        let customers = match tenants(st, &st.directory).await {
            Ok(all) => {
                let mut by_region: BTreeMap<String, Customers> = BTreeMap::new();
                for t in all {
                    let c = by_region.entry(t.region.to_string()).or_default();
                    match t.status {
                        TenantStatus::Active | TenantStatus::Moving => {
                            let i = TIERS.iter().position(|x| *x == t.tier).unwrap_or(0);
                            c.by_tier[i] += 1;
                        }
                        TenantStatus::Suspended | TenantStatus::Provisioning => c.not_served += 1,
                        TenantStatus::Deleted => {}
                    }
                }
                Ok(by_region)
            }
            Err(why) => {
                tracing::warn!(error = %why, "status page: cannot read the directory");
                Err("the directory could not be read".to_owned())
            }
        };
        Self {
            now: unix_now(),
            regions: super::super::region_views(st),
            rates,
            window,
            customers,
            directory: st.gateway.directory().health(),
            audit_configured: st.audit.configured(),
            audit: st.audit.last(),
        }
    }
}

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d2330;background:#f3f5f8}
header{display:flex;align-items:center;justify-content:space-between;padding:10px 24px;background:#1d2d50;color:#fff}
header h1{font-size:20px;margin:0}
header .meta{font-size:13px;opacity:.85}
header form{margin:0}
header button{font:inherit;font-size:13px;padding:4px 12px;border:1px solid #fff;background:transparent;color:#fff;border-radius:4px;cursor:pointer}
main{max-width:1320px;margin:0 auto;padding:14px 24px;display:grid;grid-template-columns:1fr 1fr;gap:14px}
section{background:#fff;border:1px solid #d6dbe3;border-radius:8px;padding:12px 16px;min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6e9ef;vertical-align:top}
th{font-weight:600;color:#4a5468;font-size:13px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok,.bad,.warn,.off{display:inline-block;padding:0 8px;border-radius:10px;font-size:13px;font-weight:600}
.ok{background:#dcf3e3;color:#17613a}.bad{background:#fbe0e0;color:#9b1c1c}.warn{background:#fdf1d6;color:#7a5200}.off{background:#e8eaef;color:#4a5468}
.muted{color:#5d6779;font-size:13px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;font-size:14px}
dt{color:#4a5468}dd{margin:0}
a{color:#1f4fb3}
.login{max-width:420px;margin:80px auto;background:#fff;border:1px solid #d6dbe3;border-radius:8px;padding:24px}
.login input{width:100%;font:inherit;padding:6px 8px;margin:8px 0 12px;border:1px solid #b8c0cc;border-radius:4px}
.login button{font:inherit;padding:6px 16px;border:0;border-radius:4px;background:#1d2d50;color:#fff}
";

fn document(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head_extra}\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// A date and time in UTC with how long ago it was.
fn when(at: u64, now: u64) -> String {
    let t = chrono::DateTime::from_timestamp(i64::try_from(at).unwrap_or(0), 0).map_or_else(
        || "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    format!(
        "{t} <span class=\"muted\">({} ago)</span>",
        ago(now.saturating_sub(at))
    )
}

fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

fn rfc3339_when(at: Option<&str>, now: u64) -> String {
    at.and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .map_or_else(|| "never".to_owned(), |t| when(t, now))
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"{class}\">{}</span>", escape(text))
}

/// The signed-in page.
pub(crate) fn status(v: &View) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><div><h1>Residency Gateway status</h1><div class=\"meta\">gateway {} · \
         generated {}</div></div><form method=\"post\" action=\"/admin/status/logout\">\
         <button type=\"submit\">Sign out</button></form></header><main>",
        escape(env!("CARGO_PKG_VERSION")),
        when(v.now, v.now)
    );
    regions(&mut b, v);
    traffic(&mut b, v);
    customers(&mut b, v);
    directory(&mut b, v);
    audit(&mut b, v);
    b.push_str("</main>");
    document("Residency Gateway status", "", &b)
}

fn regions(b: &mut String, v: &View) {
    b.push_str(
        "<section class=\"wide\" id=\"regions\"><h2>Regions and upstreams</h2><table>\
         <tr><th>Region</th><th>Location</th><th>Upstream</th><th>State</th>\
         <th>Last check</th><th>Result</th><th class=\"n\">Ejections</th></tr>",
    );
    for r in &v.regions {
        let n = r.upstreams.len().max(1);
        let region_cell = format!(
            "<td rowspan=\"{n}\"><b>{}</b> {}<br><span class=\"muted\">{} of {} available</span></td>\
             <td rowspan=\"{n}\">{}</td>",
            escape(&r.id),
            escape(if r.display_name == r.id { "" } else { &r.display_name }),
            r.available_upstreams,
            r.upstreams.len(),
            escape(if r.location.is_empty() { "—" } else { &r.location })
        );
        if r.upstreams.is_empty() {
            let _ = write!(
                b,
                "<tr>{region_cell}<td colspan=\"5\">no upstream</td></tr>"
            );
        }
        for (i, u) in r.upstreams.iter().enumerate() {
            let state = if u.available {
                badge("ok", "healthy")
            } else if u.ejected_for_ms > 0 {
                badge(
                    "bad",
                    &format!("ejected {} s", u.ejected_for_ms.div_ceil(1000)),
                )
            } else if u.last_check.is_none() {
                badge("off", "not checked yet")
            } else {
                badge("bad", "unhealthy")
            };
            let (at, result) = match &u.last_check {
                Some(c) => (
                    rfc3339_when(c.at.as_deref(), v.now),
                    badge(if c.ok { "ok" } else { "bad" }, &c.detail),
                ),
                None => ("never".to_owned(), String::new()),
            };
            let _ = write!(
                b,
                "<tr>{}<td>{}</td><td>{state}</td><td>{at}</td><td>{result}</td><td class=\"n\">{}</td></tr>",
                if i == 0 { region_cell.as_str() } else { "" },
                escape(&u.url),
                u.ejections
            );
        }
    }
    b.push_str("</table></section>");
}

fn traffic(b: &mut String, v: &View) {
    let window = match v.window {
        Some(w) => format!("per second over the last {} s", w.as_secs()),
        None => "rates appear once the gateway has counted for a second".to_owned(),
    };
    let _ = write!(
        b,
        "<section id=\"traffic\"><h2>Requests and errors</h2><p class=\"muted\">{}; \
         region <i>none</i>: refused before routing.</p><table><tr><th>Region</th>\
         <th class=\"n\">req/s</th><th class=\"n\">5xx/s</th><th class=\"n\">4xx/s</th>\
         <th class=\"n\">Total</th><th class=\"n\">5xx total</th></tr>",
        escape(&window)
    );
    if v.rates.is_empty() {
        b.push_str("<tr><td colspan=\"6\">no request answered since start</td></tr>");
    }
    for r in &v.rates {
        let errors = if r.server_errors_per_sec > 0.0 {
            badge("bad", &format!("{:.2}", r.server_errors_per_sec))
        } else {
            "0".to_owned()
        };
        let _ = write!(
            b,
            "<tr><td><b>{}</b></td><td class=\"n\">{:.2}</td><td class=\"n\">{errors}</td>\
             <td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&r.region),
            r.requests_per_sec,
            r.client_errors_per_sec,
            r.since_start.total,
            r.since_start.server_errors
        );
    }
    b.push_str("</table></section>");
}

fn customers(b: &mut String, v: &View) {
    b.push_str("<section id=\"customers\"><h2>Customers per region and tier</h2>");
    match &v.customers {
        Err(why) => {
            let _ = write!(b, "<p>{}</p>", badge("bad", why));
        }
        Ok(by_region) => {
            b.push_str("<table><tr><th>Region</th>");
            for t in TIERS {
                let _ = write!(b, "<th class=\"n\">{}</th>", t.as_str());
            }
            b.push_str(
                "<th class=\"n\">Served</th><th class=\"n\">Suspended or provisioning</th></tr>",
            );
            let mut ids: Vec<String> = v.regions.iter().map(|r| r.id.clone()).collect();
            ids.extend(
                by_region
                    .keys()
                    .filter(|k| !ids.contains(k))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            let mut totals = Customers::default();
            for id in ids {
                let c = by_region.get(&id).cloned().unwrap_or_default();
                let _ = write!(b, "<tr><td><b>{}</b></td>", escape(&id));
                for (i, n) in c.by_tier.iter().enumerate() {
                    totals.by_tier[i] += n;
                    let _ = write!(b, "<td class=\"n\">{n}</td>");
                }
                totals.not_served += c.not_served;
                let _ = write!(
                    b,
                    "<td class=\"n\"><b>{}</b></td><td class=\"n\">{}</td></tr>",
                    c.by_tier.iter().sum::<usize>(),
                    c.not_served
                );
            }
            b.push_str("<tr><td><b>all</b></td>");
            for n in totals.by_tier {
                let _ = write!(b, "<td class=\"n\"><b>{n}</b></td>");
            }
            let _ = write!(
                b,
                "<td class=\"n\"><b>{}</b></td><td class=\"n\"><b>{}</b></td></tr></table>",
                totals.by_tier.iter().sum::<usize>(),
                totals.not_served
            );
        }
    }
    b.push_str("</section>");
}

fn directory(b: &mut String, v: &View) {
    let d = &v.directory;
    let state = match (d.loaded, d.stale_for, d.serving) {
        (false, _, _) => badge("bad", "not loaded"),
        (true, None, _) => badge("ok", "fresh"),
        (true, Some(s), true) => badge("warn", &format!("stale for {}", ago(s.as_secs()))),
        (true, Some(s), false) => badge(
            "bad",
            &format!(
                "too stale ({}): unknown customers refused",
                ago(s.as_secs())
            ),
        ),
    };
    let opt = |t: Option<u64>| t.map_or_else(|| "none since start".to_owned(), |t| when(t, v.now));
    let _ = write!(
        b,
        "<section id=\"directory\"><h2>Directory</h2><dl><dt>State</dt><dd>{state}</dd>\
         <dt>Source</dt><dd>{}</dd><dt>Last NOTIFY</dt><dd>{}</dd><dt>Last full load</dt><dd>{}</dd>\
         <dt>Cached</dt><dd>{} tenants, {} API keys</dd></dl></section>",
        escape(d.source),
        if d.source == "postgres" {
            opt(d.last_notify)
        } else {
            "not applicable (file directory)".to_owned()
        },
        if d.source == "postgres" {
            opt(d.last_full_load)
        } else {
            "at start (file directory)".to_owned()
        },
        d.tenants,
        d.api_keys
    );
}

fn audit(b: &mut String, v: &View) {
    b.push_str("<section id=\"audit\"><h2>Last audit</h2>");
    match (&v.audit, v.audit_configured) {
        (Some(a), _) => {
            let class = match a.outcome {
                "clean" => "ok",
                "violations" => "bad",
                _ => "warn",
            };
            let _ = write!(
                b,
                "<dl><dt>Result</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd></dl>\
                 <p><a href=\"/admin/status/audit\">Open the full report</a></p>",
                badge(class, &a.verdict),
                when(a.at, v.now)
            );
        }
        (None, true) => b.push_str(
            "<p>No audit has run on this gateway since it started. \
             <code>GET /admin/v1/audit</code> (or <code>residency audit</code>) runs one.</p>",
        ),
        (None, false) => b.push_str(
            "<p>Audits are not configured on this gateway (no <code>[audit]</code> section).</p>",
        ),
    }
    b.push_str("</section>");
}

/// The sign-in form, with an optional message. Nothing else: it is what anyone without a
/// token sees.
pub(crate) fn login(message: Option<&str>) -> String {
    let msg = message.map_or_else(String::new, |m| format!("<p>{}</p>", badge("warn", m)));
    document(
        "Sign in · Residency Gateway",
        "",
        &format!(
            "<div class=\"login\"><h2>Residency Gateway status</h2>{msg}\
             <form method=\"post\" action=\"/admin/status/login\"><label for=\"token\">Admin token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"muted\">The token is checked once; the browser keeps only a session cookie \
             (HttpOnly, SameSite=Strict, one hour).</p></div>"
        ),
    )
}

/// After a sign-in: a same-origin refresh to the page (so the SameSite=Strict cookie is sent
/// even when the form was posted from elsewhere).
pub(crate) fn signed_in() -> String {
    document(
        "Signed in · Residency Gateway",
        "<meta http-equiv=\"refresh\" content=\"0; url=/admin/status\">",
        "<div class=\"login\"><p>Signed in. <a href=\"/admin/status\">Continue to the status page</a>.</p></div>",
    )
}

/// A short page with a title and one sentence.
pub(crate) fn message(title: &str, text: &str) -> String {
    document(
        title,
        "",
        &format!(
            "<div class=\"login\"><h2>{}</h2><p>{}</p><p><a href=\"/admin/status\">Back</a></p></div>",
            escape(title),
            escape(text)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let v = View {
            now: 1_800_000_000,
            regions: vec![RegionView {
                id: "eu".into(),
                display_name: "<script>x</script>".into(),
                location: "Frankfurt & co".into(),
                available_upstreams: 0,
                upstreams: vec![],
            }],
            rates: vec![],
            window: None,
            customers: Err("down".into()),
            directory: DirectoryHealth {
                source: "file",
                loaded: true,
                stale_for: None,
                serving: true,
                tenants: 0,
                api_keys: 0,
                last_notify: None,
                last_full_load: None,
            },
            audit_configured: false,
            audit: None,
        };
        let page = status(&v);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("Frankfurt &amp; co"));
        assert!(!login(None).contains("eu"));
    }
}
