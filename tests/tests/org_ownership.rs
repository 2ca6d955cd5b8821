//! Organization ownership transfer (issue 17, item 3), end to end against real Postgres:
//! the organization's owner offers its ownership to an email; only the person with that
//! email (an identity-provider JWT of the organization carrying it) accepts or declines;
//! accepting makes them the owner of record and the previous owner's JWT an admin; offers
//! expire after 72 h (checked in SQL), one is open at a time, and the directory keeps the
//! trail.
//!
//! The attacks: an admin or a member offering (403), someone else accepting (403: another
//! person's JWT, an organization token, the platform admin), another organization's owner
//! (404), an expired offer (409 `offer_expired`), accepting twice (409), offering to
//! yourself (422).

use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, ADMIN_TOKEN};
use integration_tests::{connect, Response};
use serde_json::{json, Value};
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

fn jwt(s: &Stack, org: &str, sub: &str, role: &str) -> String {
    s.idp.token_with(
        sub,
        &json!({"org_id": org, "org_role": role, "email": format!("{sub}@acme.test")}),
    )
}

fn kind(r: &Response) -> &str {
    r.json["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:residency:problem:")
}

async fn call(s: &Stack, who: &str, method: Method, path: &str, body: Option<&Value>) -> Response {
    s.admin_as(Some(who), method, path, body).await
}

