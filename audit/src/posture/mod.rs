//! Isolation posture of one region database, read from the catalog as the auditing role.
//!
//! Checks (each recorded in the region's [`PostureSummary`], each failure a [`Violation`]):
//! - every relation with a `tenant_id` column (tables, partitioned tables, partitions,
//!   materialized views) has RLS enabled and forced, a permissive policy for all commands
//!   covering the app role whose USING and WITH CHECK are exactly the migrations' tenant check
//!   ([`TENANT_POLICY_EXPR`], compared as Postgres prints it back, never by pattern), and no
//!   other permissive policy applying to the app role with any other expression;
//! - the auditing role can read `tenant_id`, sees every row (a `USING (true)` select policy),
//!   and cannot read any other column of customer tables;
//! - the app role exists, is not superuser, not `BYPASSRLS`, owns no relation, is not a member
//!   of a role that owns one, holds no `TRUNCATE` / `REFERENCES`, cannot create objects;
//! - every view is `security_invoker`; every `SECURITY DEFINER` function pins `search_path`.
//!
//! System schemas (`pg_*`, `information_schema`) are out of scope. The app role is taken from
//! the input, never guessed.

mod objects;
#[cfg(test)]
mod tests;

use tokio_postgres::Transaction;

use crate::input::RegionInput;
use crate::pg::{query_err, ScanError};
use crate::report::{PostureSummary, Violation, ViolationKind};

pub(crate) use objects::check_objects;

/// Relations outside the system schemas.
const USER_SCHEMAS: &str = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

/// Collects check results and violations for one region.
pub(crate) struct Posture<'a> {
    region: &'a RegionInput,
    /// The app role's oid, once known to exist.
    app_oid: Option<u32>,
    /// Whether the app role is a superuser (then per-object checks would only repeat that).
    app_superuser: bool,
    summary: PostureSummary,
    violations: Vec<Violation>,
}

impl<'a> Posture<'a> {
    pub(crate) fn new(region: &'a RegionInput) -> Self {
        Self {
            region,
            app_oid: None,
            app_superuser: false,
            summary: PostureSummary::default(),
            violations: Vec::new(),
        }
    }

    fn flag(
        &mut self,
        kind: ViolationKind,
        table: Option<String>,
        role: Option<String>,
        detail: String,
    ) {
        self.violations
            .push(violation(self.region, kind, table, role, detail));
    }

