//! Posture checks on database objects other than customer tables: views must be
//! `security_invoker`, `SECURITY DEFINER` functions must pin `search_path`.

use tokio_postgres::Transaction;

use super::{qualified, Posture, USER_SCHEMAS};
use crate::pg::{query_err, ScanError};
use crate::report::ViolationKind;

/// Checks views and `SECURITY DEFINER` functions.
pub(crate) async fn check_objects(
    tx: &Transaction<'_>,
    p: &mut Posture<'_>,
) -> Result<(), ScanError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text,
                coalesce(c.reloptions, '{{}}')::text[]
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND {USER_SCHEMAS}
         ORDER BY 1, 2"
    );
    let rows = tx
        .query(&sql, &[])
        .await
        .map_err(|e| query_err("reading views", &e))?;
    let mut bad = 0;
    for row in &rows {
        let (schema, name, owner, options): (String, String, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if !is_security_invoker(&options) {
            bad += 1;
            let q = qualified(&schema, &name);
            p.flag(
                ViolationKind::ViewNotSecurityInvoker,
                Some(q.clone()),
                Some(owner.clone()),
                format!("view {q} is not security_invoker: it reads its tables with the rights of its owner {owner}, bypassing row-level security"),
            );
        }
    }
    p.summary.record(
        "views_security_invoker",
        "every view runs with the caller's rights (security_invoker)",
        rows.len(),
        bad,
    );

    let sql = format!(
        "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid),
                pg_get_userbyid(p.proowner)::text, coalesce(p.proconfig, '{{}}')::text[]
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prosecdef AND {USER_SCHEMAS}
         ORDER BY 1, 2, 3"
    );
    let rows = tx
        .query(&sql, &[])
        .await
        .map_err(|e| query_err("reading security definer functions", &e))?;
    let mut bad = 0;
    for row in &rows {
        let (schema, name, args, owner, config): (String, String, String, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if !config.iter().any(|c| c.starts_with("search_path=")) {
            bad += 1;
            let q = format!("{}({args})", qualified(&schema, &name));
            p.flag(
                ViolationKind::DefinerWithoutSearchPath,
                Some(q.clone()),
                Some(owner.clone()),
                format!("SECURITY DEFINER function {q} runs as {owner} without a pinned search_path: objects on the caller's path can hijack it"),
            );
        }
    }
    p.summary.record(
        "definer_search_path",
        "every SECURITY DEFINER function pins search_path",
        rows.len(),
        bad,
    );
    Ok(())
}

/// Whether view options turn `security_invoker` on (Postgres accepts several spellings).
pub(super) fn is_security_invoker(options: &[String]) -> bool {
    options.iter().any(|o| {
        o.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("security_invoker")
                && matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1")
        })
    })
}
