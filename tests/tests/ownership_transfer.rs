//! Ownership transfer of a customer (issue 17, item 3), against a real node and Postgres:
//! the owner offers ownership to a member or to an email (a member who joins later with it
//! can accept), the offer expires 72 h after it was made (checked in SQL at accept time),
//! only the recipient accepts or declines, only the offerer cancels, one open offer per
//! customer, and accepting swaps the roles in one transaction with audit events for both.
//!
//! The attacks: a non-owner offering (403), someone else accepting (403) or another
//! customer's owner (404), accepting an expired offer (410, nothing changes), accepting twice
//! (409), offering to yourself (422).

use http::{Method, StatusCode};
use integration_tests::{connect, Node, NodeOptions, RegionDb, Response};
use serde_json::{json, Value};
use uuid::Uuid;

const PATH: &str = "/v1/ownership-transfers";

struct Fixture {
    node: Node,
    db: RegionDb,
    t: Uuid,
    other: Uuid,
}

impl Fixture {
    async fn start() -> Self {
        let db = RegionDb::create("eu").await;
        let node = Node::start(&db, "eu", NodeOptions::default()).await;
        let t = Uuid::new_v4();
        node.provision(t, "handover").await;
        let other = Uuid::new_v4();
        node.provision(other, "elsewhere").await;
        Self { node, db, t, other }
    }

    /// A call as `subject`, whose role comes from its member record (no role claim).
    async fn as_member(
        &self,
        subject: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        self.node
            .call(method, path, self.t, subject, "", body)
            .await
    }

    fn owner_subject(&self) -> String {
        format!("owner-{}", self.t)
    }

