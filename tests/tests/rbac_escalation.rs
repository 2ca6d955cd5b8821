//! Privilege escalation through roles: a caller may create or edit a role, or assign a role to
//! a member, only when its permissions are a subset of the caller's own; nobody changes their
//! own role; only an owner grants `owner`; the last owner stays protected.
//!
//! The matrix iterates every system role as the caller, against every system role it does not
//! cover (read from the node, not hard-coded), every permission it lacks, and its own member
//! record; a custom role with a narrow permission set is checked the same way.

use std::collections::{BTreeMap, BTreeSet};

use http::{Method, StatusCode};
use integration_tests::{Node, NodeOptions, RegionDb, Response};
use serde_json::{json, Value};
use uuid::Uuid;

type Perms = BTreeSet<String>;

/// A 403 problem+json body; `what` names the case in failure messages.
fn forbidden(r: &Response, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {r:?}");
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{what}: {r:?}"
    );
    assert_eq!(r.json["status"], 403, "{what}: {r:?}");
    assert!(r.json["detail"].is_string(), "{what}: {r:?}");
}

fn ok(r: &Response, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
}

fn perms_of(v: &Value) -> Perms {
    v["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

struct Fixture {
    node: Node,
    t: Uuid,
    _db: RegionDb,
}

impl Fixture {
    async fn start() -> Self {
        let db = RegionDb::create("eu").await;
        let node = Node::start(&db, "eu", NodeOptions::default()).await;
        let t = Uuid::new_v4();
        node.provision(t, "escalation").await;
        Self { node, t, _db: db }
    }

    /// A call with a role claim.
    async fn call(
        &self,
        method: Method,
        path: &str,
        subject: &str,
        role: &str,
        body: Option<&Value>,
    ) -> Response {
        self.node
            .call(method, path, self.t, subject, role, body)
            .await
    }

    /// A call as the provisioned owner.
    async fn owner(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        self.call(method, path, "root", "owner", body).await
    }

    /// Adds a member (as the owner) and returns its id.
    async fn member(&self, subject: &str, role: &str) -> String {
        let r = self
            .owner(
                Method::POST,
                "/v1/members",
                Some(&json!({"subject": subject, "email": format!("{subject}@acme.test"), "role": role})),
            )
            .await;
        ok(
            &r,
            StatusCode::CREATED,
            &format!("member {subject} as {role}"),
        );
        r.json["id"].as_str().unwrap().to_owned()
    }

    async fn member_role(&self, id: &str) -> String {
        let r = self
            .owner(Method::GET, &format!("/v1/members/{id}"), None)
            .await;
        ok(&r, StatusCode::OK, "member read");
        r.json["role"].as_str().unwrap().to_owned()
    }

    /// Every role by name, as the node stores it.
    async fn roles(&self) -> BTreeMap<String, Value> {
        let r = self.owner(Method::GET, "/v1/roles?limit=200", None).await;
        ok(&r, StatusCode::OK, "roles list");
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v.clone()))
            .collect()
    }

    /// Creates a role as the owner and returns its id; `body["name"]` names the case.
    async fn owner_role(&self, body: &Value) -> String {
        let r = self.owner(Method::POST, "/v1/roles", Some(body)).await;
        ok(&r, StatusCode::CREATED, body["name"].as_str().unwrap());
        r.json["id"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/roles` as `subject` with the role claim `role`.
    async fn create_role(&self, subject: &str, role: &str, body: &Value) -> Response {
        self.call(Method::POST, "/v1/roles", subject, role, Some(body))
            .await
    }

    /// `PATCH /v1/members/{id}` to role `to`, as `subject` with the role claim `role`.
    async fn set_role(&self, subject: &str, role: &str, id: &str, to: &str) -> Response {
        self.call(
            Method::PATCH,
            &format!("/v1/members/{id}"),
            subject,
            role,
            Some(&json!({ "role": to })),
        )
        .await
    }

    /// Creating the role `body` as `subject` (claim `role`) is refused and leaves no role.
    async fn create_role_refused(&self, subject: &str, role: &str, body: &Value, what: &str) {
        forbidden(&self.create_role(subject, role, body).await, what);
        let name = body["name"].as_str().unwrap();
        assert!(
            !self.roles().await.contains_key(name),
            "{what}: role exists"
        );
    }

    /// Setting member `id`'s role to `to` as `subject` (claim `role`) is refused and the
    /// member keeps the role `kept`.
    async fn set_role_refused(
        &self,
        subject: &str,
        role: &str,
        id: &str,
        to: &str,
        kept: &str,
        what: &str,
    ) {
        forbidden(&self.set_role(subject, role, id, to).await, what);
        assert_eq!(self.member_role(id).await, kept, "{what}");
    }
}

/// The refusals a caller holding `role` (whose permissions are `mine`) must get. `me` is its
/// member record, `target` another member it could otherwise change.
async fn refusals(
    f: &Fixture,
    role: &str,
    mine: &Perms,
    system: &BTreeMap<String, Perms>,
    me: &str,
    target: &str,
) {
    let subject = format!("caller-{role}");
    let target_before = f.member_role(target).await;
    // "Higher" roles: every system role whose permissions this caller does not hold, and owner
    // for everyone but an owner.
    let higher: Vec<&String> = system
        .iter()
        .filter(|(name, perms)| {
            name.as_str() != role
                && (!perms.is_subset(mine) || (*name == "owner" && role != "owner"))
        })
        .map(|(name, _)| name)
        .collect();
    if role != "owner" {
        assert!(higher.iter().any(|h| *h == "owner"), "{role}: {higher:?}");
    }
    for h in &higher {
        let name = format!("esc-{}-{h}", role.replace('_', "-")).replace('_', "-");
        f.create_role_refused(
            &subject,
            role,
            &json!({"name": name, "based_on": h}),
            &format!("{role} creates a role based on {h}"),
        )
        .await;

        let what = format!("{role} assigns {h} to another member");
        f.set_role_refused(&subject, role, target, h, &target_before, &what)
            .await;

        let what = format!("{role} creates a member with {h}");
        let r = f
            .call(
                Method::POST,
                "/v1/members",
                &subject,
                role,
                Some(&json!({"subject": format!("new-{role}-{h}"), "email": "n@acme.test", "role": h})),
            )
            .await;
        forbidden(&r, &what);

        let what = format!("{role} promotes itself to {h}");
        f.set_role_refused(&subject, role, me, h, role, &what).await;
        // The same through the member record (no role claim).
        let what = format!("{what} (member record)");
        f.set_role_refused(&subject, "", me, h, role, &what).await;
    }
    // Every permission the caller lacks, added to a copy of its own role (or of a role it
    // covers).
    let base = system
        .iter()
        .find(|(_, p)| p.is_subset(mine))
        .map(|(n, _)| n.clone());
    for p in crate_permissions(system).difference(mine) {
        let Some(base) = &base else { break };
        f.create_role_refused(
            &subject,
            role,
            &json!({"name": "esc-add", "based_on": base, "add": [p]}),
            &format!("{role} adds {p} to a copy of {base}"),
        )
        .await;
    }
    // Nobody changes their own role, not even downwards.
    for lower in system.keys().filter(|n| n.as_str() != role) {
        let what = format!("{role} changes its own role to {lower}");
        f.set_role_refused(&subject, role, me, lower, role, &what)
            .await;
    }
}

/// The union of every system role's permissions: the catalogue.
fn crate_permissions(system: &BTreeMap<String, Perms>) -> Perms {
    system.values().flatten().cloned().collect()
}

#[tokio::test]
async fn no_system_role_can_grant_more_than_it_holds() {
    let f = Fixture::start().await;
    let roles = f.roles().await;
    let system: BTreeMap<String, Perms> = roles
        .iter()
        .filter(|(_, v)| v["system"] == true)
        .map(|(n, v)| (n.clone(), perms_of(v)))
        .collect();
    assert_eq!(system.len(), 6, "{system:?}");
    assert_eq!(crate_permissions(&system).len(), 39);
    let target = f.member("target", "viewer").await;
    for (role, mine) in &system {
        let me = f.member(&format!("caller-{role}"), role).await;
        refusals(&f, role, mine, &system, &me, &target).await;
    }

    // Allowed: admin copies developer, developer copies viewer, developer assigns a role it
    // covers to another member, admin assigns admin, owner promotes another member to owner.
    let r = f
        .create_role(
            "caller-admin",
            "admin",
            &json!({"name": "dev-copy", "based_on": "developer"}),
        )
        .await;
    ok(&r, StatusCode::CREATED, "admin copies developer");
    let r = f
        .create_role(
            "caller-developer",
            "developer",
            &json!({"name": "viewer-copy", "based_on": "viewer", "add": ["webhooks.read"]}),
        )
        .await;
    ok(&r, StatusCode::CREATED, "developer copies viewer");
    let r = f
        .set_role("caller-developer", "developer", &target, "operator")
        .await;
    ok(&r, StatusCode::OK, "developer assigns operator");
    assert_eq!(r.json["role"], "operator");
    let r = f.set_role("caller-admin", "admin", &target, "admin").await;
    ok(&r, StatusCode::OK, "admin assigns admin");
    let r = f.set_role("caller-owner", "owner", &target, "owner").await;
    ok(&r, StatusCode::OK, "owner promotes another member to owner");
    assert_eq!(r.json["role"], "owner");
    // A member may still edit its own display name.
    let me = f.member("self-edit", "developer").await;
    let r = f
        .call(
            Method::PATCH,
            &format!("/v1/members/{me}"),
            "self-edit",
            "",
            Some(&json!({"display_name": "Me"})),
        )
        .await;
    ok(&r, StatusCode::OK, "own display name");
    // Developer cannot demote an admin (a member it could not have made).
    let admin = f.member("an-admin", "admin").await;
    f.set_role_refused(
        "caller-developer",
        "developer",
        &admin,
        "viewer",
        "admin",
        "developer demotes an admin",
    )
    .await;
}

#[tokio::test]
async fn custom_roles_are_checked_against_the_callers_actual_permissions() {
    let f = Fixture::start().await;
    // A narrow delegate: viewer plus role and member management.
    let delegate_id = f
        .owner_role(&json!({"name": "delegate", "based_on": "viewer",
            "add": ["roles.read", "roles.create", "roles.update", "members.read", "members.create", "members.update"]}))
        .await;
    let wide_id = f
        .owner_role(&json!({"name": "wide", "based_on": "developer"}))
        .await;
    let held_id = f
        .owner_role(&json!({"name": "held", "based_on": "viewer"}))
        .await;
    let holder = f.member("holder", "held").await;
    let me = f.member("del", "delegate").await;

    let call = |method: Method, path: String, body: Value| {
        let f = &f;
        async move { f.call(method, &path, "del", "delegate", Some(&body)).await }
    };
    // Creating a role beyond its own set.
    forbidden(
        &call(
            Method::POST,
            "/v1/roles".into(),
            json!({"name": "x1", "based_on": "developer"}),
        )
        .await,
        "delegate copies developer",
    );
    forbidden(
        &call(
            Method::POST,
            "/v1/roles".into(),
            json!({"name": "x2", "based_on": "viewer", "add": ["workflows.create"]}),
        )
        .await,
        "delegate adds workflows.create",
    );
    // Editing a role it could not create, even harmlessly.
    forbidden(
        &call(
            Method::PATCH,
            format!("/v1/roles/{wide_id}"),
            json!({"description": "mine now"}),
        )
        .await,
        "delegate edits a developer copy",
    );
    // Editing a held role (or its own) to add what it lacks.
    forbidden(
        &call(
            Method::PATCH,
            format!("/v1/roles/{held_id}"),
            json!({"add": ["billing.read"]}),
        )
        .await,
        "delegate widens a held role",
    );
    forbidden(
        &call(
            Method::PATCH,
            format!("/v1/roles/{delegate_id}"),
            json!({"add": ["members.delete"]}),
        )
        .await,
        "delegate widens its own role",
    );
    let roles = f.roles().await;
    assert!(!roles.contains_key("x1") && !roles.contains_key("x2"));
    assert!(!perms_of(&roles["held"]).contains("billing.read"));
    assert!(!perms_of(&roles["delegate"]).contains("members.delete"));
    assert_eq!(roles["wide"]["description"], "");
    // Assigning a role it does not cover.
    f.set_role_refused(
        "del",
        "delegate",
        &holder,
        "wide",
        "held",
        "delegate assigns a developer copy",
    )
    .await;
    forbidden(
        &call(
            Method::POST,
            "/v1/members".into(),
            json!({"subject": "n", "email": "n@acme.test", "role": "operator"}),
        )
        .await,
        "delegate creates an operator",
    );
    f.set_role_refused(
        "del",
        "delegate",
        &me,
        "held",
        "delegate",
        "delegate changes its own role",
    )
    .await;

    // Allowed: within its own set.
    let r = call(
        Method::POST,
        "/v1/roles".into(),
        json!({"name": "sub", "based_on": "viewer", "add": ["members.read"]}),
    )
    .await;
    ok(&r, StatusCode::CREATED, "delegate creates a subset role");
    let r = call(
        Method::PATCH,
        format!("/v1/roles/{held_id}"),
        json!({"add": ["roles.read"]}),
    )
    .await;
    ok(
        &r,
        StatusCode::OK,
        "delegate widens a held role within its set",
    );
    let r = call(
        Method::PATCH,
        format!("/v1/members/{holder}"),
        json!({"role": "sub"}),
    )
    .await;
    ok(&r, StatusCode::OK, "delegate assigns a subset role");
    assert_eq!(r.json["role"], "sub");
    let r = call(
        Method::POST,
        "/v1/members".into(),
        json!({"subject": "v", "email": "v@acme.test", "role": "viewer"}),
    )
    .await;
    ok(&r, StatusCode::CREATED, "delegate creates a viewer");

    // Removing is not a grant, but a role may only remove members it could have made.
    f.owner_role(&json!({"name": "remover", "based_on": "viewer", "add": ["members.read", "members.delete"]}))
        .await;
    let admin = f.member("an-admin", "admin").await;
    let viewer = f.member("a-viewer", "viewer").await;
    let r = f
        .call(
            Method::DELETE,
            &format!("/v1/members/{admin}"),
            "rem",
            "remover",
            None,
        )
        .await;
    forbidden(&r, "remover removes an admin");
    assert_eq!(f.member_role(&admin).await, "admin");
    let r = f
        .call(
            Method::DELETE,
            &format!("/v1/members/{viewer}"),
            "rem",
            "remover",
            None,
        )
        .await;
    ok(&r, StatusCode::NO_CONTENT, "remover removes a viewer");
}

#[tokio::test]
async fn the_last_owner_cannot_demote_themselves() {
    let f = Fixture::start().await;
    let owner_subject = format!("owner-{}", f.t);
    let members = f.owner(Method::GET, "/v1/members", None).await;
    let id = members.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == owner_subject.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = f.set_role(&owner_subject, "", &id, "admin").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(f.member_role(&id).await, "owner");
}
