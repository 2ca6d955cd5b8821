//! Catalog posture of a migrated region database: what the placement audit will also check.

use integration_tests::{connect, RegionDb};

#[tokio::test]
async fn migrated_database_has_the_isolation_posture() {
    let db = RegionDb::create("apac").await;
    let admin = connect(&db.admin_db_url).await;
    let [owner, app, auditor] = &db.roles;

    // The app and auditor roles: not superuser, cannot bypass RLS, cannot create roles or DBs.
    for role in [app, auditor, owner] {
        let r = admin
            .query_one(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
                &[role],
            )
            .await
            .unwrap();
        let flags: (bool, bool, bool, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(flags, (false, false, false, false), "{role}");
    }

    // The app role owns nothing; the owner owns every table.
    let owned: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner \
             WHERE r.rolname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
            &[app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0);

    // Every table with tenant_id: RLS enabled and forced, a policy on app.tenant_id for USING
    // and WITH CHECK, tenant_id leading the primary key, a tenant_id-immutable trigger (or
    // append-only for audit events).
    let tables = admin
        .query(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        [
            "audit_events",
            "configurations",
            "connections",
            "execution_logs",
            "executions",
            "jobs",
            "members",
            "roles",
            "tenants",
            "workflows"
        ]
    );
    for t in &tables {
        let name: String = t.get(0);
        assert!(
            t.get::<_, bool>(1) && t.get::<_, bool>(2),
            "{name}: rls not enabled and forced"
        );
        let policy = admin
            .query_one(
                "SELECT pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) \
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
                 WHERE c.relname = $1 AND p.polname = 'tenant_isolation'",
                &[&name],
            )
            .await
            .unwrap();
        let (using, check): (String, String) = (policy.get(0), policy.get(1));
        assert!(
            using.contains("app.tenant_id") && check.contains("app.tenant_id"),
            "{name}: {using} / {check}"
        );
        let pk_first: String = admin
            .query_one(
                "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
                 WHERE c.relname = $1 AND i.indisprimary",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(pk_first, "tenant_id", "{name}");
        let trig: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 WHERE c.relname = $1 AND t.tgname = $1 || '_tenant_id_immutable'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(trig, 1, "{name}: no tenant_id guard");
    }

    // Every unique index and every foreign key between customer tables leads with tenant_id.
    let bad_unique: Vec<String> = admin
        .query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
             WHERE i.indisunique AND c.relnamespace = 'public'::regnamespace \
               AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id') \
               AND a.attname <> 'tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(bad_unique.is_empty(), "{bad_unique:?}");
    let bad_fk: Vec<String> = admin
        .query(
            "SELECT con.conname::text FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = con.conkey[1] \
             WHERE con.contype = 'f' AND c.relnamespace = 'public'::regnamespace \
               AND con.confrelid NOT IN ('connectors'::regclass) AND a.attname <> 'tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(bad_fk.is_empty(), "{bad_fk:?}");

    // No TRUNCATE or REFERENCES for the app role anywhere; audit events INSERT + SELECT only.
    let privs = admin
        .query(
            "SELECT c.relname, has_table_privilege($1, c.oid, 'TRUNCATE'), has_table_privilege($1, c.oid, 'REFERENCES'), \
                    has_table_privilege($1, c.oid, 'UPDATE'), has_table_privilege($1, c.oid, 'DELETE') \
             FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'",
            &[app],
        )
        .await
        .unwrap();
    for p in &privs {
        let name: String = p.get(0);
        assert!(
            !p.get::<_, bool>(1) && !p.get::<_, bool>(2),
            "{name}: truncate/references granted"
        );
        if name == "audit_events" || name == "connectors" || name == "connector_actions" {
            assert!(
                !p.get::<_, bool>(3) && !p.get::<_, bool>(4),
                "{name} must not be writable"
            );
        }
    }
    let schema_migrations: bool = admin
        .query_one(
            "SELECT has_table_privilege($1, 'schema_migrations', 'SELECT')",
            &[app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!schema_migrations);

    // The auditor can read only the tenant_id column.
    let aud: (bool, bool) = {
        let r = admin
            .query_one(
                "SELECT has_column_privilege($1, 'connections', 'tenant_id', 'SELECT'), \
                        has_column_privilege($1, 'connections', 'credentials', 'SELECT')",
                &[auditor],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(aud, (true, false));

    // Views are security_invoker; SECURITY DEFINER functions pin search_path.
    let bad_views: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace \
             AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad_views, 0);
    let bad_definers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef \
             AND NOT coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) s WHERE s LIKE 'search_path=%'), false)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad_definers, 0);

    // Nobody but the owner may create objects in the schema.
    let can_create: bool = admin
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_create);
}

