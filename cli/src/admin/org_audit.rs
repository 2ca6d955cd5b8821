//! `residency orgs audit <org>`: an organization's audit events across every region
//! (`GET /admin/v1/organizations/{id}/audit-events`), newest first, as a table; regions that
//! did not answer are named under it (the answer is partial), and `--json` prints the API's
//! answer.

use clap::Args;
use http::Method;
use residency_core::wire::org_audit::OrgAuditPage;

use super::api::{AdminApi, CliError};
use super::{query, render, seg, shown, Output, NO_BODY};

const COLUMNS: &[&str] = &["at", "region", "tenant_id", "actor", "action", "target"];

/// The filters of `residency orgs audit`.
#[derive(Args, Debug)]
pub(super) struct AuditQuery {
    /// Organization id.
    org: String,
    /// Only events of this action (e.g. workflow.create).
    #[arg(long)]
    action: Option<String>,
    /// Only events of this actor (subject).
    #[arg(long)]
    actor: Option<String>,
    /// Only events of this customer (one of the organization's).
    #[arg(long = "tenant")]
    tenant: Option<String>,
    /// Only events at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Page size (1-500, default 50).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue from a previous page's next cursor.
    #[arg(long)]
    cursor: Option<String>,
}

/// Runs `residency orgs audit`.
pub(super) async fn run(api: &AdminApi, q: &AuditQuery) -> Result<Output, CliError> {
    let params = query(&[
        ("action", q.action.clone()),
        ("actor", q.actor.clone()),
        ("tenant_id", q.tenant.clone()),
        ("since", q.since.clone()),
        ("until", q.until.clone()),
        ("limit", q.limit.map(|l| l.to_string())),
        ("cursor", q.cursor.clone()),
    ]);
    let page: OrgAuditPage = api
        .call(
            Method::GET,
            &format!(
                "/admin/v1/organizations/{}/audit-events{params}",
                seg(&q.org)
            ),
            NO_BODY,
        )
        .await?;
    Ok(Output::Text(shown(&page), text(&page)))
}

fn text(page: &OrgAuditPage) -> String {
    let mut rows = shown(page);
    if let Some(items) = rows["items"].as_array_mut() {
        for i in items {
            let target = format!(
                "{} {}",
                i["target_type"].as_str().unwrap_or_default(),
                i["target_id"].as_str().unwrap_or_default()
            );
            i["target"] = target.into();
        }
    }
    let mut out = render::table(&rows, COLUMNS);
    if !page.incomplete_regions.is_empty() {
        out.push_str(&format!(
            "incomplete: no answer from {} (their events are missing)\n",
            page.incomplete_regions.join(", ")
        ));
    }
    out
}
