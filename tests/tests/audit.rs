//! The placement and posture audit against real region databases: a clean setup, then each
//! fault seeded (as the superuser) and expected to be found and named exactly, with nothing
//! else reported.

use integration_tests::{admin_url, connect, AuditFixture};
use residency_audit::{no_progress, run_audit, Outcome, RegionStatus, Report, ViolationKind as K};
use residency_core::{RegionId, TenantId};
use residency_core::{TenantEntry, TenantStatus, Tier};
use uuid::Uuid;

type Found = (K, String, Option<String>, Option<String>, Option<String>);

fn found(r: &Report) -> Vec<Found> {
    r.violations
        .iter()
        .map(|v| {
            (
                v.kind,
                v.region.to_string(),
                v.tenant_id.clone(),
                v.table.clone(),
                v.role.clone(),
            )
        })
        .collect()
}

fn expect(
    kind: K,
    region: &str,
    tenant: Option<Uuid>,
    table: Option<&str>,
    role: Option<&str>,
) -> Found {
    (
        kind,
        region.to_owned(),
        tenant.map(|t| t.to_string()),
        table.map(str::to_owned),
        role.map(str::to_owned),
    )
}

async fn audit(fx: &AuditFixture) -> Report {
    run_audit(&fx.input(), &no_progress).await
}

/// The superuser that seeds faults and therefore owns the views and functions it creates.
fn admin_user() -> String {
    url::Url::parse(&admin_url()).unwrap().username().to_owned()
}

/// Asserts the report holds exactly `expected` and exits 1.
fn assert_exactly(report: &Report, expected: &[Found]) {
    assert_eq!(found(report), expected, "{:#?}", report.violations);
    assert!(!report.clean);
    assert_eq!(report.outcome().exit_code(), 1);
    for v in &report.violations {
        assert!(!v.detail.is_empty());
    }
}

#[tokio::test]
async fn clean_setup_has_no_violations_and_counts_every_row() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let report = audit(&fx).await;
    assert_eq!(found(&report), vec![], "{:#?}", report.violations);
    assert!(report.clean);
    assert_eq!(report.outcome(), Outcome::Clean);
    assert_eq!(report.version, 1);

    for (region, db) in &fx.dbs {
        let r = report
            .regions
            .iter()
            .find(|r| r.id.as_str() == region)
            .unwrap();
        assert_eq!(r.status, RegionStatus::Audited);
        assert_eq!(r.tables_scanned, 10, "{:?}", r.tables);
        assert_eq!(r.database.role, db.roles[2], "audited as the auditor role");
        assert_eq!(r.app_role, db.roles[1]);
        assert_eq!(r.posture.failed, 0, "{:?}", r.posture);
        assert!(r.posture.passed >= 14, "{:?}", r.posture);
        assert!(r.database.server_version.is_some());
        // The counts agree with what the superuser sees.
        let admin = connect(&db.admin_db_url).await;
        let mut total = 0u64;
        for t in &r.tables {
            let n: i64 = admin
                .query_one(&format!("SELECT count(*) FROM \"{}\"", t.table), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(t.rows, u64::try_from(n).unwrap(), "{}", t.table);
            assert!(t.counted && t.rls_enabled && t.rls_forced, "{t:?}");
            total += t.rows;
        }
        assert_eq!(r.rows_total, total);
        assert_eq!(r.tenants.len(), 1);
        let t = &r.tenants[0];
        assert_eq!(t.tenant_id, fx.tenant(region).to_string());
        assert!(t.at_home);
        assert_eq!(
            t.home_region.as_ref().map(RegionId::as_str),
            Some(region.as_str())
        );
        for table in [
            "tenants",
            "roles",
            "members",
            "workflows",
            "executions",
            "configurations",
            "audit_events",
        ] {
            assert!(
                t.tables.get(table).copied().unwrap_or(0) > 0,
                "{table}: {t:?}"
            );
        }
    }
}

#[tokio::test]
async fn tenant_row_in_the_wrong_region_is_misplaced() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let us_tenant = fx.tenant("us");
    fx.admin_exec(
        "eu",
        &format!(
            "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id) \
             VALUES ('{us_tenant}', gen_random_uuid(), 'x', 'leak', 'workflow', 'w')"
        ),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::MisplacedRows,
            "eu",
            Some(us_tenant),
            Some("audit_events"),
            None,
        )],
    );
    assert!(report.violations[0].detail.contains("home region is us"));
    let eu = &report.regions[1];
    let misplaced = eu
        .tenants
        .iter()
        .find(|t| t.tenant_id == us_tenant.to_string())
        .unwrap();
    assert!(!misplaced.at_home);
    assert_eq!(misplaced.rows, 1);
}

