//! `residency tenants move <id> --to <region> [--dry-run] [--resume] [--abort] [--json]`:
//! starts (or resumes, or aborts) a tenant move through the admin API, then follows its record
//! with one progress bar per table (on stderr, hidden with `--json`) until it is `done`,
//! `rolled_back` or `failed`, and prints a summary. A dry run prints the plan.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use residency_core::wire::admin::List;
use residency_core::wire::moves::{Move, MovePhase, MovePlan, MoveRequest};
use serde_json::Value;

use super::api::{AdminApi, CliError};
use super::render::table;

/// How often the record is read while following a move.
const POLL: Duration = Duration::from_millis(200);

/// What the command does.
pub(super) enum Action {
    /// A new move (or only its plan).
    Start {
        /// Target region.
        to: String,
        /// Plan only.
        dry_run: bool,
    },
    /// Resume the move in flight.
    Resume,
    /// Abort the move in flight.
    Abort,
}

const NO_BODY: Option<&()> = None;

/// Runs the action for tenant `id` (already path-encoded) and follows the move; returns the
/// JSON for `--json` and the text for people.
///
/// # Errors
/// The API's refusal, or [`CliError::Refused`] with the summary when the move does not end
/// `done`.
pub(super) async fn run(
    api: &AdminApi,
    id: &str,
    action: Action,
    json: bool,
) -> Result<(Value, String), CliError> {
    let started = Instant::now();
    let m: Move = match action {
        Action::Start { to, dry_run: true } => {
            let plan: MovePlan = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/tenants/{id}/move"),
                    Some(&MoveRequest { to, dry_run: true }),
                )
                .await?;
            return Ok(plan_text(&plan));
        }
        Action::Start { to, dry_run: false } => {
            api.call(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/move"),
                Some(&MoveRequest { to, dry_run: false }),
            )
            .await?
        }
        Action::Resume | Action::Abort => {
            let moves: List<Move> = api
                .call(
                    Method::GET,
                    &format!("/admin/v1/tenants/{id}/moves"),
                    NO_BODY,
                )
                .await?;
            let Some(current) = moves.items.into_iter().find(|m| !m.phase.is_final()) else {
                return Err(CliError::Refused(format!(
                    "tenant {id} has no move in flight"
                )));
            };
            let verb = if matches!(action, Action::Resume) {
                "resume"
            } else {
                "abort"
            };
            api.call(
                Method::POST,
                &format!("/admin/v1/moves/{}/{verb}", current.move_id),
                NO_BODY,
            )
            .await?
        }
    };
    let end = follow(api, m, json).await?;
    let text = summary(&end, started.elapsed());
    let value = serde_json::to_value(&end).unwrap_or(Value::Null);
    if end.phase == MovePhase::Done {
        Ok((value, text))
    } else {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        Err(CliError::Refused(text.trim_end().to_owned()))
    }
}

/// Polls the record, drawing one bar per table, until the move is `done`, `rolled_back` or
/// `failed`.
async fn follow(api: &AdminApi, mut m: Move, quiet: bool) -> Result<Move, CliError> {
    let bars = MultiProgress::with_draw_target(if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} rows {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let phase = bars.add(ProgressBar::new_spinner());
    let table_bars: Vec<ProgressBar> = m
        .tables
        .iter()
        .map(|t| {
            let b = bars.add(ProgressBar::new(u64::try_from(t.rows_total).unwrap_or(0)));
            b.set_style(style.clone());
            b.set_prefix(t.table.clone());
            b
        })
        .collect();
    loop {
        phase.set_message(format!("{} → {}: {}", m.from, m.to, m.phase.as_str()));
        for (b, t) in table_bars.iter().zip(&m.tables) {
            b.set_position(u64::try_from(t.rows_copied).unwrap_or(0));
            match (&t.checksum_source, &t.checksum_target) {
                (Some(s), Some(g)) if s == g => b.set_message("verified"),
                (Some(_), Some(_)) => b.set_message("CHECKSUMS DIFFER"),
                _ => {}
            }
        }
        if m.phase.is_final() || m.phase == MovePhase::Failed {
            break;
        }
        tokio::time::sleep(POLL).await;
        m = api
            .call(
                Method::GET,
                &format!("/admin/v1/moves/{}", m.move_id),
                NO_BODY,
            )
            .await?;
    }
    for b in &table_bars {
        b.finish();
    }
    phase.finish_and_clear();
    Ok(m)
}

fn summary(m: &Move, took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "move {} of tenant {}: {} → {}: {} after {:.1}s",
        m.move_id,
        m.tenant_id,
        m.from,
        m.to,
        m.phase.as_str(),
        took.as_secs_f64()
    );
    let rows: Vec<Value> = m
        .tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "table": t.table,
                "rows_total": t.rows_total,
                "rows_copied": t.rows_copied,
                "verified": match (&t.checksum_source, &t.checksum_target) {
                    (Some(s), Some(g)) => if s == g { "yes" } else { "DIFFERS" },
                    _ => "-",
                },
            })
        })
        .collect();
    out.push_str(&table(
        &serde_json::json!({ "items": rows }),
        &["table", "rows_total", "rows_copied", "verified"],
    ));
    if let Some(e) = &m.error {
        let _ = writeln!(out, "error: {e}");
    }
    match m.phase {
        MovePhase::Failed => {
            let _ = writeln!(
                out,
                "the tenant stays frozen on {}: `residency tenants move {} --resume` continues, `--abort` rolls back",
                m.from, m.tenant_id
            );
        }
        MovePhase::RolledBack => {
            let _ = writeln!(
                out,
                "rolled back: the tenant is served from {} again",
                m.from
            );
        }
        _ => {}
    }
    out
}

fn plan_text(plan: &MovePlan) -> (Value, String) {
    let value = serde_json::to_value(plan).unwrap_or(Value::Null);
    let mut text = format!(
        "plan: tenant {} from {} to {} ({} rows, about {} bytes)\n",
        plan.tenant_id, plan.from, plan.to, plan.rows_total, plan.estimated_bytes
    );
    text.push_str(&table(
        &serde_json::json!({ "items": value["tables"] }),
        &["table", "rows", "estimated_bytes"],
    ));
    (value, text)
}