/// Runs `residency orgs ownership ARGS` with `token` as the admin token; returns (success,
/// stdout).
async fn cli(s: &Stack, token: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(integration_tests::binary("residency"))
        .args(["orgs", "ownership"])
        .args(args)
        .env("RESIDENCY_ADMIN_URL", &s.admin)
        .env("RESIDENCY_ADMIN_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run residency");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Whether `who` may do an owner-only thing (list the organization's tokens).
async fn is_owner(s: &Stack, who: &str, org: &str) -> bool {
    let r = call(
        s,
        who,
        Method::GET,
        &format!("/admin/v1/organizations/{org}/tokens"),
        None,
    )
    .await;
    match r.status {
        StatusCode::OK => true,
        StatusCode::FORBIDDEN => {
            assert_eq!(kind(&r), "org_owner_required", "{r:?}");
            false
        }
        _ => panic!("{r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_ownership_moves_only_by_offer_and_the_recipients_acceptance() {
    let s = Stack::start().await;
    let a = org(&s, "alpha").await;
    let b = org(&s, "bravo").await;
    let base = format!("/admin/v1/organizations/{a}/ownership-transfers");
    let alice = jwt(&s, &a, "alice", "owner");
    let carol = jwt(&s, &a, "carol", "admin");
    let bob = jwt(&s, &a, "bob", "member");
    let mallory = jwt(&s, &b, "mallory", "owner");
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/organizations/{a}/tokens"),
            Some(&json!({"name": "ci", "role": "owner"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let owner_token = r.json["secret"].as_str().unwrap().to_owned();

    // Only the owner offers; never to itself.
    let to_bob = json!({"to_email": "bob@acme.test"});
    for who in [&carol, &bob] {
        let r = call(&s, who, Method::POST, &base, Some(&to_bob)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    }
    let r = call(
        &s,
        &alice,
        Method::POST,
        &base,
        Some(&json!({"to_email": "Alice@acme.test"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = call(
        &s,
        &alice,
        Method::POST,
        &base,
        Some(&json!({"to_email": "nobody"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");

    // The offer: open for 72 hours; one at a time.
    let r = call(&s, &alice, Method::POST, &base, Some(&to_bob)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["status"], "open");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        at(&r.json["expires_at"]) - at(&r.json["created_at"]),
        chrono::Duration::hours(72)
    );
    let offer = r.json["id"].as_str().unwrap().to_owned();
    let r = call(
        &s,
        &alice,
        Method::POST,
        &base,
        Some(&json!({"to_email": "zed@acme.test"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let accept = format!("{base}/{offer}/accept");

    // Another organization's owner: 404, for the list and the offer.
    for (m, p) in [(Method::GET, base.clone()), (Method::POST, accept.clone())] {
        let r = call(&s, &mallory, m, &p, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    }
    // Someone else accepts: another person, an organization token, the platform admin.
    for who in [&carol, &alice, &owner_token] {
        let r = call(&s, who, Method::POST, &accept, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
        assert_eq!(kind(&r), "ownership_recipient_required", "{r:?}");
    }
    let r = s.admin(Method::POST, &accept, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(is_owner(&s, &alice, &a).await);
    assert!(!is_owner(&s, &bob, &a).await);

    // Bob accepts: he is the owner of record; Alice's JWT (still claiming owner) is an admin.
    let r = call(&s, &bob, Method::POST, &accept, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], "accepted");
    let o = s
        .admin(Method::GET, &format!("/admin/v1/organizations/{a}"), None)
        .await;
    assert_eq!(o.json["owner_email"], "bob@acme.test", "{o:?}");
    assert!(is_owner(&s, &bob, &a).await);
    assert!(!is_owner(&s, &alice, &a).await);
    let r = call(
        &s,
        &alice,
        Method::GET,
        &format!("/admin/v1/organizations/{a}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "alice is still an admin: {r:?}");
    let r = call(&s, &bob, Method::POST, &accept, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(kind(&r), "offer_closed", "{r:?}");

    // An expired offer (moved into the past in SQL) cannot be accepted.
    let r = call(
        &s,
        &bob,
        Method::POST,
        &base,
        Some(&json!({"to_email": "dave@acme.test"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let expired = r.json["id"].as_str().unwrap().to_owned();
    let admin = connect(&s.dir.url).await;
    let n = admin
        .execute(
            "UPDATE org_ownership_transfers SET created_at = now() - interval '73 hours', \
             expires_at = now() - interval '1 hour' WHERE id = $1",
            &[&Uuid::parse_str(&expired).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let dave = jwt(&s, &a, "dave", "member");
    let r = call(
        &s,
        &dave,
        Method::POST,
        &format!("{base}/{expired}/accept"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(kind(&r), "offer_expired", "{r:?}");
    assert!(!is_owner(&s, &dave, &a).await);
    assert!(is_owner(&s, &bob, &a).await);

    // A new offer after the expired one; the recipient declines. Another one is withdrawn by
    // the owner (an admin cannot).
    let r = call(
        &s,
        &bob,
        Method::POST,
        &base,
        Some(&json!({"to_email": "erin@acme.test"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let declined = r.json["id"].as_str().unwrap().to_owned();
    let erin = jwt(&s, &a, "erin", "member");
    let r = call(
        &s,
        &erin,
        Method::POST,
        &format!("{base}/{declined}/decline"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], "declined");
    let r = call(
        &s,
        &bob,
        Method::POST,
        &base,
        Some(&json!({"to_email": "frank@acme.test"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let withdrawn = r.json["id"].as_str().unwrap().to_owned();
    let r = call(
        &s,
        &alice,
        Method::DELETE,
        &format!("{base}/{withdrawn}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = call(
        &s,
        &bob,
        Method::DELETE,
        &format!("{base}/{withdrawn}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");

    let r = call(&s, &erin, Method::GET, &base, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let statuses: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "declined", "expired", "accepted"]);
    let events: Vec<String> = s
        .store
        .org_events(Uuid::parse_str(&a).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        events,
        [
            "ownership.offered",
            "ownership.accepted",
            "ownership.offered",
            "ownership.offered",
            "ownership.declined",
            "ownership.offered",
            "ownership.cancelled"
        ]
    );

    // The CLI: the owner offers and withdraws; the recipient's JWT accepts; an organization
    // token cannot.
    let (ok, text) = cli(
        &s,
        &bob,
        &["offer", &a, "--to-email", "gina@acme.test", "--json"],
    )
    .await;
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let gina_offer = v["id"].as_str().unwrap().to_owned();
    let (ok, text) = cli(&s, &owner_token, &["accept", &a, &gina_offer]).await;
    assert!(!ok, "{text}");
    assert!(text.contains("only the recipient"), "{text}");
    let gina = jwt(&s, &a, "gina", "member");
    let (ok, text) = cli(&s, &gina, &["accept", &a, &gina_offer]).await;
    assert!(ok, "{text}");
    assert!(text.contains("accepted"), "{text}");
    assert!(is_owner(&s, &gina, &a).await);
    let (ok, text) = cli(
        &s,
        &gina,
        &["offer", &a, "--to-email", "hal@acme.test", "--json"],
    )
    .await;
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let (ok, text) = cli(&s, &gina, &["cancel", &a, v["id"].as_str().unwrap()]).await;
    assert!(ok, "{text}");
    let (ok, text) = cli(&s, ADMIN_TOKEN, &["list", &a]).await;
    assert!(ok, "{text}");
    assert!(text.starts_with("ID"), "{text}");
    assert_eq!(text.lines().count(), 1 + 6, "{text}");
    s.stop().await;
}