    pub(crate) fn finish(self) -> (PostureSummary, Vec<Violation>) {
        (self.summary, self.violations)
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

/// A relation with a `tenant_id` column and what the catalog says about it.
#[derive(Debug)]
pub(crate) struct TenantTable {
    pub schema: String,
    pub name: String,
    pub(crate) is_partition: bool,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// The auditing role may read `tenant_id`.
    pub readable: bool,
    /// RLS lets the auditing role see every row.
    pub visible: bool,
}

impl TenantTable {
    /// `name` in `public`, `schema.name` elsewhere (the spec's table names are unqualified).
    pub(crate) fn display_name(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// Counted directly: partitions are counted through their parent.
    pub(crate) fn countable(&self) -> bool {
        self.readable && self.visible && !self.is_partition
    }
}

fn qualified(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// The tenant test of the migrations' `tenant_isolation` policy (USING and WITH CHECK), exactly
/// as Postgres prints it back (`pg_get_expr` of `polqual` / `polwithcheck`) with `search_path`
/// pinned to `pg_catalog`, the way the audit reads it.
///
/// Policies are compared with this text, not matched against a pattern: a pattern takes
/// `tenant_id = … OR true` for a tenant check. Postgres normalises the expression when it
/// stores it (casts, parentheses, function names qualified unless found on the path), so any
/// other expression, however close, prints differently. `tests/tests/posture.rs` proves this
/// is what `region-node/migrations` create; a server version that printed it differently
/// would make every table fail the check (fail closed), not pass.
pub const TENANT_POLICY_EXPR: &str = "(tenant_id = ( SELECT (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid AS \"nullif\"))";

/// Reads every customer table and checks RLS and the auditor's reach on each.
pub(crate) async fn read_tenant_tables(
    tx: &Transaction<'_>,
    p: &mut Posture<'_>,
) -> Result<Vec<TenantTable>, ScanError> {
    let app = tx
        .query_opt(
            "SELECT oid, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&p.region.app_role],
        )
        .await
        .map_err(|e| query_err("reading the app role", &e))?;
    if let Some(row) = &app {
        p.app_oid = Some(row.get(0));
        p.app_superuser = row.get(1);
    }
    // `applies(r)`: a policy role entry that covers the app role (PUBLIC is oid 0).
    let sql = format!(
        "WITH me AS (SELECT oid, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user)
         SELECT n.nspname::text, c.relname::text, c.relispartition,
                c.relrowsecurity, c.relforcerowsecurity,
                has_column_privilege(c.oid, a.attnum, 'SELECT') AS readable,
                (me.rolsuper OR me.rolbypassrls OR NOT c.relrowsecurity
                 OR (NOT c.relforcerowsecurity AND pg_has_role(me.oid, c.relowner, 'USAGE'))
                 OR (EXISTS (SELECT 1 FROM pg_policy p
                             WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                               AND pg_get_expr(p.polqual, p.polrelid) = 'true'
                               AND EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                           WHERE r = 0 OR pg_has_role(me.oid, r, 'USAGE')))
                     AND NOT EXISTS (SELECT 1 FROM pg_policy p
                             WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
                               AND coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') <> 'true'
                               AND EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                           WHERE r = 0 OR pg_has_role(me.oid, r, 'USAGE'))))) AS visible,
                EXISTS (SELECT 1 FROM pg_policy p
                        WHERE p.polrelid = c.oid AND p.polcmd = '*' AND p.polpermissive
                          AND pg_get_expr(p.polqual, p.polrelid) = $2
                          AND pg_get_expr(p.polwithcheck, p.polrelid) = $2
                          AND EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                      WHERE r = 0 OR pg_has_role($1::oid, r, 'MEMBER'))) AS tenant_policy,
                ARRAY(SELECT p.polname::text FROM pg_policy p
                      WHERE p.polrelid = c.oid AND p.polpermissive
                        AND EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                    WHERE r = 0 OR pg_has_role($1::oid, r, 'MEMBER'))
                        AND ((p.polcmd IN ('r', 'w', 'd', '*')
                              AND pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM $2)
                          OR (p.polcmd IN ('a', 'w', '*')
                              AND coalesce(pg_get_expr(p.polwithcheck, p.polrelid),
                                           pg_get_expr(p.polqual, p.polrelid)) IS DISTINCT FROM $2))
                      ORDER BY 1) AS bypass_policies,
                ARRAY(SELECT format('%s (%s%s%s): USING %s, WITH CHECK %s', p.polname,
                                    CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                                    CASE p.polcmd WHEN 'r' THEN ', SELECT' WHEN 'a' THEN ', INSERT'
                                                  WHEN 'w' THEN ', UPDATE' WHEN 'd' THEN ', DELETE'
                                                  ELSE '' END,
                                    CASE WHEN 0 = ANY(p.polroles) THEN ''
                                         ELSE ', TO ' || array_to_string(ARRAY(
                                             SELECT pg_get_userbyid(r) FROM unnest(p.polroles) r
                                             ORDER BY 1), ', ') END,
                                    coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),
                                    coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'))
                      FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies,
                ARRAY(SELECT x.attname::text FROM pg_attribute x
                      WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped
                        AND x.attname <> 'tenant_id'
                        AND has_column_privilege(c.oid, x.attnum, 'SELECT')
                      ORDER BY x.attnum) AS readable_columns
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
                            AND a.attnum > 0 AND NOT a.attisdropped
         CROSS JOIN me
         WHERE c.relkind IN ('r', 'p', 'm') AND {USER_SCHEMAS}
         ORDER BY 1, 2"
    );
    // A superuser is a member of every role, so every policy would "apply" to it; that app
    // role is reported once as a superuser instead.
    let app_oid = p.app_oid.filter(|_| !p.app_superuser);
    // Policy expressions are printed with only `pg_catalog` on the path, so a function or type
    // from any other schema (one shadowing `current_setting`, say) prints qualified and can
    // never print as the canonical text; the caller's path is restored afterwards.
    let search_path: String = tx
        .query_one(
            "SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', true)",
            &[],
        )
        .await
        .map_err(|e| query_err("pinning search_path", &e))?
        .get(0);
    let rows = tx
        .query(&sql, &[&app_oid, &TENANT_POLICY_EXPR])
        .await
        .map_err(|e| query_err("reading customer tables", &e));
    tx.execute(
        "SELECT set_config('search_path', $1, true)",
        &[&search_path],
    )
    .await
    .map_err(|e| query_err("restoring search_path", &e))?;
    let rows = rows?;
    let mut tables = Vec::with_capacity(rows.len());
    let (mut not_enabled, mut not_forced, mut no_policy, mut bypass) = (0, 0, 0, 0);
    let (mut unreadable, mut blind, mut overprivileged) = (0, 0, 0);
    let auditor: String = tx
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| query_err("reading the current role", &e))?
        .get(0);
    for row in &rows {
        let t = TenantTable {
            schema: row.get(0),
            name: row.get(1),
            is_partition: row.get(2),
            rls_enabled: row.get(3),
            rls_forced: row.get(4),
            readable: row.get(5),
            visible: row.get(6),
        };
        let tenant_policy: bool = row.get(7);
        let bypass_policies: Vec<String> = row.get(8);
        let policies: Vec<String> = row.get(9);
        let readable_columns: Vec<String> = row.get(10);
        let name = t.display_name();
        let table = || Some(name.clone());
        if !t.rls_enabled {
            not_enabled += 1;
            p.flag(
                ViolationKind::RlsDisabled,
                table(),
                None,
                format!("row-level security is disabled on {name}: every role with SELECT sees every tenant's rows"),
            );
        } else if !t.rls_forced {
            not_forced += 1;
            p.flag(
                ViolationKind::RlsNotForced,
                table(),
                None,
                format!("row-level security is not forced on {name}: its owner bypasses the tenant policy"),
            );
        }
        if !tenant_policy {
            no_policy += 1;
            p.flag(
                ViolationKind::NoTenantPolicy,
                table(),
                None,
                format!(
                    "{name} has no permissive policy for all commands, covering the app role, whose \
                     USING and WITH CHECK are exactly `{TENANT_POLICY_EXPR}`; its policies: {}",
                    if policies.is_empty() {
                        "none".to_owned()
                    } else {
                        policies.join("; ")
                    }
                ),
            );
        }
        if !bypass_policies.is_empty() {
            bypass += 1;
            p.flag(
                ViolationKind::PermissivePolicyBypass,
                table(),
                Some(p.region.app_role.clone()),
                format!(
                    "permissive policy {} on {name} applies to the app role with an expression \
                     other than the tenant check `{TENANT_POLICY_EXPR}`, so it widens what the app role \
                     may read or write",
                    bypass_policies.join(", ")
                ),
            );
        }
        if !t.readable {
            unreadable += 1;
            p.flag(
                ViolationKind::UnauditableTable,
                table(),
                Some(auditor.clone()),
                format!("the auditing role {auditor} cannot read {name}.tenant_id, so its rows cannot be counted"),
            );
        } else if !t.visible {
            blind += 1;
            p.flag(
                ViolationKind::AuditorBlind,
                table(),
                Some(auditor.clone()),
                format!(
                    "row-level security hides rows of {name} from the auditing role {auditor} \
                     (no `USING (true)` select policy for it), so its counts would be incomplete"
                ),
            );
        }
        if !readable_columns.is_empty() {
            overprivileged += 1;
            p.flag(
                ViolationKind::AuditorOverprivileged,
                table(),
                Some(auditor.clone()),
                format!(
                    "the auditing role {auditor} can read customer columns of {name}: {}",
                    readable_columns.join(", ")
                ),
            );
        }
        tables.push(t);
    }
    let n = tables.len();
    let s = &mut p.summary;
    s.record(
        "rls_enabled",
        "row-level security enabled on every table with tenant_id",
        n,
        not_enabled,
    );
    s.record(
        "rls_forced",
        "row-level security forced on every table with tenant_id",
        n - not_enabled,
        not_forced,
    );
    s.record(
        "tenant_policy",
        "a policy for all commands whose USING and WITH CHECK are exactly the tenant check",
        n,
        no_policy,
    );
    s.record(
        "no_bypass_policy",
        "no other permissive policy applies to the app role",
        n,
        bypass,
    );
    s.record(
        "auditor_can_count",
        "the auditing role can read tenant_id and sees every row",
        n,
        unreadable + blind,
    );
    s.record(
        "auditor_least_privilege",
        "the auditing role can read no customer column but tenant_id",
        n,
        overprivileged,
    );
    Ok(tables)
}