#[tokio::test]
async fn rows_of_an_unknown_tenant_are_orphans() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let stranger = Uuid::new_v4();
    fx.admin_exec(
        "us",
        &format!(
            "INSERT INTO tenants (tenant_id, name, region) VALUES ('{stranger}', 'ghost', 'us');
             INSERT INTO configurations (tenant_id, key, value, updated_by) VALUES ('{stranger}', 'k', '1', 'x');"
        ),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[
            expect(
                K::OrphanRows,
                "us",
                Some(stranger),
                Some("configurations"),
                None,
            ),
            expect(K::OrphanRows, "us", Some(stranger), Some("tenants"), None),
        ],
    );
}

#[tokio::test]
async fn active_tenant_without_home_record_is_missing() {
    let mut fx = AuditFixture::create(&["us", "eu"]).await;
    let (missing, provisioning) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, status) in [
        (missing, TenantStatus::Active),
        (provisioning, TenantStatus::Provisioning),
    ] {
        fx.tenants.push(TenantEntry {
            id: TenantId::from_uuid(id),
            name: "late".into(),
            region: RegionId::new("eu").unwrap(),
            tier: Tier::Starter,
            status,
            rate_limit_per_min: None,
        });
    }
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::MissingHomeRecord,
            "eu",
            Some(missing),
            Some("tenants"),
            None,
        )],
    );
}

#[tokio::test]
async fn rls_disabled_on_a_table_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    fx.admin_exec("eu", "ALTER TABLE workflows DISABLE ROW LEVEL SECURITY")
        .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(K::RlsDisabled, "eu", None, Some("workflows"), None)],
    );
    let check = report.regions[1]
        .posture
        .checks
        .iter()
        .find(|c| c.name == "rls_enabled")
        .unwrap();
    assert_eq!((check.checked, check.failures), (10, 1));
}

#[tokio::test]
async fn rls_not_forced_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    fx.admin_exec("eu", "ALTER TABLE connections NO FORCE ROW LEVEL SECURITY")
        .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::RlsNotForced,
            "eu",
            None,
            Some("connections"),
            None,
        )],
    );
}

#[tokio::test]
async fn app_role_with_bypassrls_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let app = fx.db("us").roles[1].clone();
    fx.admin_exec("us", &format!("ALTER ROLE \"{app}\" BYPASSRLS"))
        .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(K::AppRoleBypassrls, "us", None, None, Some(&app))],
    );
}

#[tokio::test]
async fn app_role_as_superuser_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let app = fx.db("eu").roles[1].clone();
    fx.admin_exec("eu", &format!("ALTER ROLE \"{app}\" SUPERUSER"))
        .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(K::AppRoleSuperuser, "eu", None, None, Some(&app))],
    );
}

#[tokio::test]
async fn app_role_owning_a_table_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let app = fx.db("eu").roles[1].clone();
    fx.admin_exec(
        "eu",
        &format!("CREATE TABLE scratch (x int); ALTER TABLE scratch OWNER TO \"{app}\";"),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::AppRoleOwnsTable,
            "eu",
            None,
            Some("scratch"),
            Some(&app),
        )],
    );
}

#[tokio::test]
async fn app_role_member_of_the_owner_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let [owner, app, _] = fx.db("eu").roles.clone();
    fx.admin_exec("eu", &format!("GRANT \"{owner}\" TO \"{app}\""))
        .await;
    let report = audit(&fx).await;
    assert!(!report.violations.is_empty());
    assert!(
        report.violations.iter().all(|v| v.region.as_str() == "eu"
            && (v.kind == K::AppRoleMemberOfOwner
                    // As a member of the owner, the app role also gets the job-claim policy
                    // that only the owner's `claim_jobs` should use (0004_jobs.sql).
                    || (v.kind == K::PermissivePolicyBypass
                        && v.table.as_deref() == Some("jobs")))),
        "{:#?}",
        report.violations
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.kind == K::PermissivePolicyBypass && v.table.as_deref() == Some("jobs")),
        "{:#?}",
        report.violations
    );
    assert!(report
        .violations
        .iter()
        .any(|v| v.table.as_deref() == Some("tenants") && v.role.as_deref() == Some(app.as_str())));
}

