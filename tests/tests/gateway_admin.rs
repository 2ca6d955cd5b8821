//! End to end: the gateway's admin API and Postgres directory cache against real region nodes
//! (eu, us) on real Postgres and a real directory database ([`integration_tests::gateway`]).
//! Ports are chosen by the OS; nothing sleeps for synchronisation: every "within 1 s" is a
//! poll against a deadline.

use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, WITHIN};
use integration_tests::{write_node_config, RegionDb, Response};
use residency_core::{TenantStatus, Tier};
use residency_directory::TenantPatch;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn problem_field(r: &Response) -> &str {
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{r:?}"
    );
    assert_eq!(
        r.json["request_id"].as_str(),
        r.headers["x-request-id"].to_str().ok(),
        "{r:?}"
    );
    r.json["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn customers_created_in_two_regions_answer_from_home_at_once() {
    let s = Stack::start().await;
    let org = s
        .admin(
            Method::POST,
            "/admin/v1/organizations",
            Some(&json!({"name": "Partner", "domain": format!("p{}.example.com", Uuid::new_v4().simple())})),
        )
        .await;
    assert_eq!(org.status, StatusCode::CREATED, "{org:?}");
    assert_eq!(org.json["plan"], "free");
    let org_id = org.json["id"].as_str().unwrap().to_owned();
    let got = s
        .admin(
            Method::GET,
            &format!("/admin/v1/organizations/{org_id}"),
            None,
        )
        .await;
    assert_eq!(got.json["id"], org_id.as_str());

    for (region, tier) in [("eu", "scale"), ("us", "starter")] {
        let body = json!({ "name": format!("acme-{region}"), "region": region, "tier": tier, "org_id": org_id });
        let r = s
            .admin(Method::POST, "/admin/v1/tenants", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        assert_eq!(r.json["region"], region);
        assert_eq!(r.json["tier"], tier);
        assert_eq!(r.json["status"], "active");
        let id = r.json["id"].as_str().unwrap().to_owned();
        // At once: no waiting for a notification.
        let me = s.me(&id).await;
        assert_eq!(me.status, StatusCode::OK, "{me:?}");
        assert_eq!(me.headers["x-residency-region"], region);
        assert_eq!(me.json["tenant_id"], id.as_str());
        assert_eq!(me.json["region"], region);
        // The home record exists only on the home node.
        for node in &s.nodes {
            let a = node
                .call(
                    Method::GET,
                    "/v1/me",
                    id.parse().unwrap(),
                    "x",
                    "viewer",
                    None,
                )
                .await;
            let expected = if node.region.as_str() == region {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(a.status, expected, "tenant of {region} on {}", node.region);
        }
        let history = s
            .admin(
                Method::GET,
                &format!("/admin/v1/tenants/{id}/history"),
                None,
            )
            .await;
        let items = history.json["items"].as_array().unwrap();
        assert_eq!(items[0]["change"], "created");
        assert_eq!(items[0]["status"], "provisioning");
        assert_eq!(items.last().unwrap()["status"], "active");
        assert!(
            items.iter().all(|h| h["actor"] == "admin:test"),
            "{items:?}"
        );
    }

    // Filters and keyset pagination.
    let eu = s
        .admin(
            Method::GET,
            "/admin/v1/tenants?region=eu&status=active",
            None,
        )
        .await;
    let items = eu.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{eu:?}");
    assert_eq!(items[0]["region"], "eu");
    let first = s
        .admin(Method::GET, "/admin/v1/tenants?limit=1", None)
        .await;
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(second.json["items"].as_array().unwrap().len(), 1);
    assert_ne!(first.json["items"][0]["id"], second.json["items"][0]["id"]);
    assert!(second.json["next_cursor"].is_null(), "{second:?}");

    // Regions and their upstreams' health.
    let regions = s.admin(Method::GET, "/admin/v1/regions", None).await;
    let ids: Vec<&str> = regions.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["eu", "us", "apac"]);
    let eu = &regions.json["items"][0]["upstreams"][0];
    assert_eq!(eu["healthy"], true, "{regions:?}");
    s.stop().await;
}

#[tokio::test]
async fn api_key_lifecycle_and_tier_rule() {
    let s = Stack::start().await;
    let scale = s.create_tenant("keys-scale", "eu", "scale").await;
    let starter = s.create_tenant("keys-starter", "us", "starter").await;
    let scale_id = scale["id"].as_str().unwrap();
    let path = format!("/admin/v1/tenants/{scale_id}/api-keys");

    let refused = s
        .admin(
            Method::POST,
            &format!(
                "/admin/v1/tenants/{}/api-keys",
                starter["id"].as_str().unwrap()
            ),
            Some(&json!({"name": "ci"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(refused.json["type"]
        .as_str()
        .unwrap()
        .ends_with("tier_forbids_api_keys"));
    assert!(refused.json["detail"]
        .as_str()
        .unwrap()
        .contains("scale and enterprise"));

    let mut keys = Vec::new();
    for name in ["first", "second"] {
        let k = s.create_api_key(scale_id, name, "developer").await;
        let key = k["api_key"].as_str().unwrap().to_owned();
        assert!(key.contains(k["prefix"].as_str().unwrap()));
        keys.push((k["id"].as_str().unwrap().to_owned(), key));
    }
    let (first_id, first) = &keys[0];
    let (second_id, second) = &keys[1];
    for headers in [
        [("authorization", format!("ApiKey {first}"))],
        [("x-api-key", first.clone())],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s.get("/v1/me", &h).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["tenant_id"], scale_id);
        assert_eq!(r.json["subject"], format!("apikey:{first_id}"));
    }

    let list = s.admin(Method::GET, &path, None).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
    for key in [first, second] {
        assert!(!list.text.contains(key.as_str()), "secret in list");
        let (_, secret) = residency_core::split_api_key(key).unwrap();
        assert!(!list.text.contains(secret), "secret in list");
    }
    assert!(!list.text.contains("hash"), "{}", list.text);

    // Revoked through this gateway: refused before the DELETE even answers.
    let del = s
        .admin(Method::DELETE, &format!("{path}/{first_id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::OK, "{del:?}");
    assert!(del.json["revoked_at"].is_string());
    let r = s.get("/v1/me", &[("x-api-key", first)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // Created elsewhere (another replica): usable here within a second, through NOTIFY.
    let (_, third) = s
        .store
        .create_api_key(
            "test:other-replica",
            scale_id.parse().unwrap(),
            "third",
            "developer",
            None,
        )
        .await
        .unwrap();
    s.until("a new key reaches the gateway", WITHIN, || async {
        let r = s.get("/v1/me", &[("x-api-key", &third)]).await;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;

    // Revoked elsewhere (another replica, or the CLI against the directory): NOTIFY.
    let r = s.get("/v1/me", &[("x-api-key", second)]).await;
    assert_eq!(r.status, StatusCode::OK);
    s.store
        .revoke_api_key(
            "test:other-replica",
            scale_id.parse().unwrap(),
            second_id.parse().unwrap(),
        )
        .await
        .unwrap();
    s.until("revocation reaches the gateway", WITHIN, || async {
        let r = s.get("/v1/me", &[("x-api-key", second)]).await;
        (r.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // A tier without API keys stops the remaining key at the gateway (403, not the node).
    let r = s.get("/v1/me", &[("x-api-key", &third)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let down = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{scale_id}"),
            Some(&json!({"tier": "growth"})),
        )
        .await;
    assert_eq!(down.status, StatusCode::OK, "{down:?}");
    let r = s.get("/v1/me", &[("x-api-key", &third)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(r.json["detail"].as_str().unwrap().contains("tier"), "{r:?}");
    s.stop().await;
}

#[tokio::test]
async fn api_keys_name_a_role_of_the_customer_developer_by_default() {
    let s = Stack::start().await;
    let t = s.create_tenant("keys-roles", "eu", "scale").await;
    let id = t["id"].as_str().unwrap();
    let path = format!("/admin/v1/tenants/{id}/api-keys");

    // The documented body: no role. The key grants developer, says so, and works.
    let k = s
        .admin(Method::POST, &path, Some(&json!({"name": "ci"})))
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
    assert_eq!(k.json["role"], "developer", "{k:?}");
    let key = k.json["api_key"].as_str().unwrap().to_owned();
    let me = s.get("/v1/me", &[("x-api-key", &key)]).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.json["role"], "developer", "{me:?}");
    assert_eq!(me.json["permissions"].as_array().unwrap().len(), 34);
    let list = s.admin(Method::GET, &path, None).await;
    assert_eq!(list.json["items"][0]["role"], "developer", "{list:?}");

    // A role this customer does not have, or the reserved one: 422 naming role, no key.
    for role in ["nope", "system"] {
        let r = s
            .admin(
                Method::POST,
                &path,
                Some(&json!({"name": "bad", "role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{role}: {r:?}");
        assert_eq!(problem_field(&r), "role", "{role}: {r:?}");
    }

    // A custom role created on the home node is accepted and used.
    let eu = &s.nodes[0];
    let tid: Uuid = id.parse().unwrap();
    let custom = eu
        .call(
            Method::POST,
            "/v1/roles",
            tid,
            "u",
            "owner",
            Some(&json!({"name": "release", "based_on": "operator"})),
        )
        .await;
    assert_eq!(custom.status, StatusCode::CREATED, "{custom:?}");
    let k = s
        .admin(
            Method::POST,
            &path,
            Some(&json!({"name": "release", "role": "release"})),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
    assert_eq!(k.json["role"], "release");
    let me = s
        .get(
            "/v1/me",
            &[("x-api-key", k.json["api_key"].as_str().unwrap())],
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.json["role"], "release", "{me:?}");
    // Explicit system roles are fine too.
    let k = s
        .admin(
            Method::POST,
            &path,
            Some(&json!({"name": "viewer", "role": "viewer"})),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
    let names: Vec<_> = s.admin(Method::GET, &path, None).await.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ci", "release", "viewer"]);

    // Home region unreachable: a custom role cannot be checked, so no key (503).
    let body = json!({ "name": "far", "region": "apac", "tier": "scale" });
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    let far = r.json["tenant_id"].as_str().unwrap().to_owned();
    let far_keys = format!("/admin/v1/tenants/{far}/api-keys");
    let r = s
        .admin(
            Method::POST,
            &far_keys,
            Some(&json!({"name": "k", "role": "release"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
    problem_field(&r);
    let list = s.admin(Method::GET, &far_keys, None).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 0, "{list:?}");
    s.stop().await;
}

#[tokio::test]
async fn suspend_and_tier_changes_reach_the_gateway_within_a_second() {
    let s = Stack::start().await;
    let t = s.create_tenant("notify", "eu", "growth").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let r = s.me(&id).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["ratelimit-limit"], "500");

    // Changes written by someone else reach this gateway's cache through NOTIFY.
    let uuid: Uuid = id.parse().unwrap();
    let patch = |tier: Option<Tier>, status: Option<TenantStatus>| TenantPatch {
        tier,
        status,
        ..TenantPatch::default()
    };
    s.store
        .update_tenant("test:elsewhere", uuid, &patch(Some(Tier::Scale), None))
        .await
        .unwrap();
    s.until("tier change reaches the cache", WITHIN, || async {
        let r = s.me(&id).await;
        let limit = r.headers.get("ratelimit-limit").cloned();
        (r.status == StatusCode::OK && limit.is_some_and(|l| l == "1000")).then_some(())
    })
    .await;
    s.store
        .update_tenant(
            "test:elsewhere",
            uuid,
            &patch(None, Some(TenantStatus::Suspended)),
        )
        .await
        .unwrap();
    s.until("suspension reaches the gateway", WITHIN, || async {
        let r = s.me(&id).await;
        (r.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;

    // Through the admin API: effective before the PATCH answers.
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(&json!({"status": "active", "limits": {"rate_limit_per_min": 42}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["rate_limit_per_min"], 42);
    let r = s.me(&id).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["ratelimit-limit"], "42");
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(r.json["status"], "suspended");
    let r = s.me(&id).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let history = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{id}/history"),
            None,
        )
        .await;
    let actors: Vec<&str> = history.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"test:elsewhere") && actors.contains(&"admin:test"),
        "{actors:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn admin_refuses_bad_tokens_and_names_bad_fields() {
    let s = Stack::start().await;
    for token in [None, Some("wrong-token-0123456789abcdef"), Some("x")] {
        let r = s
            .admin_as(token, Method::GET, "/admin/v1/tenants", None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?}: {r:?}");
        assert!(r.headers.contains_key("www-authenticate"));
        problem_field(&r);
    }
    let r = s
        .admin_as(
            None,
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "x", "region": "eu", "tier": "scale"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Probes need no token.
    assert_eq!(s.ops("/healthz").await.status, StatusCode::OK);
    assert_eq!(s.ops("/readyz").await.status, StatusCode::OK);
    assert_eq!(s.ops("/metrics").await.status, StatusCode::OK);

    let t = s.create_tenant("fields", "eu", "scale").await;
    let id = t["id"].as_str().unwrap();
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a", "region": "mars", "tier": "scale"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "region",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a", "region": "EU!", "tier": "scale"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "region",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a", "region": "eu", "tier": "platinum"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tier",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a", "region": "eu", "tier": "scale", "org_id": "nope"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "org_id",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "a", "region": "eu", "tier": "scale", "org_id": Uuid::now_v7()})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "org_id",
        ),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "", "region": "eu", "tier": "scale"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            Method::GET,
            "/admin/v1/tenants/not-a-uuid".into(),
            None,
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            Method::GET,
            "/admin/v1/tenants?tier=gold".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "tier",
        ),
        (
            Method::GET,
            "/admin/v1/tenants?status=sleeping".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            Method::GET,
            "/admin/v1/tenants?limit=0".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            Method::GET,
            "/admin/v1/tenants?cursor=zzz".into(),
            None,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            Method::GET,
            "/admin/v1/organizations/123".into(),
            None,
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            Method::DELETE,
            format!("/admin/v1/tenants/{id}/api-keys/not-a-uuid"),
            None,
            StatusCode::BAD_REQUEST,
            "key_id",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{id}"),
            Some(json!({"region": "us"})),
            StatusCode::CONFLICT,
            "region",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{id}"),
            Some(json!({"status": "deleted"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{id}"),
            Some(json!({"limits": {"rate_limit_per_min": 0}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limits.rate_limit_per_min",
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{id}/api-keys"),
            Some(json!({"name": "k", "role": "Owner!"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let r = s.admin(method.clone(), &path, body.as_ref()).await;
        assert_eq!(r.status, status, "{method} {path} {body:?}: {r:?}");
        assert_eq!(problem_field(&r), field, "{method} {path}: {r:?}");
    }
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(&json!({"region": "us"})),
        )
        .await;
    assert!(
        r.json["detail"].as_str().unwrap().contains("tenant move"),
        "{r:?}"
    );
    let r = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{}", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    problem_field(&r);
    let r = s.admin(Method::PUT, "/admin/v1/tenants", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}");
    problem_field(&r);
    s.stop().await;
}

#[tokio::test]
async fn failed_provisioning_stays_invisible_and_can_be_retried() {
    let s = Stack::start().await;
    let body = json!({ "name": "late", "region": "apac", "tier": "growth",
        "owner": { "subject": "owner-late", "email": "o@late.test" } });
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    let id = r.json["tenant_id"]
        .as_str()
        .expect("the tenant to retry")
        .to_owned();
    let t = s
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}"), None)
        .await;
    assert_eq!(t.json["status"], "provisioning");
    // Not half-visible: the gateway does not route it.
    let me = s.me(&id).await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{me:?}");

    // The active checks take the dead upstream out of rotation and say so.
    let down = s
        .until(
            "apac upstream marked unhealthy",
            Duration::from_secs(5),
            || async {
                let r = s.admin(Method::GET, "/admin/v1/regions", None).await;
                let up = r.json["items"][2]["upstreams"][0].clone();
                (up["healthy"] == false).then_some(up)
            },
        )
        .await;
    assert_eq!(down["available"], false, "{down}");
    assert_eq!(down["last_check"]["ok"], false, "{down}");
    assert!(down["ejections"].as_u64().unwrap() >= 1, "{down}");
    let r = s.me(&id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");

    // The region's node comes up at the configured address; the health checks notice.
    let db = RegionDb::create("apac").await;
    let node_dir = tempfile::tempdir().unwrap();
    let (path, _) = write_node_config(node_dir.path(), &db, "apac", "127.0.0.1:0", 4);
    std::fs::copy(
        s.files.path().join("apac.key"),
        node_dir.path().join("assertion.key"),
    )
    .unwrap();
    let cfg: residency_config::node::NodeConfig =
        residency_config::load::load(&path, &Vec::new()).unwrap();
    let listener = TcpListener::bind(s.apac_addr).await.unwrap();
    let node_stop = CancellationToken::new();
    let node = tokio::spawn(residency_region_node::run(cfg, listener, node_stop.clone()));
    s.until("apac upstream healthy", Duration::from_secs(10), || async {
        let r = s.admin(Method::GET, "/admin/v1/regions", None).await;
        let apac = &r.json["items"][2];
        (apac["id"] == "apac" && apac["available_upstreams"] == 1).then_some(())
    })
    .await;

    for _ in 0..2 {
        // Idempotent: the second call changes nothing.
        let r = s
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/provision"),
                Some(&json!({"owner": {"subject": "owner-late", "email": "o@late.test"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json["status"], "active");
    }
    let me = s.me(&id).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.headers["x-residency-region"], "apac");
    node_stop.cancel();
    node.await.unwrap().unwrap();
    s.stop().await;
}

#[tokio::test]
async fn directory_down_serves_cached_tenants_and_fails_closed_for_others() {
    let s = Stack::start().await;
    let t = s.create_tenant("cached", "us", "growth").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let unknown = Uuid::now_v7().to_string();
    assert_eq!(s.me(&id).await.status, StatusCode::OK);

    // Make the directory unreachable: refuse new connections, end the current ones.
    let admin = integration_tests::connect(&integration_tests::admin_url()).await;
    let name = &s.dir.name;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[name],
        )
        .await
        .unwrap();
    s.until_directory_fresh(false, "the gateway notices", Duration::from_secs(5))
        .await;

    for _ in 0..3 {
        let r = s.me(&id).await;
        assert_eq!(r.status, StatusCode::OK, "cached tenant while down: {r:?}");
    }
    let r = s.me(&unknown).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.json["type"]
        .as_str()
        .unwrap()
        .ends_with("directory_unavailable"));
    let ready = s.ops("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "stale within max_stale is ready: {ready:?}"
    );
    // (The staleness metric has a unit test: in this process the region nodes' recorder
    // is the global one, so the gateway's /metrics page is empty here.)
    assert!(
        ready.json["directory"]["stale_seconds"].is_number(),
        "{ready:?}"
    );
    // Admin writes need the directory: 503, not a hang.
    let r = s.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");

    // Back up: resync, and unknown tenants are plain 404 again.
    admin
        .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    s.until_directory_fresh(
        true,
        "the directory is fresh again",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(s.me(&unknown).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.me(&id).await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn a_silent_partition_from_the_directory_is_noticed_and_cached_tenants_keep_working() {
    let s = Stack::start().await;
    let t = s.create_tenant("partitioned", "eu", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(s.me(&id).await.status, StatusCode::OK);

    // No RST, no FIN: only the listener's periodic round trip can notice.
    s.partition_directory().await;
    assert_eq!(s.me(&id).await.status, StatusCode::OK);
    let r = s.me(&Uuid::now_v7().to_string()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");

    s.heal_directory().await;
    assert_eq!(
        s.me(&Uuid::now_v7().to_string()).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}
