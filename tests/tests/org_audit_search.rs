//! Organization-wide audit search (issue 17, item 5), end to end against real Postgres and
//! three region nodes: `GET /admin/v1/organizations/{id}/audit-events` fans out to every
//! region holding the organization's customers, merges their events by time, filters and
//! paginates; another organization's credential gets 404, the organization's `member` reads;
//! a stopped region is named in `incomplete_regions` (200, never a 5xx); and the node's
//! internal search endpoint refuses a customer assertion.

use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, ADMIN_TOKEN};
use integration_tests::{write_node_config, Http, RegionDb, Response};
use residency_core::wire::org_audit::SEARCH_PATH;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn org(s: &Stack, name: &str) -> String {
    let domain = format!("{name}{}.example.com", Uuid::new_v4().simple());
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/organizations",
            Some(&json!({"name": name, "domain": domain})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.json["id"].as_str().unwrap().to_owned()
}

async fn org_token(s: &Stack, org: &str, role: &str) -> String {
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/organizations/{org}/tokens"),
            Some(&json!({"name": format!("{role} token"), "role": role})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.json["secret"].as_str().unwrap().to_owned()
}

async fn customer(s: &Stack, org: &str, name: &str, region: &str) -> String {
    let body = json!({
        "name": name, "region": region, "tier": "scale", "org_id": org,
        "owner": { "subject": format!("owner-{name}"), "email": format!("owner@{name}.test") },
    });
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["status"], "active", "{r:?}");
    r.json["id"].as_str().unwrap().to_owned()
}

/// Writes a configuration through the gateway as `sub` of `tenant` (an audit event
/// `configuration.put`), waiting until the gateway's directory cache knows the tenant.
async fn put_config(s: &Stack, http: &Http, tenant: &str, sub: &str, key: &str) {
    let token = s.idp.token(tenant, sub, "owner");
    let auth = format!("Bearer {token}");
    let url = format!("{}/v1/configurations/{key}", s.public);
    s.until(
        "the configuration is written",
        Duration::from_secs(5),
        || async {
            let r = http
                .send(
                    Method::PUT,
                    &url,
                    &[("authorization", &auth)],
                    Some(&json!({"value": {"k": key}})),
                )
                .await;
            r.status.is_success().then_some(())
        },
    )
    .await;
}

async fn search(s: &Stack, token: Option<&str>, org: &str, query: &str) -> Response {
    let path = format!("/admin/v1/organizations/{org}/audit-events{query}");
    match token {
        None => s.admin(Method::GET, &path, None).await,
        Some(t) => s.admin_as(Some(t), Method::GET, &path, None).await,
    }
}

/// Runs `residency orgs audit <org> ARGS` as the platform admin; returns (success, stdout).
async fn cli(s: &Stack, org: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(integration_tests::binary("residency"))
        .args(["orgs", "audit", org])
        .args(args)
        .env("RESIDENCY_ADMIN_URL", &s.admin)
        .env("RESIDENCY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run residency");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn items(r: &Response) -> Vec<Value> {
    r.json["items"].as_array().cloned().unwrap_or_default()
}

/// `(at, id)` of every item, and whether they are strictly descending.
fn descending(items: &[Value]) -> bool {
    let keys: Vec<(chrono::DateTime<chrono::Utc>, String)> = items
        .iter()
        .map(|e| {
            (
                chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.windows(2).all(|w| w[0] > w[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn org_audit_search_fans_out_merges_filters_pages_and_reports_a_missing_region() {
    let s = Stack::start().await;
    let http = Http::default();

    // A third region: a node for apac at the address the gateway was configured with.
    let apac_db = RegionDb::create("apac").await;
    let node_dir = tempfile::tempdir().unwrap();
    let (path, _) = write_node_config(node_dir.path(), &apac_db, "apac", "127.0.0.1:0", 4);
    std::fs::copy(
        s.files.path().join("apac.key"),
        node_dir.path().join("assertion.key"),
    )
    .unwrap();
    let cfg: residency_config::node::NodeConfig =
        residency_config::load::load(&path, &Vec::new()).unwrap();
    let listener = TcpListener::bind(s.apac_addr).await.unwrap();
    let apac_stop = CancellationToken::new();
    let apac = tokio::spawn(residency_region_node::run(cfg, listener, apac_stop.clone()));
    s.until("apac upstream healthy", Duration::from_secs(10), || async {
        let r = s.admin(Method::GET, "/admin/v1/regions", None).await;
        let apac = &r.json["items"][2];
        (apac["id"] == "apac" && apac["available_upstreams"] == 1).then_some(())
    })
    .await;

    let a = org(&s, "alpha").await;
    let b = org(&s, "bravo").await;
    let a_eu = customer(&s, &a, "a-eu", "eu").await;
    let a_us = customer(&s, &a, "a-us", "us").await;
    let a_apac = customer(&s, &a, "a-apac", "apac").await;
    let b_eu = customer(&s, &b, "b-eu", "eu").await;
    // Events in every region, interleaved in time across regions.
    for (i, t) in [&a_eu, &a_us, &a_apac, &a_eu, &a_us, &a_apac]
        .into_iter()
        .enumerate()
    {
        put_config(&s, &http, t, "alice", &format!("key-{i}")).await;
    }
    put_config(&s, &http, &a_us, "bob", "bob-key").await;
    put_config(&s, &http, &b_eu, "alice", "b-secret").await;

    // Everything of organization A: 3 provisionings + 7 writes, merged newest first, from
    // three regions, nothing of B's.
    let all = search(&s, None, &a, "?limit=500").await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    let every = items(&all);
    assert_eq!(every.len(), 10, "{all:?}");
    assert!(descending(&every), "{all:?}");
    assert_eq!(all.json["incomplete_regions"], json!([]));
    assert_eq!(all.json["next_cursor"], Value::Null);
    let mut regions: Vec<&str> = every
        .iter()
        .map(|e| e["region"].as_str().unwrap())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    assert_eq!(regions, ["apac", "eu", "us"]);
    assert!(
        every.iter().all(|e| e["tenant_id"] != b_eu.as_str()),
        "{all:?}"
    );
    let writes: Vec<&str> = every
        .iter()
        .filter(|e| e["action"] == "configuration.put")
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        writes,
        ["bob-key", "key-5", "key-4", "key-3", "key-2", "key-1", "key-0"],
        "merged by time across regions"
    );
    for e in &every {
        let region = e["region"].as_str().unwrap();
        let home = match e["tenant_id"].as_str().unwrap() {
            t if t == a_eu => "eu",
            t if t == a_us => "us",
            t if t == a_apac => "apac",
            other => panic!("not one of A's customers: {other}"),
        };
        assert_eq!(region, home, "{e}");
    }

    // Filters: action, actor, customer, time.
    let r = search(&s, None, &a, "?action=tenant.provision").await;
    assert_eq!(items(&r).len(), 3, "{r:?}");
    let r = search(&s, None, &a, "?actor=bob").await;
    assert_eq!(items(&r).len(), 1, "{r:?}");
    assert_eq!(items(&r)[0]["target_id"], "bob-key");
    let r = search(&s, None, &a, &format!("?tenant_id={a_apac}")).await;
    assert_eq!(items(&r).len(), 3, "{r:?}");
    assert!(items(&r).iter().all(|e| e["region"] == "apac"), "{r:?}");
    let pivot = every[3]["at"].as_str().unwrap();
    let enc = |t: &str| t.replace('+', "%2B");
    let r = search(&s, None, &a, &format!("?since={}&limit=500", enc(pivot))).await;
    assert_eq!(items(&r), every[..4].to_vec(), "since is inclusive: {r:?}");
    let r = search(&s, None, &a, &format!("?until={}&limit=500", enc(pivot))).await;
    assert_eq!(items(&r), every[4..].to_vec(), "until is exclusive: {r:?}");
    let r = search(&s, None, &a, "?since=yesterday").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = search(&s, None, &a, "?limit=501").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = search(&s, None, &a, "?cursor=bogus").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    // Pages of 3 over the cursor give the same events in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "?limit=3".to_owned(),
            Some(c) => format!("?limit=3&cursor={c}"),
        };
        let r = search(&s, None, &a, &q).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(items(&r).len() <= 3);
        paged.extend(items(&r));
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, every);

    // Organization credentials: A's member reads; B's owner gets 404, for A's organization
    // and for A's customer as a filter on B's own organization.
    let a_member = org_token(&s, &a, "member").await;
    let r = search(&s, Some(&a_member), &a, "?limit=500").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(items(&r), every);
    let b_owner = org_token(&s, &b, "owner").await;
    let r = search(&s, Some(&b_owner), &a, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let ghost = search(&s, Some(&b_owner), &Uuid::now_v7().to_string(), "").await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json["type"], ghost.json["type"],
        "same answer as a missing organization"
    );
    let r = search(&s, Some(&b_owner), &b, &format!("?tenant_id={a_eu}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = search(&s, Some(&b_owner), &b, "").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(
        items(&r).iter().all(|e| e["tenant_id"] == b_eu.as_str()),
        "{r:?}"
    );

    // The CLI prints the same events as a table, with the filters.
    let (ok, text) = cli(&s, &a, &["--action", "configuration.put", "--limit", "500"]).await;
    assert!(ok, "{text}");
    assert!(text.starts_with("AT"), "{text}");
    assert_eq!(text.lines().count(), 1 + 7, "{text}");
    assert!(text.contains("configuration bob-key"), "{text}");
    assert!(!text.contains("tenant.provision"), "{text}");
    let (ok, text) = cli(&s, &a, &["--since", pivot, "--json"]).await;
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["items"], json!(every[..4].to_vec()));

    // A stopped region: 200, the other regions' events, and the region named.
    apac_stop.cancel();
    apac.await.unwrap().unwrap();
    let r = search(&s, Some(&a_member), &a, "?limit=500").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["incomplete_regions"], json!(["apac"]), "{r:?}");
    let expected: Vec<Value> = every
        .iter()
        .filter(|e| e["region"] != "apac")
        .cloned()
        .collect();
    assert_eq!(items(&r), expected);
    let (ok, text) = cli(&s, &a, &[]).await;
    assert!(ok, "{text}");
    assert!(text.contains("incomplete: no answer from apac"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_internal_search_refuses_customer_assertions() {
    let s = Stack::start().await;
    let t = s.create_tenant("victim", "eu", "scale").await;
    let t: Uuid = t["id"].as_str().unwrap().parse().unwrap();
    let eu = s.nodes.iter().find(|n| n.region.as_str() == "eu").unwrap();
    let body = json!({"tenants": [t], "limit": 10});
    // A customer assertion of the tenant itself, of an owner, even naming `system` as its
    // role or subject: the gateway's signer refuses to mint those with the customer scope,
    // so the owner is what a customer credential can reach.
    let r = eu
        .call(
            Method::POST,
            SEARCH_PATH,
            t,
            "owner-victim",
            "owner",
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = eu
        .call(
            Method::POST,
            SEARCH_PATH,
            t,
            "owner-victim",
            "",
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // No assertion, or the customer's own JWT sent straight to the node: 401.
    let r = eu.raw(Method::POST, SEARCH_PATH, &[], Some(&body)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let jwt = s.idp.token(&t.to_string(), "system:admin", "system");
    let r = eu
        .raw(
            Method::POST,
            SEARCH_PATH,
            &[("x-residency-assertion", &jwt)],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // Through the gateway's public listener the internal path does not exist.
    let jwt = s.idp.token(&t.to_string(), "owner-victim", "owner");
    let r = s
        .get(SEARCH_PATH, &[("authorization", &format!("Bearer {jwt}"))])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    // A system assertion (what the gateway's admin API sends) is served.
    let a = eu.assertion(Uuid::nil(), "system:test", "system");
    let r = eu
        .raw(
            Method::POST,
            SEARCH_PATH,
            &[("x-residency-assertion", &a)],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["items"][0]["action"], "tenant.provision", "{r:?}");
    s.stop().await;
}
