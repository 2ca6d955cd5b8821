//! Tenant isolation on a real region database: through the API (404 for another tenant's
//! ids, same body as a missing id) and in SQL as the app role (0 rows under another tenant's
//! setting, 0 rows with no setting, tenant_id immutable, WITH CHECK on writes).

use http::{Method, StatusCode};
use integration_tests::{connect, Node, NodeOptions, RegionDb};
use serde_json::{json, Value};
use uuid::Uuid;

const TABLES: [&str; 11] = [
    "tenants",
    "roles",
    "members",
    "connections",
    "workflows",
    "executions",
    "execution_logs",
    "configurations",
    "webhook_subscriptions",
    "webhook_deliveries",
    "audit_events",
];

struct Seeded {
    connection: String,
    workflow: String,
    execution: String,
    member: String,
    role: String,
}

async fn seed(node: &Node, t: Uuid) -> Seeded {
    let call = |m: Method, p: &'static str, b: Value| async move {
        let r = node.call(m, p, t, "u", "owner", Some(&b)).await;
        assert!(r.status.is_success(), "{p}: {r:?}");
        r.json
    };
    let conn = call(
        Method::POST,
        "/v1/connections",
        json!({"connector_id": "slack", "name": "team", "enabled_actions": ["post_message"], "credentials": {"token": "xoxb-secret"}}),
    )
    .await;
    let wf = call(
        Method::POST,
        "/v1/workflows",
        json!({"name": "notify", "definition": {"steps": [{"id": "notify", "type": "action", "action": "slack.post_message"}]}, "connection_id": conn["id"]}),
    )
    .await;
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    let run = node
        .call(
            Method::POST,
            &format!("/v1/workflows/{wf_id}/runs"),
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{run:?}");
    let r = node
        .call(
            Method::PUT,
            "/v1/configurations/theme",
            t,
            "u",
            "owner",
            Some(&json!({"value": {"color": "blue"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // Before the member, so its member.added leaves a delivery row (to a closed port).
    call(
        Method::POST,
        "/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/hook", "events": ["member.added"]}),
    )
    .await;
    let member = call(
        Method::POST,
        "/v1/members",
        json!({"subject": "dev-1", "email": "dev@example.test", "role": "developer"}),
    )
    .await;
    let role = call(
        Method::POST,
        "/v1/roles",
        json!({"name": "auditor-lite", "based_on": "viewer", "add": ["audit.read"]}),
    )
    .await;
    Seeded {
        connection: conn["id"].as_str().unwrap().to_owned(),
        workflow: wf_id,
        execution: run.json["id"].as_str().unwrap().to_owned(),
        member: member["id"].as_str().unwrap().to_owned(),
        role: role["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn another_tenants_ids_are_404_like_missing_ones() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(a, "alpha").await;
    node.provision(b, "beta").await;
    let s = seed(&node, a).await;

    let paths = [
        format!("/v1/connections/{}", s.connection),
        format!("/v1/workflows/{}", s.workflow),
        format!("/v1/executions/{}", s.execution),
        format!("/v1/members/{}", s.member),
        format!("/v1/roles/{}", s.role),
        "/v1/configurations/theme".to_owned(),
    ];
    for p in &paths {
        // A sees its own resource.
        let own = node.call(Method::GET, p, a, "u", "owner", None).await;
        assert_eq!(own.status, StatusCode::OK, "{p}: {own:?}");
        // B: read, update and delete all answer 404, and A's row survives.
        let read = node.call(Method::GET, p, b, "u", "owner", None).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{p}");
        let missing_path =
            p.rsplit_once('/').unwrap().0.to_owned() + "/" + &Uuid::new_v4().to_string();
        let missing = node
            .call(Method::GET, &missing_path, b, "u", "owner", None)
            .await;
        assert_eq!(
            read.json["detail"], missing.json["detail"],
            "{p}: body differs from a missing id"
        );
        if !p.contains("/executions/") {
            let del = node.call(Method::DELETE, p, b, "u", "owner", None).await;
            assert_eq!(del.status, StatusCode::NOT_FOUND, "{p}");
        }
        let again = node.call(Method::GET, p, a, "u", "owner", None).await;
        assert_eq!(
            again.status,
            StatusCode::OK,
            "{p} was touched by another tenant"
        );
    }
    for (p, body) in [
        (
            format!("/v1/workflows/{}", s.workflow),
            json!({"name": "hijacked"}),
        ),
        (
            format!("/v1/connections/{}", s.connection),
            json!({"name": "hijacked"}),
        ),
        (
            format!("/v1/members/{}", s.member),
            json!({"display_name": "hijacked"}),
        ),
        (
            format!("/v1/roles/{}", s.role),
            json!({"description": "hijacked"}),
        ),
    ] {
        let r = node
            .call(Method::PATCH, &p, b, "u", "owner", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}: {r:?}");
    }
    let r = node
        .call(
            Method::POST,
            &format!("/v1/workflows/{}/runs", s.workflow),
            b,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = node
        .call(
            Method::POST,
            &format!("/v1/executions/{}/cancel", s.execution),
            b,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // B's lists show none of A's rows.
    for list in [
        "/v1/connections",
        "/v1/workflows",
        "/v1/executions",
        "/v1/configurations",
        "/v1/audit-events",
    ] {
        let r = node.call(Method::GET, list, b, "u", "owner", None).await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.text;
        for id in [&s.connection, &s.workflow, &s.execution, &s.member, &s.role] {
            assert!(!body.contains(id.as_str()), "{list} leaked {id}");
        }
        assert!(!body.contains("theme"), "{list} leaked a configuration");
    }
    // Usage counts are per tenant.
    let ua = node
        .call(Method::GET, "/v1/usage", a, "u", "owner", None)
        .await;
    let ub = node
        .call(Method::GET, "/v1/usage", b, "u", "owner", None)
        .await;
    assert_eq!(ua.json["counts"]["workflows"], 1);
    assert_eq!(ub.json["counts"]["workflows"], 0);
    assert_eq!(ub.json["counts"]["executions"], 0);
}

#[tokio::test]
async fn body_tenant_ids_and_cross_tenant_references_change_nothing() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(a, "alpha").await;
    node.provision(b, "beta").await;
    let s = seed(&node, a).await;

    // tenant_id in a body is ignored: the row belongs to the caller.
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            b,
            "u",
            "owner",
            Some(&json!({"name": "sneaky", "definition": {}, "tenant_id": a})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id = r.json["id"].as_str().unwrap();
    assert_eq!(
        node.call(
            Method::GET,
            &format!("/v1/workflows/{id}"),
            b,
            "u",
            "owner",
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        node.call(
            Method::GET,
            &format!("/v1/workflows/{id}"),
            a,
            "u",
            "owner",
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // B cannot reference A's connection: a clean 422 naming the field, no constraint text.
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            b,
            "u",
            "owner",
            Some(&json!({"name": "steal", "definition": {}, "connection_id": s.connection})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .starts_with("connection_id"));
    for leak in ["constraint", "fkey", "violates", "tenant", &s.connection] {
        assert!(
            !r.text.contains(leak),
            "problem leaked {leak:?}: {}",
            r.text
        );
    }

    // Two tenants may use the same names and keys.
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            b,
            "u",
            "owner",
            Some(&json!({"name": "notify", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = node
        .call(
            Method::PUT,
            "/v1/configurations/theme",
            b,
            "u",
            "owner",
            Some(&json!({"value": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Within one tenant, a duplicate is a 409 that names no constraint.
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            b,
            "u",
            "owner",
            Some(&json!({"name": "notify", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        !r.text.contains("workflows_tenant_id_name_key"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(&a.to_string()));
}

#[tokio::test]
async fn sql_as_app_role_sees_only_the_tenant_in_the_setting() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(a, "alpha").await;
    node.provision(b, "beta").await;
    seed(&node, a).await;

    let mut app = connect(&db.app_url).await;
    for table in TABLES {
        // Under B's setting, A's rows are invisible.
        let tx = app.transaction().await.unwrap();
        tx.execute(
            "SELECT set_config('app.tenant_id', $1, true)",
            &[&b.to_string()],
        )
        .await
        .unwrap();
        let n: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
                &[&a],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}: B sees A's rows");
        // B's updates and deletes of A's rows touch nothing.
        let upd = tx
            .execute(
                &format!("UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1"),
                &[&a],
            )
            .await;
        if let Ok(n) = upd {
            assert_eq!(n, 0, "{table}");
        }
        tx.rollback().await.unwrap();

        // Under A's setting they are visible (the test can fail).
        let tx = app.transaction().await.unwrap();
        tx.execute(
            "SELECT set_config('app.tenant_id', $1, true)",
            &[&a.to_string()],
        )
        .await
        .unwrap();
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(n > 0, "{table}: A sees none of its own rows");
        tx.rollback().await.unwrap();

        // No setting, or an empty one: no rows, never an error that reveals rows.
        let n: i64 = app
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}: rows visible without a tenant setting");
        let tx = app.transaction().await.unwrap();
        tx.execute("SELECT set_config('app.tenant_id', '', true)", &[])
            .await
            .unwrap();
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}: rows visible with an empty tenant setting");
        tx.rollback().await.unwrap();
    }

    // tenant_id can never change, even to move a row to a tenant the writer controls.
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .unwrap();
    let err = tx
        .execute("UPDATE configurations SET tenant_id = $1", &[&b])
        .await
        .expect_err("tenant_id update must fail");
    assert!(err.as_db_error().is_some());
    tx.rollback().await.unwrap();

    // WITH CHECK: under A's setting, a row for B cannot be written.
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .unwrap();
    let err = tx
        .execute(
            "INSERT INTO configurations (tenant_id, key, value, updated_by) VALUES ($1, 'x', '1', 'u')",
            &[&b],
        )
        .await
        .expect_err("insert for another tenant must fail");
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    tx.rollback().await.unwrap();

    // No setting: writes are refused too.
    let err = app
        .execute(
            "INSERT INTO configurations (tenant_id, key, value, updated_by) VALUES ($1, 'x', '1', 'u')",
            &[&a],
        )
        .await
        .expect_err("insert without a setting must fail");
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");

    // Audit events are append-only for the app role (no UPDATE or DELETE privilege).
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .unwrap();
    assert!(tx.execute("DELETE FROM audit_events", &[]).await.is_err());
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn credentials_are_write_only_and_encrypted_at_rest() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let a = Uuid::new_v4();
    node.provision(a, "alpha").await;
    let s = seed(&node, a).await;
    for p in [
        format!("/v1/connections/{}", s.connection),
        "/v1/connections".to_owned(),
    ] {
        let r = node.call(Method::GET, &p, a, "u", "owner", None).await;
        assert!(!r.text.contains("xoxb-secret"), "{p} returned credentials");
        assert!(r.text.contains("credentials_set"));
    }
    // Read the raw column as the superuser: ciphertext only.
    let admin = connect(&db.admin_db_url).await;
    let blob: Vec<u8> = admin
        .query_one("SELECT credentials FROM connections", &[])
        .await
        .unwrap()
        .get(0);
    assert!(blob.len() > 28);
    assert!(!blob.windows(11).any(|w| w == b"xoxb-secret"));
    // An unknown action or connector is a 422 naming the field.
    let r = node
        .call(Method::POST, "/v1/connections", a, "u", "owner", Some(&json!({"connector_id": "slack", "name": "x", "enabled_actions": ["launch_rockets"], "credentials": {"t": 1}})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .starts_with("enabled_actions[0]"),
        "{r:?}"
    );
}
