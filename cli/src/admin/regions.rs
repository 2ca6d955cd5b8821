//! `residency regions`: the gateway's configured regions with each upstream's health
//! (`GET /admin/v1/regions`), one table row per upstream, or the API's JSON with `--json`.

use std::process::ExitCode;

use clap::Args;
use http::Method;
use residency_core::wire::admin::{List, Region};
use serde_json::{json, Value};

use super::api::{AdminApi, CliError};
use super::{finish, render, shown, AdminOpts, Output, NO_BODY};

const REGION_COLUMNS: &[&str] = &[
    "region",
    "location",
    "upstream",
    "available",
    "healthy",
    "last_check",
    "ejections",
];

/// `residency regions --help` examples.
pub(crate) const REGIONS_EXAMPLES: &str = "\
Examples:
  residency regions
  residency regions --json | jq '.items[] | {id, available_upstreams}'";

/// `residency regions`
#[derive(Args, Debug)]
pub(crate) struct RegionsArgs {
    #[command(flatten)]
    opts: AdminOpts,
}

/// Runs `residency regions`.
pub(crate) async fn regions(args: RegionsArgs) -> ExitCode {
    finish(run(&args.opts).await, &args.opts)
}

async fn run(opts: &AdminOpts) -> Result<Output, CliError> {
    let api = AdminApi::new(opts)?;
    let list: List<Region> = api.call(Method::GET, "/admin/v1/regions", NO_BODY).await?;
    let text = render::table(&rows(&list), REGION_COLUMNS);
    Ok(Output::Text(shown(&list), text))
}

/// One row per upstream (a region without upstreams gets one row saying so).
fn rows(list: &List<Region>) -> Value {
    let mut items = Vec::new();
    for r in &list.items {
        let region = format!(
            "{} ({}/{} up)",
            r.id,
            r.available_upstreams,
            r.upstreams.len()
        );
        let location = format!("{}, {}", r.display_name, r.location);
        if r.upstreams.is_empty() {
            items.push(json!({ "region": region, "location": location, "upstream": "(none)" }));
        }
        for u in &r.upstreams {
            let last_check = u.last_check.as_ref().map(|c| {
                format!(
                    "{} {} at {}",
                    if c.ok { "ok" } else { "failed" },
                    c.detail,
                    c.at.as_deref().unwrap_or("?")
                )
            });
            let available = if u.available {
                "yes".to_owned()
            } else if u.ejected_for_ms > 0 {
                format!("ejected {}ms", u.ejected_for_ms)
            } else {
                "no".to_owned()
            };
            items.push(json!({
                "region": region,
                "location": location,
                "upstream": u.url,
                "available": available,
                "healthy": if u.healthy { "yes" } else { "no" },
                "last_check": last_check,
                "ejections": u.ejections,
            }));
        }
    }
    json!({ "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use residency_core::wire::admin::{HealthCheck, Upstream};

    #[test]
    fn one_row_per_upstream_with_its_health() {
        let list = List {
            items: vec![
                Region {
                    id: "eu".into(),
                    display_name: "Europe".into(),
                    location: "Frankfurt".into(),
                    available_upstreams: 1,
                    upstreams: vec![
                        Upstream {
                            url: "https://eu-1:8541".into(),
                            available: true,
                            healthy: true,
                            ejected_for_ms: 0,
                            ejections: 0,
                            last_check: Some(HealthCheck {
                                at: Some("2026-01-01T00:00:00+00:00".into()),
                                ok: true,
                                detail: "200".into(),
                            }),
                        },
                        Upstream {
                            url: "https://eu-2:8541".into(),
                            available: false,
                            healthy: true,
                            ejected_for_ms: 1500,
                            ejections: 3,
                            last_check: None,
                        },
                    ],
                },
                Region {
                    id: "us".into(),
                    display_name: "United States".into(),
                    location: "Virginia".into(),
                    available_upstreams: 0,
                    upstreams: vec![],
                },
            ],
        };
        let text = render::table(&rows(&list), REGION_COLUMNS);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("REGION"), "{text}");
        assert!(
            lines[1].contains("eu (1/2 up)")
                && lines[1].contains("https://eu-1:8541")
                && lines[1].contains("ok 200 at 2026-01-01"),
            "{text}"
        );
        assert!(lines[2].contains("ejected 1500ms"), "{text}");
        assert!(
            lines[3].contains("us (0/0 up)") && lines[3].contains("(none)"),
            "{text}"
        );
    }
}