/// The audit compares policies with `TENANT_POLICY_EXPR` verbatim: it must be exactly what
/// Postgres prints back for the policy the migrations create, on every customer table, read the
/// way the audit reads it (as the auditor, `search_path` pinned to `pg_catalog`).
#[tokio::test]
async fn audit_canonical_tenant_check_is_what_the_migrations_create() {
    let db = RegionDb::create("eu").await;
    let auditor = connect(&db.auditor_url).await;
    auditor
        .batch_execute("SET search_path = pg_catalog")
        .await
        .unwrap();
    let rows = auditor
        .query(
            "SELECT c.relname::text, p.polcmd::text, p.polpermissive, p.polroles = '{0}'::oid[], \
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) \
             FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
             WHERE p.polname = 'tenant_isolation' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10, "one tenant policy per customer table");
    for r in &rows {
        let table: String = r.get(0);
        assert_eq!(r.get::<_, String>(1), "*", "{table}: for all commands");
        assert!(r.get::<_, bool>(2), "{table}: permissive");
        assert!(r.get::<_, bool>(3), "{table}: to PUBLIC");
        for i in [4, 5] {
            assert_eq!(
                r.get::<_, Option<String>>(i).as_deref(),
                Some(residency_audit::TENANT_POLICY_EXPR),
                "{table}"
            );
        }
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_checksummed() {
    let db = RegionDb::create("us").await;
    let roles = residency_region_node::db::migrate::GrantRoles {
        app: db.roles[1].clone(),
        auditor: db.roles[2].clone(),
    };
    let again = residency_region_node::db::migrate::migrate(&db.owner_url, &roles)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // A tampered checksum is refused, not re-applied.
    let owner = connect(&db.owner_url).await;
    owner
        .execute(
            "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = residency_region_node::db::migrate::migrate(&db.owner_url, &roles)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
}

/// Role passwords reach the server only as SCRAM-SHA-256 verifiers computed client-side, never
/// as plaintext (which the server could log): even an admin session that would store a
/// plaintext password as MD5 stores exactly the verifier sent, and each role still logs in.
#[tokio::test]
async fn bootstrap_sends_scram_verifiers_not_passwords() {
    use residency_region_node::db::bootstrap;
    let base = format!(
        "rgt_{}_scram",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let spec = |suffix: &str| bootstrap::RoleSpec {
        name: format!("{base}_{suffix}"),
        password: uuid::Uuid::new_v4().simple().to_string(),
    };
    let plan = bootstrap::Plan {
        database: base.clone(),
        owner: spec("owner"),
        app: spec("app"),
        auditor: spec("auditor"),
    };
    // A session that hashes plaintext passwords with MD5: a SCRAM verifier in the catalog can
    // then only come from the client.
    let mut admin = url::Url::parse(&integration_tests::admin_url()).unwrap();
    // Percent-encoded by hand: tokio-postgres does not read `+` as a space.
    admin.set_query(Some("options=-c%20password_encryption%3Dmd5"));
    let admin = admin.to_string();
    let result = bootstrap::bootstrap(&admin, &plan).await;
    let roles = [&plan.owner, &plan.app, &plan.auditor];
    let mut stored = Vec::new();
    let mut logins = Vec::new();
    if result.is_ok() {
        let su = connect(&integration_tests::admin_url()).await;
        for r in roles {
            let pw: Option<String> = su
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&r.name],
                )
                .await
                .unwrap()
                .get(0);
            stored.push((r.name.clone(), pw));
            let url = bootstrap::role_url(&integration_tests::admin_url(), r, &base).unwrap();
            logins.push((
                r.name.clone(),
                tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            ));
        }
    }
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    bootstrap::teardown(&integration_tests::admin_url(), &base, &names)
        .await
        .unwrap();
    result.unwrap();
    for (role, pw) in &stored {
        let pw = pw.as_deref().unwrap_or_default();
        assert!(
            pw.starts_with("SCRAM-SHA-256$4096:"),
            "{role}: stored {}",
            &pw[..pw.len().min(14)]
        );
    }
    for (role, login) in &logins {
        assert!(login.is_ok(), "{role} cannot log in: {login:?}");
    }
}
