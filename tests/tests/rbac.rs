//! Role-based access control through the node's API: system role sizes, read-only viewer,
//! custom roles, end-user limits, role from the member record.

use http::{Method, StatusCode};
use integration_tests::{Node, NodeOptions, RegionDb, Response};
use serde_json::{json, Value};
use uuid::Uuid;

/// `POST /v1/roles` in tenant `t` as the owner (subject `u`).
async fn create_role(node: &Node, t: Uuid, body: &Value) -> Response {
    node.call(Method::POST, "/v1/roles", t, "u", "owner", Some(body))
        .await
}

#[tokio::test]
async fn system_roles_custom_roles_and_member_records() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;

    // Permission counts per system role, as seen by /v1/me.
    for (role, n) in [
        ("owner", 39),
        ("admin", 39),
        ("developer", 34),
        ("operator", 18),
        ("viewer", 7),
        ("end_user", 9),
    ] {
        let r = node
            .call(Method::GET, "/v1/me", t, "someone", role, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{role}: {r:?}");
        assert_eq!(r.json["permissions"].as_array().unwrap().len(), n, "{role}");
        assert_eq!(r.json["role"], role);
        assert_eq!(r.json["region"], "eu");
        assert_eq!(r.json["tenant_id"], t.to_string());
    }

    // Six system roles exist.
    let roles = node
        .call(Method::GET, "/v1/roles", t, "u", "owner", None)
        .await;
    let system: Vec<_> = roles.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["system"] == true)
        .collect();
    assert_eq!(system.len(), 6);

    // Viewer: reads yes, writes 403 with a problem naming the permission.
    assert_eq!(
        node.call(Method::GET, "/v1/workflows", t, "v", "viewer", None)
            .await
            .status,
        StatusCode::OK
    );
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "v",
            "viewer",
            Some(&json!({"name": "x", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("workflows.create"));
    let r = node
        .call(
            Method::PUT,
            "/v1/configurations/k",
            t,
            "v",
            "viewer",
            Some(&json!({"value": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Custom role: developer without workflows.delete.
    let r = create_role(&node, t, &json!({"name": "builder", "based_on": "developer", "remove": ["workflows.delete"], "add": ["billing.update"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["permissions"].as_array().unwrap().len(), 34);
    let wf = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "b",
            "builder",
            Some(&json!({"name": "w", "definition": {}})),
        )
        .await;
    assert_eq!(wf.status, StatusCode::CREATED);
    let path = format!("/v1/workflows/{}", wf.json["id"].as_str().unwrap());
    assert_eq!(
        node.call(Method::DELETE, &path, t, "b", "builder", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.call(Method::DELETE, &path, t, "d", "developer", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Unknown permissions and reserved names are refused by field.
    let r = create_role(
        &node,
        t,
        &json!({"name": "x", "based_on": "viewer", "add": ["root.everything"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["detail"].as_str().unwrap().starts_with("add[0]"));
    let r = create_role(&node, t, &json!({"name": "admin", "based_on": "viewer"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // System roles cannot be changed.
    let owner_role = system.iter().find(|r| r["name"] == "owner").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = node
        .call(
            Method::PATCH,
            &format!("/v1/roles/{owner_role}"),
            t,
            "u",
            "owner",
            Some(&json!({"remove": ["tenant.read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // End user: may connect and run, may not author workflows or read the audit trail.
    let r = node
        .call(
            Method::POST,
            "/v1/connections",
            t,
            "e",
            "end_user",
            Some(&json!({"connector_id": "gmail", "name": "mine", "credentials": {"token": "t"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "e",
            "end_user",
            Some(&json!({"name": "x", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        node.call(Method::GET, "/v1/audit-events", t, "e", "end_user", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.call(Method::GET, "/v1/members", t, "e", "end_user", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let wf = node
        .call(Method::POST, "/v1/workflows", t, "u", "owner", Some(&json!({"name": "for-users", "definition": {"steps": [{"id": "wait", "type": "delay", "seconds": 1}]}})))
        .await;
    let run = node
        .call(
            Method::POST,
            &format!("/v1/workflows/{}/runs", wf.json["id"].as_str().unwrap()),
            t,
            "e",
            "end_user",
            None,
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{run:?}");
    assert_eq!(run.json["status"], "queued");
    assert_eq!(run.json["logs"].as_array().unwrap().len(), 1);

    // No role claim: the member record decides. The provisioned owner is an owner...
    let r = node
        .call(Method::GET, "/v1/me", t, &format!("owner-{t}"), "", None)
        .await;
    assert_eq!(r.json["role"], "owner", "{r:?}");
    // ...a member added as viewer is a viewer...
    let r = node
        .call(
            Method::POST,
            "/v1/members",
            t,
            "u",
            "owner",
            Some(&json!({"subject": "sam", "email": "sam@acme.test", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        node.call(Method::GET, "/v1/me", t, "sam", "", None)
            .await
            .json["role"],
        "viewer"
    );
    // ...and a stranger without a role claim is refused.
    assert_eq!(
        node.call(Method::GET, "/v1/me", t, "stranger", "", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // A role claim naming no role of this customer is refused.
    assert_eq!(
        node.call(Method::GET, "/v1/me", t, "x", "superuser", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Only owners grant owner; the last owner cannot be removed.
    let r = node
        .call(
            Method::POST,
            "/v1/members",
            t,
            "a",
            "admin",
            Some(&json!({"subject": "eve", "email": "eve@acme.test", "role": "owner"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let members = node
        .call(Method::GET, "/v1/members", t, "u", "owner", None)
        .await;
    let owner_member = members.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = node
        .call(
            Method::DELETE,
            &format!("/v1/members/{owner_member}"),
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_role_check_is_internal_and_sees_only_the_tenants_roles() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (t, other) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(t, "acme").await;
    node.provision(other, "globex").await;
    let r = create_role(
        &node,
        t,
        &json!({"name": "release", "based_on": "operator"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let check = |tenant: Uuid, subject: &'static str, role: &'static str, name: &'static str| {
        let node = &node;
        async move {
            node.call(
                Method::POST,
                "/internal/v1/roles/check",
                tenant,
                subject,
                role,
                Some(&json!({ "name": name })),
            )
            .await
        }
    };
    for (tenant, name, exists) in [
        (t, "developer", true),
        (t, "release", true),
        (t, "nope", false),
        (other, "developer", true),
        (other, "release", false),
        (Uuid::new_v4(), "developer", false),
    ] {
        let r = check(tenant, "system:test", "system", name).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {r:?}");
        assert_eq!(r.json["exists"], exists, "{tenant} {name}: {r:?}");
    }
    // Customer assertions, even an owner's, cannot call it; no assertion is 401.
    let r = check(t, "u", "owner", "release").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = node
        .raw(
            Method::POST,
            "/internal/v1/roles/check",
            &[],
            Some(&json!({"name": "release"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

#[tokio::test]
async fn a_stored_permission_outside_the_catalogue_is_an_internal_error_not_a_grant() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    // Every write goes through the Permission enum; only a write around the node (here as the
    // superuser) can store an unknown name.
    let admin = integration_tests::connect(&db.admin_db_url).await;
    admin
        .execute(
            "INSERT INTO roles (tenant_id, id, name, description, is_system, based_on, permissions) \
             VALUES ($1, $2, 'corrupt', '', false, 'viewer', ARRAY['tenant.read', 'tenant.own'])",
            &[&t, &Uuid::now_v7()],
        )
        .await
        .unwrap();
    let r = node
        .call(Method::GET, "/v1/me", t, "u", "corrupt", None)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{r:?}");
    assert_eq!(r.json["detail"], "an internal error occurred", "{r:?}");
    assert!(!r.text.contains("tenant.own"), "{r:?}");
    // Other roles of the tenant are unaffected.
    let me = node
        .call(Method::GET, "/v1/me", t, "u", "owner", None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
}

/// The generic get and list run their statement in the same round trip as the role lookup,
/// before the role is known (`Db::read_rows`): the answer must still be decided by the role.
/// A caller who may not read gets 403 and none of the row; an unprovisioned tenant gets 404;
/// another tenant's owner gets 404 for the row.
#[tokio::test]
async fn a_read_answers_only_a_role_that_may_read_even_though_it_ran_first() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (t, other) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(t, "acme").await;
    node.provision(other, "globex").await;
    let marker = "do-not-show-4f1c";
    let r = node
        .call(
            Method::PUT,
            "/v1/configurations/secret",
            t,
            "u",
            "owner",
            Some(&json!({ "value": { "token": marker } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    for path in ["/v1/configurations/secret", "/v1/configurations"] {
        // end_user holds no configurations.read.
        let r = node.call(Method::GET, path, t, "e", "end_user", None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {r:?}");
        assert!(!r.text.contains(marker), "{path}: {r:?}");
        assert!(
            r.text.contains("lacks the permission configurations.read"),
            "{path}: {r:?}"
        );
        // No role claim and no member record; a role claim naming no role of the tenant.
        for (subject, role) in [("stranger", ""), ("x", "superuser")] {
            let r = node.call(Method::GET, path, t, subject, role, None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {role}: {r:?}");
            assert!(!r.text.contains(marker), "{path}: {r:?}");
        }
        // A tenant not provisioned in this region.
        let r = node
            .call(Method::GET, path, Uuid::new_v4(), "u", "owner", None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r:?}");
        assert!(r.text.contains("tenant"), "{path}: {r:?}");
    }
    // Another tenant's owner: the row is not there for it (RLS), the list is empty.
    let r = node
        .call(
            Method::GET,
            "/v1/configurations/secret",
            other,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = node
        .call(Method::GET, "/v1/configurations", other, "u", "owner", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["items"], json!([]), "{r:?}");
    // The owner reads it.
    let r = node
        .call(
            Method::GET,
            "/v1/configurations/secret",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["value"]["token"], marker, "{r:?}");
}