/// Checks the application role's attributes, ownership and privileges.
pub(crate) async fn check_app_role(
    tx: &Transaction<'_>,
    p: &mut Posture<'_>,
) -> Result<(), ScanError> {
    let app = p.region.app_role.clone();
    let Some(app_oid) = p.app_oid else {
        p.flag(
            ViolationKind::AppRoleMissing,
            None,
            Some(app.clone()),
            format!("the app role {app} does not exist in this database, so its privileges cannot be checked"),
        );
        p.summary
            .record("app_role_exists", "the configured app role exists", 1, 1);
        return Ok(());
    };
    p.summary
        .record("app_role_exists", "the configured app role exists", 1, 0);
    let row = tx
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE oid = $1",
            &[&app_oid],
        )
        .await
        .map_err(|e| query_err("reading the app role", &e))?;
    let (superuser, bypassrls): (bool, bool) = (row.get(0), row.get(1));
    if superuser {
        p.flag(
            ViolationKind::AppRoleSuperuser,
            None,
            Some(app.clone()),
            format!("the app role {app} is a superuser: row-level security does not apply to it"),
        );
    }
    p.summary.record(
        "app_role_not_superuser",
        "the app role is not a superuser",
        1,
        usize::from(superuser),
    );
    if bypassrls {
        p.flag(
            ViolationKind::AppRoleBypassrls,
            None,
            Some(app.clone()),
            format!("the app role {app} has BYPASSRLS: row-level security does not apply to it"),
        );
    }
    p.summary.record(
        "app_role_not_bypassrls",
        "the app role does not have BYPASSRLS",
        1,
        usize::from(bypassrls),
    );
    if p.app_superuser {
        // Every per-object check below would fail only because of the superuser flag.
        return Ok(());
    }

    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text,
                c.relowner = $1::oid AS owns,
                pg_has_role($1::oid, c.relowner, 'MEMBER') AS member,
                CASE WHEN c.relkind IN ('r', 'p', 'f')
                     THEN has_table_privilege($1::oid, c.oid, 'TRUNCATE') ELSE false END,
                CASE WHEN c.relkind IN ('r', 'p', 'f')
                     THEN has_any_column_privilege($1::oid, c.oid, 'REFERENCES') ELSE false END
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMAS}
         ORDER BY 1, 2"
    );
    let rows = tx
        .query(&sql, &[&app_oid])
        .await
        .map_err(|e| query_err("reading relation ownership and privileges", &e))?;
    let (mut owned, mut member, mut truncate, mut references, mut tables) = (0, 0, 0, 0, 0);
    for row in &rows {
        let (schema, name, kind, owner): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let (owns, is_member, t, r): (bool, bool, bool, bool) =
            (row.get(4), row.get(5), row.get(6), row.get(7));
        let q = qualified(&schema, &name);
        let what = relkind_name(&kind);
        if matches!(kind.as_str(), "r" | "p" | "f") {
            tables += 1;
        }
        if owns {
            owned += 1;
            p.flag(
                ViolationKind::AppRoleOwnsTable,
                Some(q.clone()),
                Some(app.clone()),
                format!("the app role {app} owns {what} {q}: an owner can disable row-level security on it"),
            );
        } else if is_member {
            member += 1;
            p.flag(
                ViolationKind::AppRoleMemberOfOwner,
                Some(q.clone()),
                Some(app.clone()),
                format!("the app role {app} is a member of {owner}, which owns {what} {q}"),
            );
        }
        // An owner holds every privilege implicitly; its ownership is the finding.
        for (granted, privilege) in [(t, "TRUNCATE"), (r, "REFERENCES")] {
            if granted && !owns {
                if privilege == "TRUNCATE" {
                    truncate += 1;
                } else {
                    references += 1;
                }
                p.flag(
                    ViolationKind::AppRolePrivilege,
                    Some(q.clone()),
                    Some(app.clone()),
                    format!("the app role {app} has {privilege} on {q}"),
                );
            }
        }
    }
    let s = &mut p.summary;
    s.record(
        "app_role_owns_nothing",
        "the app role owns no relation",
        rows.len(),
        owned,
    );
    s.record(
        "app_role_not_owner_member",
        "the app role is not a member of a relation's owner",
        rows.len(),
        member,
    );
    s.record(
        "app_role_no_truncate",
        "the app role has no TRUNCATE on any table",
        tables,
        truncate,
    );
    s.record(
        "app_role_no_references",
        "the app role has no REFERENCES on any table",
        tables,
        references,
    );

    let sql = format!(
        "SELECT 'schema ' || n.nspname::text, has_schema_privilege($1::oid, n.oid, 'CREATE')
         FROM pg_namespace n WHERE {USER_SCHEMAS}
         UNION ALL
         SELECT 'database ' || current_database(), has_database_privilege($1::oid, current_database(), 'CREATE')
         ORDER BY 1"
    );
    let rows = tx
        .query(&sql, &[&app_oid])
        .await
        .map_err(|e| query_err("reading create privileges", &e))?;
    let mut can_create = 0;
    for row in &rows {
        let (object, granted): (String, bool) = (row.get(0), row.get(1));
        if granted {
            can_create += 1;
            p.flag(
                ViolationKind::AppRoleCanCreate,
                None,
                Some(app.clone()),
                format!("the app role {app} may create objects in {object}"),
            );
        }
    }
    p.summary.record(
        "app_role_cannot_create",
        "the app role cannot create schemas or objects",
        rows.len(),
        can_create,
    );
    Ok(())
}

fn relkind_name(kind: &str) -> &'static str {
    match kind {
        "r" => "table",
        "p" => "partitioned table",
        "v" => "view",
        "m" => "materialized view",
        "S" => "sequence",
        "f" => "foreign table",
        _ => "relation",
    }
}
