//! API behaviour: audit events for every write (none for rolled-back writes), pagination,
//! validation problems naming fields, provisioning idempotency, request ids.

use http::{Method, StatusCode};
use integration_tests::{Node, NodeOptions, RegionDb};
use serde_json::{json, Value};
use uuid::Uuid;

async fn audit_actions(node: &Node, t: Uuid) -> Vec<String> {
    let r = node
        .call(
            Method::GET,
            "/v1/audit-events?limit=500",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_write_is_audited_and_failed_writes_are_not() {
    let db = RegionDb::create("us").await;
    let node = Node::start(&db, "us", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    assert_eq!(audit_actions(&node, t).await, ["tenant.provision"]);

    let ok = |r: &integration_tests::Response| assert!(r.status.is_success(), "{r:?}");
    let c = node
        .call(
            Method::POST,
            "/v1/connections",
            t,
            "u",
            "owner",
            Some(&json!({"connector_id": "notion", "name": "n", "credentials": {"k": "v"}})),
        )
        .await;
    ok(&c);
    let cid = c.json["id"].as_str().unwrap().to_owned();
    ok(&node
        .call(
            Method::PATCH,
            &format!("/v1/connections/{cid}"),
            t,
            "u",
            "owner",
            Some(&json!({"credentials": {"k": "w"}})),
        )
        .await);
    let w = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": "w", "definition": {}})),
        )
        .await;
    ok(&w);
    let wid = w.json["id"].as_str().unwrap().to_owned();
    ok(&node
        .call(
            Method::PATCH,
            &format!("/v1/workflows/{wid}"),
            t,
            "u",
            "owner",
            Some(&json!({"enabled": true})),
        )
        .await);
    let run = node
        .call(
            Method::POST,
            &format!("/v1/workflows/{wid}/runs"),
            t,
            "u",
            "owner",
            Some(&json!({"input": {"x": 1}})),
        )
        .await;
    ok(&run);
    ok(&node
        .call(
            Method::POST,
            &format!("/v1/executions/{}/cancel", run.json["id"].as_str().unwrap()),
            t,
            "u",
            "owner",
            None,
        )
        .await);
    ok(&node
        .call(
            Method::PUT,
            "/v1/configurations/a.b",
            t,
            "u",
            "owner",
            Some(&json!({"value": [1]})),
        )
        .await);
    ok(&node
        .call(
            Method::DELETE,
            "/v1/configurations/a.b",
            t,
            "u",
            "owner",
            None,
        )
        .await);
    let m = node
        .call(
            Method::POST,
            "/v1/members",
            t,
            "u",
            "owner",
            Some(&json!({"subject": "s", "email": "s@x.test", "role": "viewer"})),
        )
        .await;
    ok(&m);
    ok(&node
        .call(
            Method::PATCH,
            &format!("/v1/members/{}", m.json["id"].as_str().unwrap()),
            t,
            "u",
            "owner",
            Some(&json!({"role": "operator"})),
        )
        .await);
    ok(&node
        .call(
            Method::DELETE,
            &format!("/v1/members/{}", m.json["id"].as_str().unwrap()),
            t,
            "u",
            "owner",
            None,
        )
        .await);
    let role = node
        .call(
            Method::POST,
            "/v1/roles",
            t,
            "u",
            "owner",
            Some(&json!({"name": "r", "based_on": "viewer"})),
        )
        .await;
    ok(&role);
    ok(&node
        .call(
            Method::DELETE,
            &format!("/v1/roles/{}", role.json["id"].as_str().unwrap()),
            t,
            "u",
            "owner",
            None,
        )
        .await);
    ok(&node
        .call(
            Method::DELETE,
            &format!("/v1/workflows/{wid}"),
            t,
            "u",
            "owner",
            None,
        )
        .await);
    ok(&node
        .call(
            Method::DELETE,
            &format!("/v1/connections/{cid}"),
            t,
            "u",
            "owner",
            None,
        )
        .await);

    let mut actions = audit_actions(&node, t).await;
    actions.reverse();
    assert_eq!(
        actions,
        [
            "tenant.provision",
            "connection.create",
            "connection.update",
            "workflow.create",
            "workflow.update",
            "workflow.run",
            "execution.cancel",
            "configuration.put",
            "configuration.delete",
            "member.create",
            "member.update",
            "member.delete",
            "role.create",
            "role.delete",
            "workflow.delete",
            "connection.delete"
        ]
    );

    // Failed writes leave nothing: a duplicate (409 after the insert failed in the database),
    // a forbidden write, an invalid body.
    let before = audit_actions(&node, t).await.len();
    ok(&node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": "dup", "definition": {}})),
        )
        .await);
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": "dup", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "v",
            "viewer",
            Some(&json!({"name": "v", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": "x", "definition": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(audit_actions(&node, t).await.len(), before + 1);

    // Filters: by action, actor and time.
    let r = node
        .call(
            Method::GET,
            "/v1/audit-events?action=workflow.create",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2);
    let r = node
        .call(
            Method::GET,
            "/v1/audit-events?actor=system:test",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    let r = node
        .call(
            Method::GET,
            "/v1/audit-events?to=2000-01-01T00:00:00Z",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 0);
    let r = node
        .call(
            Method::GET,
            "/v1/audit-events?from=yesterday",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Each event carries the request id of the request that wrote it.
    let r = node
        .raw(
            Method::PUT,
            "/v1/configurations/rid",
            &[
                ("x-residency-assertion", &node.assertion(t, "u", "owner")),
                ("x-request-id", "req-abc-123"),
            ],
            Some(&json!({"value": 1})),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "req-abc-123");
    let ev = node
        .call(
            Method::GET,
            "/v1/audit-events?limit=1",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(ev.json["items"][0]["request_id"], "req-abc-123");
}

#[tokio::test]
async fn pagination_validation_and_provisioning() {
    let db = RegionDb::create("apac").await;
    let node = Node::start(&db, "apac", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    let first = node.provision(t, "acme").await;
    assert_eq!(first.status, StatusCode::CREATED);
    // Idempotent: 200 the second time, still six system roles and one owner.
    let again = node.provision(t, "acme").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["created"], false);
    let roles = node
        .call(Method::GET, "/v1/roles", t, "u", "owner", None)
        .await;
    assert_eq!(roles.json["items"].as_array().unwrap().len(), 6);
    let members = node
        .call(Method::GET, "/v1/members", t, "u", "owner", None)
        .await;
    assert_eq!(members.json["items"].as_array().unwrap().len(), 1);

    for i in 0..7 {
        let r = node
            .call(
                Method::PUT,
                &format!("/v1/configurations/key{i}"),
                t,
                "u",
                "owner",
                Some(&json!({"value": i})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/configurations?limit=3&cursor={c}"),
            None => "/v1/configurations?limit=3".to_owned(),
        };
        let r = node.call(Method::GET, &path, t, "u", "owner", None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        pages += 1;
        for item in r.json["items"].as_array().unwrap() {
            seen.push(item["key"].as_str().unwrap().to_owned());
        }
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("key{i}")).collect::<Vec<_>>());

    let bad = [
        (
            "/v1/configurations?limit=501",
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            "/v1/configurations?limit=abc",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/v1/workflows?cursor=nonsense",
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            "/v1/executions?status=exploded",
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
    ];
    for (path, status, field) in bad {
        let r = node.call(Method::GET, path, t, "u", "owner", None).await;
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert!(
            r.json["detail"].as_str().unwrap().contains(field),
            "{path}: {r:?}"
        );
    }

    // Bodies: wrong type names the field; bad JSON is 400; wrong content type 415.
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": 5, "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json["detail"].as_str().unwrap().starts_with("name"),
        "{r:?}"
    );
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["detail"].as_str().unwrap().contains("name"), "{r:?}");
    let r = node
        .call(
            Method::POST,
            "/v1/workflows",
            t,
            "u",
            "owner",
            Some(&json!({"name": "", "definition": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let a = node.assertion(t, "u", "owner");
    let r = node
        .raw(
            Method::POST,
            "/v1/workflows",
            &[
                ("x-residency-assertion", &a),
                ("content-type", "text/plain"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = node
        .call(
            Method::PUT,
            "/v1/configurations/bad%20key",
            t,
            "u",
            "owner",
            Some(&json!({"value": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = node
        .call(
            Method::GET,
            "/v1/workflows/not-a-uuid",
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = node
        .call(Method::GET, "/v1/nope", t, "u", "owner", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");

    // Every problem body has the RFC 9457 members and no internals.
    let body: &Value = &r.json;
    for k in ["type", "title", "status", "detail", "request_id"] {
        assert!(body.get(k).is_some(), "{k} missing: {body}");
    }
    // Connectors: the shared catalogue, at least 8 with actions.
    let r = node
        .call(Method::GET, "/v1/connectors", t, "u", "viewer", None)
        .await;
    let items = r.json["items"].as_array().unwrap();
    assert!(items.len() >= 8);
    assert!(items
        .iter()
        .all(|c| !c["actions"].as_array().unwrap().is_empty()));
    let r = node
        .call(Method::GET, "/v1/connectors/slack", t, "u", "viewer", None)
        .await;
    assert_eq!(r.json["name"], "Slack");
}

/// Every item of the list `path` (which has a query), walked `limit` items a page, as the
/// values of `key`.
async fn walk(node: &Node, t: Uuid, path: &str, limit: u32, key: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{path}&limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = node.call(Method::GET, &url, t, "u", "owner", None).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {r:?}");
        let items = r.json["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize, "{url}: {r:?}");
        seen.extend(items.iter().map(|i| i[key].as_str().unwrap().to_owned()));
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
    panic!("{path}: the cursor never reached the end: {seen:?}");
}

#[tokio::test]
async fn every_list_pages_through_its_filters_and_cursor_kind() {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    let post = |path: &'static str, body: Value| {
        let node = &node;
        async move {
            let r = node
                .call(Method::POST, path, t, "u", "owner", Some(&body))
                .await;
            assert!(r.status.is_success(), "{path}: {r:?}");
            r.json["id"].as_str().unwrap().to_owned()
        }
    };
    let mut notion = Vec::new();
    for (connector, name) in [("notion", "a"), ("slack", "b"), ("notion", "c")] {
        let id = post(
            "/v1/connections",
            json!({"connector_id": connector, "name": name, "credentials": {"k": "v"}}),
        )
        .await;
        if connector == "notion" {
            notion.push(id);
        }
    }
    let wa = post("/v1/workflows", json!({"name": "a", "definition": {}})).await;
    let wb = post("/v1/workflows", json!({"name": "b", "definition": {}})).await;
    let wc = post(
        "/v1/workflows",
        json!({"name": "c", "definition": {}, "enabled": false}),
    )
    .await;
    let mut runs_of_a = Vec::new();
    for w in [&wa, &wb, &wa] {
        let r = node
            .call(
                Method::POST,
                &format!("/v1/workflows/{w}/runs"),
                t,
                "u",
                "owner",
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        if *w == wa {
            runs_of_a.push(r.json["id"].as_str().unwrap().to_owned());
        }
    }
    let cancelled = node
        .call(
            Method::POST,
            &format!("/v1/executions/{}/cancel", runs_of_a[1]),
            t,
            "u",
            "owner",
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");

    // Id-keyed lists with filters bound after the cursor and the limit.
    let conns = walk(&node, t, "/v1/connections?connector_id=notion", 1, "id").await;
    assert_eq!(conns, notion);
    let on = walk(&node, t, "/v1/workflows?enabled=true", 1, "id").await;
    assert_eq!(on, [wa.clone(), wb]);
    assert_eq!(
        walk(&node, t, "/v1/workflows?enabled=false", 1, "id").await,
        [wc]
    );
    let path = format!("/v1/executions?workflow_id={wa}");
    assert_eq!(walk(&node, t, &path, 1, "id").await, runs_of_a);
    let path = format!("/v1/executions?workflow_id={wa}&status=cancelled");
    assert_eq!(walk(&node, t, &path, 1, "id").await, [runs_of_a[1].clone()]);

    // Text-keyed: the shared connector catalogue, in id order.
    let all = walk(&node, t, "/v1/connectors?", 500, "id").await;
    assert!(
        all.len() >= 10 && all.windows(2).all(|w| w[0] < w[1]),
        "{all:?}"
    );
    assert_eq!(walk(&node, t, "/v1/connectors?", 3, "id").await, all);

    // Newest first: each page continues with strictly older events.
    let events = walk(&node, t, "/v1/audit-events?", 500, "id").await;
    assert!(events.windows(2).all(|w| w[0] > w[1]), "{events:?}");
    assert_eq!(walk(&node, t, "/v1/audit-events?", 2, "id").await, events);
    let runs = walk(
        &node,
        t,
        "/v1/audit-events?action=workflow.run",
        1,
        "action",
    )
    .await;
    assert_eq!(runs, ["workflow.run"; 3]);
}
