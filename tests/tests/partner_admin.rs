//! Organization-scoped administration (issue 17, item 1), end to end against real Postgres:
//! organization admin tokens confined to their organization (another organization's
//! objects answer 404 exactly like nonexistent ones, lists are filtered), platform-only
//! routes (403 `platform_admin_required`), role checks, and the escalation attacks: an org
//! admin minting an owner token, a member creating a key, a revoked token.

use http::{Method, StatusCode};
use integration_tests::gateway::Stack;
use integration_tests::Response;
use serde_json::{json, Value};
use uuid::Uuid;

fn unique(prefix: &str) -> String {
    format!("{prefix}{}.example.com", Uuid::new_v4().simple())
}

async fn org(s: &Stack, name: &str) -> String {
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/organizations",
            Some(&json!({"name": name, "domain": unique(name)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.json["id"].as_str().unwrap().to_owned()
}

async fn token(s: &Stack, as_token: Option<&str>, org: &str, role: &str) -> Response {
    let path = format!("/admin/v1/organizations/{org}/tokens");
    let body = json!({"name": format!("{role} token"), "role": role});
    match as_token {
        None => s.admin(Method::POST, &path, Some(&body)).await,
        Some(t) => s.admin_as(Some(t), Method::POST, &path, Some(&body)).await,
    }
}

async fn mint(s: &Stack, org: &str, role: &str) -> (String, String) {
    let r = token(s, None, org, role).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["role"], role);
    let secret = r.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rog_"), "{secret}");
    (secret, r.json["id"].as_str().unwrap().to_owned())
}

fn kind(r: &Response) -> &str {
    r.json["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:residency:problem:")
}

#[tokio::test]
async fn org_tokens_are_confined_to_their_organization_and_their_role() {
    let s = Stack::start().await;
    let a = org(&s, "alpha").await;
    let b = org(&s, "bravo").await;

    // Organization B's objects, made by the platform admin.
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "b-customer", "region": "eu", "tier": "scale", "org_id": b})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let bt = r.json["id"].as_str().unwrap().to_owned();
    let bkey = s.create_api_key(&bt, "b-key", "developer").await;
    let bkey = bkey["id"].as_str().unwrap().to_owned();
    let bhost = format!("b{}.example.net", Uuid::new_v4().simple());
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{bt}/domains"),
            Some(&json!({"hostname": bhost})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let (_b_owner, b_owner_id) = mint(&s, &b, "owner").await;

    let (a_owner, _) = mint(&s, &a, "owner").await;
    let (a_admin, a_admin_id) = mint(&s, &a, "admin").await;
    let (a_member, a_member_id) = mint(&s, &a, "member").await;

    // Org A's admin manages its own customers: created under A whatever the body says…
    let r = s
        .admin_as(
            Some(&a_admin),
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "a-customer", "region": "eu", "tier": "scale"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["org_id"], a.as_str());
    let at = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .admin_as(
            Some(&a_admin),
            Method::POST,
            &format!("/admin/v1/tenants/{at}/api-keys"),
            Some(&json!({"name": "a-key"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let history = s
        .admin_as(
            Some(&a_member),
            Method::GET,
            &format!("/admin/v1/tenants/{at}/history"),
            None,
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{history:?}");
    assert_eq!(
        history.json["items"][0]["actor"],
        format!("org:{a}:token:{a_admin_id}").as_str(),
        "{history:?}"
    );

    // …but never under another organization: 404 for that organization.
    let r = s
        .admin_as(
            Some(&a_admin),
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "sneaky", "region": "eu", "tier": "scale", "org_id": b})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // Every by-id route with org A's tokens against org B's objects: 404, the same answer
    // as for an object that does not exist.
    let ghost = Uuid::now_v7().to_string();
    let ghost_host = format!("g{}.example.net", Uuid::new_v4().simple());
    let patch = json!({"name": "renamed"});
    let key = json!({"name": "k"});
    let dom = json!({"hostname": format!("x{}.example.net", Uuid::new_v4().simple())});
    let tok = json!({"name": "t", "role": "member"});
    let routes: Vec<(Method, String, String, Option<&Value>)> = vec![
        (
            Method::GET,
            format!("/admin/v1/tenants/{bt}"),
            format!("/admin/v1/tenants/{ghost}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{bt}"),
            format!("/admin/v1/tenants/{ghost}"),
            Some(&patch),
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{bt}/provision"),
            format!("/admin/v1/tenants/{ghost}/provision"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/tenants/{bt}/history"),
            format!("/admin/v1/tenants/{ghost}/history"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/tenants/{bt}/api-keys"),
            format!("/admin/v1/tenants/{ghost}/api-keys"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{bt}/api-keys"),
            format!("/admin/v1/tenants/{ghost}/api-keys"),
            Some(&key),
        ),
        (
            Method::DELETE,
            format!("/admin/v1/tenants/{bt}/api-keys/{bkey}"),
            format!("/admin/v1/tenants/{ghost}/api-keys/{bkey}"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/tenants/{bt}/domains"),
            format!("/admin/v1/tenants/{ghost}/domains"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{bt}/domains"),
            format!("/admin/v1/tenants/{ghost}/domains"),
            Some(&dom),
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{bt}/domains/{bhost}/verify"),
            format!("/admin/v1/tenants/{ghost}/domains/{bhost}/verify"),
            None,
        ),
        (
            Method::DELETE,
            format!("/admin/v1/tenants/{bt}/domains/{bhost}"),
            format!("/admin/v1/tenants/{ghost}/domains/{bhost}"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/domains/{bhost}"),
            format!("/admin/v1/domains/{ghost_host}"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/organizations/{b}"),
            format!("/admin/v1/organizations/{ghost}"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/organizations/{b}/tokens"),
            format!("/admin/v1/organizations/{ghost}/tokens"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/organizations/{b}/tokens"),
            format!("/admin/v1/organizations/{ghost}/tokens"),
            Some(&tok),
        ),
        (
            Method::DELETE,
            format!("/admin/v1/organizations/{b}/tokens/{b_owner_id}"),
            format!("/admin/v1/organizations/{ghost}/tokens/{b_owner_id}"),
            None,
        ),
    ];
    for (method, theirs, missing, body) in &routes {
        // The owner reaches every organization-scoped route (tokens included).
        let r = s
            .admin_as(Some(&a_owner), method.clone(), theirs, *body)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {theirs}: {r:?}");
        let m = s
            .admin_as(Some(&a_owner), method.clone(), missing, *body)
            .await;
        assert_eq!(m.status, StatusCode::NOT_FOUND, "{method} {missing}: {m:?}");
        assert_eq!(
            (kind(&r), r.json["detail"].clone()),
            (kind(&m), m.json["detail"].clone()),
            "{method} {theirs}: another organization's object must look nonexistent"
        );
    }
    // B's objects are untouched.
    let t = s
        .admin(Method::GET, &format!("/admin/v1/tenants/{bt}"), None)
        .await;
    assert_eq!(t.json["name"], "b-customer");
    let keys = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{bt}/api-keys"),
            None,
        )
        .await;
    assert!(keys.json["items"][0]["revoked_at"].is_null(), "{keys:?}");
    let toks = s
        .admin(
            Method::GET,
            &format!("/admin/v1/organizations/{b}/tokens"),
            None,
        )
        .await;
    assert!(toks.json["items"][0]["revoked_at"].is_null(), "{toks:?}");

    // Lists are filtered to the caller's organization.
    let list = s
        .admin_as(Some(&a_member), Method::GET, "/admin/v1/tenants", None)
        .await;
    let ids: Vec<&str> = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [at.as_str()], "{list:?}");
    let list = s
        .admin_as(
            Some(&a_member),
            Method::GET,
            &format!("/admin/v1/tenants?org_id={b}"),
            None,
        )
        .await;
    assert_eq!(list.json["items"], json!([]), "{list:?}");
    let orgs = s
        .admin_as(
            Some(&a_member),
            Method::GET,
            "/admin/v1/organizations",
            None,
        )
        .await;
    let ids: Vec<&str> = orgs.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()], "{orgs:?}");
    let all = s.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(all.json["items"].as_array().unwrap().len(), 2, "{all:?}");

    // Platform-only routes: 403 platform_admin_required, even for an owner.
    let move_body = json!({"to": "us"});
    let org_body = json!({"name": "x", "domain": unique("x")});
    let note = json!({"note": "x"});
    let platform: Vec<(Method, String, Option<&Value>)> = vec![
        (
            Method::POST,
            "/admin/v1/organizations".into(),
            Some(&org_body),
        ),
        (Method::GET, "/admin/v1/regions".into(), None),
        (Method::GET, "/admin/v1/audit".into(), None),
        (
            Method::POST,
            format!("/admin/v1/tenants/{at}/move"),
            Some(&move_body),
        ),
        (Method::GET, format!("/admin/v1/tenants/{at}/moves"), None),
        (Method::GET, format!("/admin/v1/moves/{ghost}"), None),
        (
            Method::POST,
            format!("/admin/v1/moves/{ghost}/resume"),
            None,
        ),
        (Method::POST, format!("/admin/v1/moves/{ghost}/abort"), None),
        (Method::GET, "/admin/v1/signups".into(), None),
        (Method::GET, format!("/admin/v1/signups/{ghost}"), None),
        (
            Method::POST,
            format!("/admin/v1/signups/{ghost}/approve"),
            Some(&note),
        ),
        (
            Method::POST,
            format!("/admin/v1/signups/{ghost}/reject"),
            Some(&note),
        ),
    ];
    for (method, path, body) in &platform {
        let r = s
            .admin_as(Some(&a_owner), method.clone(), path, *body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {r:?}");
        assert_eq!(kind(&r), "platform_admin_required", "{method} {path}");
    }

    // Escalation: an org admin minting an owner token (or any token).
    let r = token(&s, Some(&a_admin), &a, "owner").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(kind(&r), "org_owner_required");
    let r = token(&s, Some(&a_admin), &a, "member").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // A member creating a key, changing a customer, creating a customer.
    let r = s
        .admin_as(
            Some(&a_member),
            Method::POST,
            &format!("/admin/v1/tenants/{at}/api-keys"),
            Some(&json!({"name": "nope"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(kind(&r), "org_admin_required");
    let r = s
        .admin_as(
            Some(&a_member),
            Method::PATCH,
            &format!("/admin/v1/tenants/{at}"),
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(kind(&r), "org_admin_required", "{r:?}");
    let keys = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{at}/api-keys"),
            None,
        )
        .await;
    assert_eq!(keys.json["items"].as_array().unwrap().len(), 1, "{keys:?}");
    // Commercial terms stay the platform's: an org admin cannot raise a tier or a limit.
    for (body, field) in [
        (json!({"tier": "enterprise"}), "tier"),
        (
            json!({"limits": {"rate_limit_per_min": 1_000_000}}),
            "limits",
        ),
    ] {
        let r = s
            .admin_as(
                Some(&a_admin),
                Method::PATCH,
                &format!("/admin/v1/tenants/{at}"),
                Some(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{field}: {r:?}");
        assert_eq!(kind(&r), "platform_admin_required", "{field}");
    }
    let r = s
        .admin_as(
            Some(&a_admin),
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "greedy", "region": "eu", "tier": "starter", "limits": {"rate_limit_per_min": 1_000_000}})),
        )
        .await;
    assert_eq!(kind(&r), "platform_admin_required", "{r:?}");
    let r = s
        .admin_as(
            Some(&a_admin),
            Method::PATCH,
            &format!("/admin/v1/tenants/{at}"),
            Some(&json!({"name": "a-renamed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["tier"], "scale");
    // The owner may mint up to its own role; lists never show a secret or a hash.
    let r = token(&s, Some(&a_owner), &a, "owner").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let list = s
        .admin_as(
            Some(&a_owner),
            Method::GET,
            &format!("/admin/v1/organizations/{a}/tokens"),
            None,
        )
        .await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 4, "{list:?}");
    assert!(
        !list.text.contains("rog_") && !list.text.contains("hash"),
        "{list:?}"
    );

    // A revoked token is refused at once: by the owner through this gateway…
    let r = s
        .admin_as(Some(&a_member), Method::GET, "/admin/v1/tenants", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .admin_as(
            Some(&a_owner),
            Method::DELETE,
            &format!("/admin/v1/organizations/{a}/tokens/{a_member_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.json["revoked_at"].is_string());
    let r = s
        .admin_as(Some(&a_member), Method::GET, "/admin/v1/tenants", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // …and by another replica writing the directory (no notification to wait for).
    s.store
        .revoke_org_token(
            "admin:elsewhere",
            a.parse().unwrap(),
            a_admin_id.parse().unwrap(),
        )
        .await
        .unwrap();
    let r = s
        .admin_as(Some(&a_admin), Method::GET, "/admin/v1/tenants", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // A forged token with a real prefix is refused too.
    let forged = format!("{}_{}", a_owner.rsplit_once('_').unwrap().0, "A".repeat(43));
    let r = s
        .admin_as(Some(&forged), Method::GET, "/admin/v1/tenants", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // A JWT from the identity provider with `org_id` + `org_role` is an organization
    // credential too, confined the same way.
    let jwt_admin = s
        .idp
        .token_with("partner-ops", &json!({"org_id": a, "org_role": "admin"}));
    let r = s
        .admin_as(
            Some(&jwt_admin),
            Method::GET,
            &format!("/admin/v1/tenants/{at}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = s
        .admin_as(
            Some(&jwt_admin),
            Method::GET,
            &format!("/admin/v1/tenants/{bt}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = s
        .admin_as(
            Some(&jwt_admin),
            Method::PATCH,
            &format!("/admin/v1/tenants/{at}"),
            Some(&json!({"name": "by-jwt"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let history = s
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{at}/history"),
            None,
        )
        .await;
    let last = history.json["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["actor"],
        format!("org:{a}:jwt:partner-ops").as_str(),
        "{last}"
    );
    let r = s
        .admin_as(Some(&jwt_admin), Method::GET, "/admin/v1/regions", None)
        .await;
    assert_eq!(kind(&r), "platform_admin_required", "{r:?}");
    let jwt_member = s
        .idp
        .token_with("viewer", &json!({"org_id": a, "org_role": "member"}));
    let r = s
        .admin_as(
            Some(&jwt_member),
            Method::POST,
            &format!("/admin/v1/tenants/{at}/api-keys"),
            Some(&json!({"name": "nope"})),
        )
        .await;
    assert_eq!(kind(&r), "org_admin_required", "{r:?}");
    // Refused: a customer's JWT (no organization claims), an unknown role, an organization
    // that does not exist.
    for bad in [
        s.idp.token(&at, "user-1", "owner"),
        s.idp
            .token_with("x", &json!({"org_id": a, "org_role": "superuser"})),
        s.idp.token_with(
            "x",
            &json!({"org_id": Uuid::now_v7().to_string(), "org_role": "owner"}),
        ),
    ] {
        let r = s
            .admin_as(Some(&bad), Method::GET, "/admin/v1/tenants", None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    }

    s.stop().await;
}

fn residency(s: &Stack, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(integration_tests::binary("residency"))
        .args(args)
        .env("RESIDENCY_ADMIN_URL", &s.admin)
        .env("RESIDENCY_ADMIN_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .expect("run residency")
}

fn cli_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn refused(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CLI takes an organization token exactly like the platform token, and says what a
/// 403 or a 404 means for it; `residency signups` submits on the public listener and runs
/// the review queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_with_an_org_token_and_runs_the_signup_queue() {
    let s = Stack::start_with(integration_tests::gateway::StackOptions {
        signup: Some("[signup]\nper_ip_per_min = 100\n"),
        ..Default::default()
    })
    .await;
    let platform = integration_tests::gateway::ADMIN_TOKEN;
    let a = org(&s, "cli-a").await;
    let b = org(&s, "cli-b").await;
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(&json!({"name": "b-only", "region": "eu", "tier": "starter", "org_id": b})),
        )
        .await;
    let bt = r.json["id"].as_str().unwrap().to_owned();

    let created = cli_json(&residency(
        &s,
        platform,
        &[
            "orgs", "tokens", "create", &a, "--name", "ci", "--role", "admin", "--json",
        ],
    ));
    let a_admin = created["secret"].as_str().unwrap().to_owned();
    let listed = residency(&s, platform, &["orgs", "tokens", "list", &a]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("admin"),
        "{listed:?}"
    );

    let t = cli_json(&residency(
        &s,
        &a_admin,
        &[
            "tenants", "create", "--name", "a-cli", "--region", "eu", "--tier", "starter", "--json",
        ],
    ));
    assert_eq!(t["org_id"], a.as_str());
    let err = refused(&residency(&s, &a_admin, &["tenants", "get", &bt]));
    assert!(
        err.contains("404") && err.contains("sees only its own organization"),
        "{err}"
    );
    let err = refused(&residency(
        &s,
        &a_admin,
        &["orgs", "create", "--name", "x", "--domain", &unique("x")],
    ));
    assert!(
        err.contains("403") && err.contains("platform admin"),
        "{err}"
    );
    let err = refused(&residency(
        &s,
        &a_admin,
        &[
            "orgs", "tokens", "create", &a, "--name", "up", "--role", "owner",
        ],
    ));
    assert!(
        err.contains("403") && err.contains("role is too low"),
        "{err}"
    );

    // Signups: submitted on the public listener without any token, reviewed by the platform.
    let d = format!("zz{}.com", Uuid::new_v4().simple());
    let submitted = cli_json(&residency(
        &s,
        platform,
        &[
            "signups",
            "submit",
            "--public-url",
            &s.public,
            "--email",
            &format!("kim@{d}"),
            "--company",
            "Qwv",
            "--website",
            &d,
            "--json",
        ],
    ));
    assert_eq!(submitted["status"], "manual_review", "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_owned();
    let queue = residency(
        &s,
        platform,
        &["signups", "list", "--status", "manual_review"],
    );
    assert!(
        String::from_utf8_lossy(&queue.stdout).contains(&id),
        "{queue:?}"
    );
    let err = refused(&residency(&s, &a_admin, &["signups", "list"]));
    assert!(err.contains("platform admin"), "{err}");
    let approved = cli_json(&residency(
        &s,
        platform,
        &[
            "signups",
            "approve",
            &id,
            "--note",
            "verified by phone",
            "--json",
        ],
    ));
    assert_eq!(approved["status"], "approved");
    assert!(approved["org_id"].is_string(), "{approved}");

    s.stop().await;
}