#[tokio::test]
async fn truncate_granted_to_the_app_role_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let app = fx.db("eu").roles[1].clone();
    fx.admin_exec("eu", &format!("GRANT TRUNCATE ON members TO \"{app}\""))
        .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::AppRolePrivilege,
            "eu",
            None,
            Some("members"),
            Some(&app),
        )],
    );
    assert!(report.violations[0].detail.contains("TRUNCATE"));
}

#[tokio::test]
async fn view_without_security_invoker_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    fx.admin_exec(
        "us",
        "CREATE VIEW member_emails AS SELECT tenant_id, email FROM members;
         CREATE VIEW member_emails_ok WITH (security_invoker = true) AS SELECT tenant_id, email FROM members;",
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::ViewNotSecurityInvoker,
            "us",
            None,
            Some("member_emails"),
            Some(&admin_user()),
        )],
    );
}

#[tokio::test]
async fn security_definer_function_without_search_path_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    fx.admin_exec(
        "eu",
        "CREATE FUNCTION count_members(t uuid) RETURNS bigint LANGUAGE sql SECURITY DEFINER
             AS 'SELECT count(*) FROM members WHERE tenant_id = t';
         CREATE FUNCTION count_members_ok() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             SET search_path = pg_catalog, public AS 'SELECT count(*) FROM public.members';",
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::DefinerWithoutSearchPath,
            "eu",
            None,
            Some("count_members(t uuid)"),
            Some(&admin_user()),
        )],
    );
}

#[tokio::test]
async fn new_customer_table_is_discovered_from_the_catalog() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let auditor = fx.db("eu").roles[2].clone();
    let eu_tenant = fx.tenant("eu");
    fx.admin_exec(
        "eu",
        &format!(
            "CREATE TABLE invoices (tenant_id uuid NOT NULL, amount int);
             GRANT SELECT (tenant_id) ON invoices TO \"{auditor}\";
             INSERT INTO invoices SELECT '{eu_tenant}', g FROM generate_series(1, 5) g;"
        ),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[
            expect(K::RlsDisabled, "eu", None, Some("invoices"), None),
            expect(K::NoTenantPolicy, "eu", None, Some("invoices"), None),
        ],
    );
    let eu = &report.regions[1];
    assert_eq!(eu.tables_scanned, 11);
    assert_eq!(eu.tenants[0].tables["invoices"], 5);
}

#[tokio::test]
async fn permissive_policy_without_tenant_check_is_found() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let app = fx.db("us").roles[1].clone();
    fx.admin_exec(
        "us",
        "CREATE POLICY open_read ON members FOR SELECT USING (true)",
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::PermissivePolicyBypass,
            "us",
            None,
            Some("members"),
            Some(&app),
        )],
    );
    assert!(report.violations[0].detail.contains("open_read"));
}

#[tokio::test]
async fn tables_the_auditor_cannot_count_are_reported() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let auditor = fx.db("eu").roles[2].clone();
    fx.admin_exec(
        "eu",
        &format!(
            "DROP POLICY auditor_placement ON workflows;
             REVOKE SELECT (tenant_id) ON executions FROM \"{auditor}\";"
        ),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[
            expect(
                K::UnauditableTable,
                "eu",
                None,
                Some("executions"),
                Some(&auditor),
            ),
            expect(
                K::AuditorBlind,
                "eu",
                None,
                Some("workflows"),
                Some(&auditor),
            ),
        ],
    );
    let eu = &report.regions[1];
    assert_eq!(eu.tables_scanned, 8);
    let wf = eu.tables.iter().find(|t| t.table == "workflows").unwrap();
    assert!(!wf.counted);
}

#[tokio::test]
async fn auditing_as_a_role_that_reads_customer_columns_is_reported() {
    let fx = AuditFixture::create(&["us"]).await;
    let auditor = fx.db("us").roles[2].clone();
    fx.admin_exec(
        "us",
        &format!("GRANT SELECT ON connections TO \"{auditor}\""),
    )
    .await;
    let report = audit(&fx).await;
    assert_exactly(
        &report,
        &[expect(
            K::AuditorOverprivileged,
            "us",
            None,
            Some("connections"),
            Some(&auditor),
        )],
    );
    assert!(report.violations[0].detail.contains("credentials"));
}