    /// Adds a member (as the current `owner`) and returns its id.
    async fn member(&self, owner: &str, subject: &str, email: &str, role: &str) -> String {
        let r = self
            .as_member(
                owner,
                Method::POST,
                "/v1/members",
                Some(&json!({"subject": subject, "email": email, "role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json["id"].as_str().unwrap().to_owned()
    }

    async fn role_of(&self, subject: &str) -> String {
        let r = self.as_member(subject, Method::GET, "/v1/me", None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r.json["role"].as_str().unwrap().to_owned()
    }

    async fn my_member_id(&self, subject: &str) -> String {
        let r = self
            .as_member(subject, Method::GET, "/v1/members?limit=500", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subject"] == subject)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn actions(&self, subject: &str) -> Vec<String> {
        let r = self
            .as_member(subject, Method::GET, "/v1/audit-events?limit=500", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .filter(|a| a.starts_with("ownership."))
            .collect()
    }
}

fn status(r: &Response, want: StatusCode, what: &str) {
    assert_eq!(r.status, want, "{what}: {r:?}");
    if !want.is_success() {
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{what}: {r:?}"
        );
    }
}

#[tokio::test]
async fn ownership_moves_only_by_the_owners_offer_and_the_recipients_acceptance() {
    let f = Fixture::start().await;
    let owner = f.owner_subject();
    let owner_id = f.my_member_id(&owner).await;
    let bob = f.member(&owner, "bob", "bob@acme.test", "developer").await;
    let _carol = f.member(&owner, "carol", "carol@acme.test", "viewer").await;

    // A non-owner offers: 403, even an admin.
    let _ada = f.member(&owner, "ada", "ada@acme.test", "admin").await;
    for who in ["bob", "ada"] {
        let r = f
            .as_member(who, Method::POST, PATH, Some(&json!({"to_member_id": bob})))
            .await;
        status(&r, StatusCode::FORBIDDEN, &format!("{who} offers"));
    }
    // Offering to yourself, to nobody, or to both: 422 naming the field.
    for (body, field) in [
        (json!({"to_member_id": owner_id}), "to_member_id"),
        (json!({"to_email": "owner@handover.test"}), "to_email"),
        (json!({}), "to_member_id"),
        (
            json!({"to_member_id": bob, "to_email": "x@acme.test"}),
            "to_member_id",
        ),
        (json!({"to_member_id": Uuid::now_v7()}), "to_member_id"),
        (json!({"to_email": "not-an-email"}), "to_email"),
    ] {
        let r = f.as_member(&owner, Method::POST, PATH, Some(&body)).await;
        status(&r, StatusCode::UNPROCESSABLE_ENTITY, &body.to_string());
        assert!(
            r.json["detail"].as_str().unwrap().starts_with(field),
            "{body}: {r:?}"
        );
    }

    // The owner offers to bob: open, expiring 72 h after the offer; one open offer only.
    let r = f
        .as_member(
            &owner,
            Method::POST,
            PATH,
            Some(&json!({"to_member_id": bob})),
        )
        .await;
    status(&r, StatusCode::CREATED, "offer");
    let offer = r.json.clone();
    assert_eq!(offer["status"], "open");
    assert_eq!(offer["to_member_id"], bob.as_str());
    assert_eq!(offer["from_member_id"], owner_id.as_str());
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        at(&offer["expires_at"]) - at(&offer["created_at"]),
        chrono::Duration::hours(72)
    );
    let id = offer["id"].as_str().unwrap().to_owned();
    let r = f
        .as_member(
            &owner,
            Method::POST,
            PATH,
            Some(&json!({"to_email": "zed@acme.test"})),
        )
        .await;
    status(&r, StatusCode::CONFLICT, "a second open offer");
    let r = f.as_member("bob", Method::GET, PATH, None).await;
    status(&r, StatusCode::OK, "the recipient lists offers");
    assert_eq!(r.json["items"][0]["id"], id.as_str(), "{r:?}");

    // Someone else accepts or declines: 403; another customer's owner: 404 (the offer does
    // not exist there); the offerer cannot accept its own offer either.
    let accept = format!("{PATH}/{id}/accept");
    let decline = format!("{PATH}/{id}/decline");
    for (who, path) in [
        ("carol", &accept),
        ("carol", &decline),
        (owner.as_str(), &accept),
    ] {
        let r = f.as_member(who, Method::POST, path, None).await;
        status(&r, StatusCode::FORBIDDEN, &format!("{who} on {path}"));
    }
    let r = f
        .node
        .call(
            Method::POST,
            &accept,
            f.other,
            &format!("owner-{}", f.other),
            "",
            None,
        )
        .await;
    status(
        &r,
        StatusCode::NOT_FOUND,
        "another customer's owner accepts",
    );
    // Bob cannot cancel the owner's offer.
    let r = f
        .as_member("bob", Method::DELETE, &format!("{PATH}/{id}"), None)
        .await;
    status(&r, StatusCode::FORBIDDEN, "the recipient cancels");
    assert_eq!(f.role_of(&owner).await, "owner");
    assert_eq!(f.role_of("bob").await, "developer");

    // Bob accepts: the roles swap; a second acceptance is refused.
    let r = f.as_member("bob", Method::POST, &accept, None).await;
    status(&r, StatusCode::OK, "bob accepts");
    assert_eq!(r.json["status"], "accepted");
    assert_eq!(f.role_of("bob").await, "owner");
    assert_eq!(f.role_of(&owner).await, "developer");
    let r = f.as_member("bob", Method::POST, &accept, None).await;
    status(&r, StatusCode::CONFLICT, "accepting twice");
    assert_eq!(
        f.actions("bob").await,
        [
            "ownership.relinquished",
            "ownership.accepted",
            "ownership.offered"
        ]
    );

    // An offer to an email nobody has yet; the member who joins with it later may accept,
    // unless the offer has expired (moved into the past directly in SQL).
    let r = f
        .as_member(
            "bob",
            Method::POST,
            PATH,
            Some(&json!({"to_email": "Dave@Acme.test"})),
        )
        .await;
    status(&r, StatusCode::CREATED, "offer by email");
    let expired = r.json["id"].as_str().unwrap().to_owned();
    f.member("bob", "dave", "dave@acme.test", "viewer").await;
    let admin = connect(&f.db.admin_db_url).await;
    let moved = admin
        .execute(
            "UPDATE ownership_transfers SET created_at = now() - interval '73 hours', \
             expires_at = now() - interval '1 hour' WHERE id = $1",
            &[&Uuid::parse_str(&expired).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let r = f
        .as_member(
            "dave",
            Method::POST,
            &format!("{PATH}/{expired}/accept"),
            None,
        )
        .await;
    status(&r, StatusCode::GONE, "accepting an expired offer");
    assert_eq!(f.role_of("dave").await, "viewer");
    assert_eq!(f.role_of("bob").await, "owner");
    let r = f.as_member("bob", Method::GET, PATH, None).await;
    assert_eq!(r.json["items"][0]["status"], "expired", "{r:?}");

    // An expired offer does not block a new one; this one the late joiner accepts.
    let r = f
        .as_member(
            "bob",
            Method::POST,
            PATH,
            Some(&json!({"to_email": "erin@acme.test"})),
        )
        .await;
    status(&r, StatusCode::CREATED, "a new offer after expiry");
    let to_erin = r.json["id"].as_str().unwrap().to_owned();
    f.member("bob", "erin", "erin@acme.test", "operator").await;
    let r = f
        .as_member(
            "dave",
            Method::POST,
            &format!("{PATH}/{to_erin}/accept"),
            None,
        )
        .await;
    status(
        &r,
        StatusCode::FORBIDDEN,
        "another member accepts an email offer",
    );
    let r = f
        .as_member(
            "erin",
            Method::POST,
            &format!("{PATH}/{to_erin}/accept"),
            None,
        )
        .await;
    status(&r, StatusCode::OK, "the late joiner accepts");
    assert_eq!(f.role_of("erin").await, "owner");
    assert_eq!(f.role_of("bob").await, "operator");

    // Decline (recipient only) and cancel (offerer only).
    let r = f
        .as_member(
            "erin",
            Method::POST,
            PATH,
            Some(&json!({"to_member_id": bob})),
        )
        .await;
    status(&r, StatusCode::CREATED, "offer to decline");
    let d = r.json["id"].as_str().unwrap().to_owned();
    let r = f
        .as_member("bob", Method::POST, &format!("{PATH}/{d}/decline"), None)
        .await;
    status(&r, StatusCode::OK, "bob declines");
    assert_eq!(r.json["status"], "declined");
    let r = f
        .as_member("bob", Method::POST, &format!("{PATH}/{d}/accept"), None)
        .await;
    status(&r, StatusCode::CONFLICT, "accepting a declined offer");
    let r = f
        .as_member(
            "erin",
            Method::POST,
            PATH,
            Some(&json!({"to_member_id": bob})),
        )
        .await;
    status(&r, StatusCode::CREATED, "offer to cancel");
    let c = r.json["id"].as_str().unwrap().to_owned();
    let r = f
        .as_member("erin", Method::DELETE, &format!("{PATH}/{c}"), None)
        .await;
    status(&r, StatusCode::NO_CONTENT, "the offerer cancels");
    let r = f
        .as_member("bob", Method::POST, &format!("{PATH}/{c}/accept"), None)
        .await;
    status(&r, StatusCode::CONFLICT, "accepting a cancelled offer");
    assert_eq!(f.role_of("erin").await, "owner");
    assert_eq!(f.role_of("bob").await, "operator");
    let actions = f.actions("erin").await;
    for a in ["ownership.declined", "ownership.cancelled"] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}