#[tokio::test]
async fn unreachable_region_makes_the_run_incomplete() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let mut input = fx.input();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    input.regions[1].auditor_url = format!("postgres://auditor:pw@127.0.0.1:{port}/nowhere");
    let report = run_audit(&input, &no_progress).await;
    assert!(!report.clean);
    assert_eq!(report.outcome().exit_code(), 2);
    let Outcome::Incomplete(failed) = report.outcome() else {
        panic!("{:?}", report.outcome())
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.as_str(), "eu");
    assert!(
        failed[0].1.contains(&format!("127.0.0.1:{port}")),
        "{}",
        failed[0].1
    );
    assert_eq!(report.regions[1].status, RegionStatus::Unreachable);
    assert_eq!(report.regions[0].status, RegionStatus::Audited);
    // The missing eu home record cannot be proven absent, so it is not claimed.
    assert_eq!(found(&report), vec![]);

    // A database that does not exist is unreachable too; the URL's password is never echoed.
    let mut input = fx.input();
    let mut u = url::Url::parse(&input.regions[0].auditor_url).unwrap();
    u.set_password(Some("hunter2hunter2")).unwrap();
    u.set_path("no_such_database_for_audit");
    input.regions[0].auditor_url = u.to_string();
    let report = run_audit(&input, &no_progress).await;
    assert_eq!(report.regions[0].status, RegionStatus::Unreachable);
    assert!(report.regions[0]
        .error
        .as_deref()
        .unwrap()
        .contains("no_such_database_for_audit"));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("hunter2hunter2"));
}

/// The migration's tenant test, as SQL (seeded faults reuse it so only the fault differs).
const TENANT_TEST: &str =
    "tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)";

#[tokio::test]
async fn weakened_tenant_policies_are_found() {
    let fx = AuditFixture::create(&["eu"]).await;
    let [owner, app, _] = fx.db("eu").roles.clone();
    fx.admin_exec(
        "eu",
        &format!(
            // USING widened with an OR; WITH CHECK widened while USING stays intact; the
            // policy narrowed to a role that leaves the app role uncovered; WITH CHECK dropped.
            "ALTER POLICY tenant_isolation ON workflows USING ({TENANT_TEST} OR true);
             ALTER POLICY tenant_isolation ON configurations WITH CHECK ({TENANT_TEST} OR true);
             ALTER POLICY tenant_isolation ON executions TO \"{owner}\";
             DROP POLICY tenant_isolation ON roles;
             CREATE POLICY tenant_isolation ON roles USING ({TENANT_TEST});"
        ),
    )
    .await;
    let report = run_audit(&fx.input(), &no_progress).await;
    assert_exactly(
        &report,
        &[
            expect(K::NoTenantPolicy, "eu", None, Some("configurations"), None),
            expect(K::NoTenantPolicy, "eu", None, Some("executions"), None),
            expect(K::NoTenantPolicy, "eu", None, Some("roles"), None),
            expect(K::NoTenantPolicy, "eu", None, Some("workflows"), None),
            expect(
                K::PermissivePolicyBypass,
                "eu",
                None,
                Some("configurations"),
                Some(&app),
            ),
            expect(
                K::PermissivePolicyBypass,
                "eu",
                None,
                Some("workflows"),
                Some(&app),
            ),
        ],
    );
    let wf = report
        .violations
        .iter()
        .find(|v| v.kind == K::NoTenantPolicy && v.table.as_deref() == Some("workflows"))
        .unwrap();
    assert!(wf.detail.contains("OR true"), "{}", wf.detail);
}

#[tokio::test]
async fn added_permissive_policies_are_found() {
    let fx = AuditFixture::create(&["eu"]).await;
    let app = fx.db("eu").roles[1].clone();
    fx.admin_exec(
        "eu",
        // A plain `USING (true)` for all commands, and one that mentions tenant_id and
        // app.tenant_id (a text pattern would take it for a tenant check) yet lets every row
        // through when the setting is missing.
        "CREATE POLICY open_all ON members USING (true);
         CREATE POLICY looks_scoped ON connections
             USING (tenant_id = tenant_id OR current_setting('app.tenant_id', true) IS NULL);",
    )
    .await;
    let report = run_audit(&fx.input(), &no_progress).await;
    assert_exactly(
        &report,
        &[
            expect(
                K::PermissivePolicyBypass,
                "eu",
                None,
                Some("connections"),
                Some(&app),
            ),
            expect(
                K::PermissivePolicyBypass,
                "eu",
                None,
                Some("members"),
                Some(&app),
            ),
        ],
    );
    assert!(report.violations[0].detail.contains("looks_scoped"));
    assert!(report.violations[1].detail.contains("open_all"));
}
