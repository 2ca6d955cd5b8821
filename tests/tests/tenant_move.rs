//! Live tenant moves between regions (issue 13) through a real gateway, a real Postgres
//! directory and real us and eu nodes on their own databases.
//!
//! - a tenant with rows in every customer table moves from us to eu: identical ids and
//!   contents answered by eu afterwards, credentials decrypt with eu's key, 0 rows left in us;
//! - while it is frozen, writes are refused (503 `tenant_moving` + `Retry-After`) and reads are
//!   served by the source;
//! - a verify mismatch (a target row corrupted while the move is held after the copy) rolls the
//!   move back: nothing left in the target, the tenant active and served by the source;
//! - refusals: unknown or same region (422 naming `to`), a second move (409), an unhealthy
//!   target (503), a dry run changes nothing.

use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, StackOptions};
use integration_tests::Response;
use serde_json::{json, Value};
use uuid::Uuid;

/// Every customer-scoped table of a region database.
const TABLES: [&str; 13] = [
    "tenants",
    "roles",
    "members",
    "ownership_transfers",
    "connections",
    "workflows",
    "executions",
    "execution_logs",
    "configurations",
    "webhook_subscriptions",
    "webhook_deliveries",
    "jobs",
    "audit_events",
];

/// A slow move on a loaded 2-core machine still finishes well within this; it bounds a hang,
/// it is not a speed claim.
const MOVE_DEADLINE: Duration = Duration::from_secs(60);

struct Customer<'s> {
    stack: &'s Stack,
    token: String,
}

impl Customer<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let auth = format!("Bearer {}", self.token);
        integration_tests::Http::default()
            .send(
                method,
                &format!("{}{path}", self.stack.public),
                &[("authorization", &auth)],
                body,
            )
            .await
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let r = self.call(method, path, Some(&body)).await;
        assert!(r.status.is_success(), "{path}: {r:?}");
        r.json
    }

    /// Rows in every customer table: a connection with credentials, a workflow using it, a
    /// run (execution and its log lines), a configuration, a member, an ownership offer to
    /// it, a custom role, and the audit events all of these leave.
    async fn seed(&self) {
        let c = self
            .ok(
                Method::POST,
                "/v1/connections",
                json!({"connector_id": "notion", "name": "crm", "credentials": {"token": "s3cret-token"}}),
            )
            .await;
        let w = self
            .ok(
                Method::POST,
                "/v1/workflows",
                json!({"name": "sync", "definition": {"steps": [{"id": "page", "type": "action", "action": "create_page", "input": {"title": "x"}}]}, "connection_id": c["id"]}),
            )
            .await;
        let wid = w["id"].as_str().unwrap();
        self.ok(
            Method::POST,
            &format!("/v1/workflows/{wid}/runs"),
            json!({"input": {"x": 1}}),
        )
        .await;
        self.ok(
            Method::PUT,
            "/v1/configurations/feature.flag",
            json!({"value": {"on": true}}),
        )
        .await;
        let m = self
            .ok(
                Method::POST,
                "/v1/members",
                json!({"subject": "m-1", "email": "m1@acme.test", "role": "viewer"}),
            )
            .await;
        self.ok(
            Method::POST,
            "/v1/ownership-transfers",
            json!({"to_member_id": m["id"]}),
        )
        .await;
        self.ok(
            Method::POST,
            "/v1/roles",
            json!({"name": "auditor-lite", "based_on": "viewer"}),
        )
        .await;
    }

    /// Waits until the webhook's delivery of `event` is `delivered`, answered by `region`.
    async fn until_delivered(&self, hook: &str, event: &str, region: &str) {
        self.stack
            .until(
                &format!("{event} delivered from {region}"),
                MOVE_DEADLINE,
                || async {
                    let r = self
                        .call(
                            Method::GET,
                            &format!("/v1/webhooks/{hook}/deliveries"),
                            None,
                        )
                        .await;
                    let here = r
                        .headers
                        .get("x-residency-region")
                        .is_some_and(|v| v == region);
                    (here
                        && r.json["items"].as_array().is_some_and(|items| {
                            items
                                .iter()
                                .any(|d| d["event_type"] == event && d["status"] == "delivered")
                        }))
                    .then_some(())
                },
            )
            .await;
    }

    /// What the customer sees: `/v1/me` without its region and every list, executions with
    /// their logs; and the region that answered.
    async fn snapshot(&self) -> (Value, String) {
        let me = self.call(Method::GET, "/v1/me", None).await;
        assert_eq!(me.status, StatusCode::OK, "{me:?}");
        let region = me.headers["x-residency-region"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut me = me.json;
        me.as_object_mut().unwrap().remove("region");
        let mut out = json!({ "me": me });
        for list in [
            "connections",
            "workflows",
            "executions",
            "configurations",
            "members",
            "ownership-transfers",
            "roles",
            "audit-events",
        ] {
            let r = self
                .call(Method::GET, &format!("/v1/{list}?limit=100"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{list}: {r:?}");
            assert_eq!(
                r.headers["x-residency-region"].to_str().unwrap(),
                region,
                "{list} answered by another region than /v1/me"
            );
            out[list] = r.json["items"].clone();
        }
        for e in out["executions"].as_array().unwrap().clone() {
            let id = e["id"].as_str().unwrap();
            let r = self
                .call(Method::GET, &format!("/v1/executions/{id}"), None)
                .await;
            out[format!("execution {id}")] = r.json;
        }
        (out, region)
    }
}

/// Rows of `tenant` per customer table in `region`'s database (as the superuser).
async fn rows_in(stack: &Stack, region: &str, tenant: &str) -> Vec<(String, i64)> {
    let db = integration_tests::connect(&stack.db(region).admin_db_url).await;
    let t: Uuid = tenant.parse().unwrap();
    let mut out = Vec::new();
    for table in TABLES {
        let n: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
                &[&t],
            )
            .await
            .unwrap()
            .get(0);
        out.push((table.to_owned(), n));
    }
    out
}

fn total(rows: &[(String, i64)]) -> i64 {
    rows.iter().map(|(_, n)| n).sum()
}

async fn move_tenant(stack: &Stack, tenant: &str, to: &str) -> Response {
    stack
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/move"),
            Some(&json!({ "to": to })),
        )
        .await
}

/// Polls the move until it is `done` or `rolled_back`; returns the record.
async fn until_settled(stack: &Stack, move_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + MOVE_DEADLINE;
    loop {
        let r = stack
            .admin(Method::GET, &format!("/admin/v1/moves/{move_id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        if matches!(r.json["phase"].as_str(), Some("done" | "rolled_back")) {
            return r.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the move did not settle: {:#}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_a_tenant_with_data_in_every_table_from_us_to_eu() {
    let stack = Stack::start_with(StackOptions {
        audit: true,
        ..StackOptions::default()
    })
    .await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let customer = Customer {
        stack: &stack,
        token: stack.idp.token(&id, "owner-acme", "owner"),
    };
    // A webhook subscription (its secret sealed with us's key) before the seed, so the seed's
    // member.added is delivered from us; tenant.moved is delivered from eu after the move.
    let receiver = integration_tests::webhook_receiver::Receiver::start(0, 200).await;
    let hook = customer
        .ok(
            Method::POST,
            "/v1/webhooks",
            json!({"url": receiver.url(), "events": ["member.added", "tenant.moved"]}),
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    customer.seed().await;
    customer
        .until_delivered(&hook_id, "member.added", "us")
        .await;
    // A queued job that no worker will take during the test (due tomorrow): no API leaves one
    // behind for long, and the move must carry it.
    integration_tests::connect(&stack.db("us").admin_db_url)
        .await
        .execute(
            "INSERT INTO jobs (tenant_id, id, kind, subject_id, run_at) \
             VALUES ($1, $2, 'execution', $2, now() + interval '1 day')",
            &[&id.parse::<Uuid>().unwrap(), &Uuid::new_v4()],
        )
        .await
        .unwrap();
    let (before, region) = customer.snapshot().await;
    assert_eq!(region, "us");
    let in_us = rows_in(&stack, "us", &id).await;
    assert!(
        in_us.iter().all(|(_, n)| *n > 0),
        "the seed leaves rows in every table: {in_us:?}"
    );

    let r = move_tenant(&stack, &id, "eu").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(
        (
            r.json["tenant_id"].as_str(),
            r.json["from"].as_str(),
            r.json["to"].as_str()
        ),
        (Some(id.as_str()), Some("us"), Some("eu"))
    );
    let move_id = r.json["move_id"].as_str().unwrap().to_owned();
    let record = until_settled(&stack, &move_id).await;
    assert_eq!(record["phase"], "done", "{record:#}");
    for t in record["tables"].as_array().unwrap() {
        assert_eq!(t["rows_total"], t["rows_copied"], "{t}");
        assert_eq!(t["checksum_source"], t["checksum_target"], "{t}");
    }
    for phase in [
        "planned",
        "frozen",
        "copying",
        "verifying",
        "flipped",
        "purging",
        "done",
    ] {
        assert!(
            record["phases"][phase].is_string(),
            "a timestamp for {phase}: {record:#}"
        );
    }

    // Routed to eu within a second of the flip (this gateway refreshed at once anyway).
    let (after, region) = stack
        .until(
            "eu answers for the tenant",
            Duration::from_secs(1),
            || async {
                let (snap, region) = customer.snapshot().await;
                (region == "eu").then_some((snap, region))
            },
        )
        .await;
    assert_eq!(region, "eu");
    let mut after = after;
    // The move itself is recorded in the target: one more audit event, `tenant.moved`.
    let events = after["audit-events"].as_array_mut().unwrap();
    let moved: Vec<Value> = events
        .iter()
        .filter(|e| e["action"] == "tenant.moved")
        .cloned()
        .collect();
    assert_eq!(moved.len(), 1, "{events:#?}");
    events.retain(|e| e["action"] != "tenant.moved");
    assert_eq!(before, after, "eu answers with identical ids and contents");

    // The subscription moved with the tenant: eu delivers tenant.moved, signed with the same
    // secret (re-sealed with eu's key), once.
    customer
        .until_delivered(&hook_id, "tenant.moved", "eu")
        .await;
    let moved_events: Vec<Value> = receiver
        .got()
        .iter()
        .filter(|r| r.event == "tenant.moved")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(moved_events.len(), 1, "{moved_events:?}");
    assert_eq!(
        (
            &moved_events[0]["data"]["from"],
            &moved_events[0]["data"]["to"]
        ),
        (&json!("us"), &json!("eu"))
    );
    assert_eq!(moved_events[0]["data"]["move_id"], move_id.as_str());

    // Nothing of it is left in us; eu holds what us held, plus the tenant.moved audit event
    // and its (delivered) webhook delivery.
    assert_eq!(total(&rows_in(&stack, "us", &id).await), 0);
    let in_eu = rows_in(&stack, "eu", &id).await;
    assert_eq!(total(&in_eu), total(&in_us) + 2, "{in_eu:?} vs {in_us:?}");

    // The credentials were re-encrypted with eu's key: they open with it, bound to the row.
    let eu_key = std::fs::read(stack.nodes[0].dir.path().join("credentials.key")).unwrap();
    assert_eq!(stack.nodes[0].region.as_str(), "eu");
    let db = integration_tests::connect(&stack.db("eu").admin_db_url).await;
    let row = db
        .query_one(
            "SELECT id, credentials FROM connections WHERE tenant_id = $1",
            &[&id.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap();
    let (conn, blob): (Uuid, Vec<u8>) = (row.get(0), row.get(1));
    let plain = open(&eu_key, id.parse().unwrap(), conn, &blob);
    assert_eq!(
        serde_json::from_slice::<Value>(&plain).unwrap(),
        json!({"token": "s3cret-token"})
    );

    // The directory routes it to eu, active, and its history names the actor of the flip.
    let t = stack
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}"), None)
        .await;
    assert_eq!(
        (t.json["region"].as_str(), t.json["status"].as_str()),
        (Some("eu"), Some("active"))
    );
    let h = stack
        .admin(
            Method::GET,
            &format!("/admin/v1/tenants/{id}/history"),
            None,
        )
        .await;
    assert!(
        h.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["region"] == "eu" && e["status"] == "active" && e["actor"] == "admin:test"),
        "{:#}",
        h.json
    );
    let listed = stack
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}/moves"), None)
        .await;
    assert_eq!(listed.json["items"][0]["move_id"], move_id.as_str());
    assert_audit_clean(&stack).await;
    drop(customer);
    stack.stop().await;
}

/// Opens an AES-256-GCM blob `nonce || sealed` bound to (tenant, connection).
fn open(key: &[u8], tenant: Uuid, connection: Uuid, blob: &[u8]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let mut aad = [0u8; 32];
    aad[..16].copy_from_slice(tenant.as_bytes());
    aad[16..].copy_from_slice(connection.as_bytes());
    let mut buf = sealed.to_vec();
    key.open_in_place(
        Nonce::try_assume_unique_for_key(nonce).unwrap(),
        Aad::from(aad),
        &mut buf,
    )
    .expect("the credentials open with the target region's key")
    .to_vec()
}

/// `GET /admin/v1/audit` finds nothing: placement and posture hold in every region.
async fn assert_audit_clean(stack: &Stack) {
    let r = stack.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json["violations"],
        json!([]),
        "{:#}",
        r.json["violations"]
    );
    assert_eq!(r.headers["x-audit-outcome"], "clean");
}

/// The kinds and regions of the audit's violations.
async fn audit_violations(stack: &Stack) -> Vec<(String, String)> {
    let r = stack.admin(Method::GET, "/admin/v1/audit", None).await;
    r.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["region"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn held() -> StackOptions {
    StackOptions {
        audit: true,
        move_hold_before_verify: true,
        ..StackOptions::default()
    }
}

/// Polls the move until it is `failed` with the test hook's "held" error.
async fn until_held(stack: &Stack, move_id: &str) -> Value {
    stack
        .until("the move is held after its copy", MOVE_DEADLINE, || async {
            let r = stack
                .admin(Method::GET, &format!("/admin/v1/moves/{move_id}"), None)
                .await;
            (r.json["phase"] == "failed").then_some(r.json)
        })
        .await
}

/// A system-free write and read straight at a node, as the gateway would send them.
async fn direct_write(stack: &Stack, region: &str, tenant: &str) -> Response {
    let node = stack
        .nodes
        .iter()
        .find(|n| n.region.as_str() == region)
        .unwrap();
    node.call(
        Method::PUT,
        "/v1/configurations/direct.write",
        tenant.parse().unwrap(),
        "owner-acme",
        "owner",
        Some(&json!({"value": 1})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_frozen_writes_are_refused_reads_served_and_a_verify_mismatch_rolls_back() {
    let stack = Stack::start_with(held()).await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let customer = Customer {
        stack: &stack,
        token: stack.idp.token(&id, "owner-acme", "owner"),
    };
    customer.seed().await;
    let (before, _) = customer.snapshot().await;
    let in_us = rows_in(&stack, "us", &id).await;

    let r = move_tenant(&stack, &id, "eu").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let move_id = r.json["move_id"].as_str().unwrap().to_owned();
    let held = until_held(&stack, &move_id).await;
    assert_eq!(held["failed_in"], "copying", "{held:#}");
    assert_eq!(
        rows_in(&stack, "eu", &id).await,
        in_us,
        "everything reached eu"
    );
    // A failed move explains nothing: its rows in eu are misplaced until it is resumed or
    // aborted.
    let v = audit_violations(&stack).await;
    assert!(
        !v.is_empty() && v.iter().all(|(k, r)| k == "misplaced_rows" && r == "eu"),
        "{v:?}"
    );

    // Frozen: reads are served by us, writes are refused with 503 tenant_moving.
    let (during, region) = customer.snapshot().await;
    assert_eq!((region.as_str(), &during), ("us", &before));
    let w = customer
        .call(
            Method::POST,
            "/v1/workflows",
            Some(&json!({"name": "late", "definition": {}})),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{w:?}");
    assert_eq!(w.json["type"], "urn:residency:problem:tenant_moving");
    assert!(w.headers.contains_key("retry-after"), "{w:?}");
    // A write reaching the source node without the gateway (a replica whose cache is behind)
    // is refused by the node itself: the tenant's transactions there are read-only.
    let d = direct_write(&stack, "us", &id).await;
    assert_eq!(d.status, StatusCode::SERVICE_UNAVAILABLE, "{d:?}");
    assert_eq!(d.json["type"], "urn:residency:problem:tenant_moving");

    // Corrupt one copied row in the target, then let the move verify.
    let eu = integration_tests::connect(&stack.db("eu").admin_db_url).await;
    let n = eu
        .execute(
            "UPDATE workflows SET description = 'tampered' WHERE tenant_id = $1",
            &[&id.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = stack
        .admin(
            Method::POST,
            &format!("/admin/v1/moves/{move_id}/resume"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = until_settled(&stack, &move_id).await;
    assert_eq!(record["phase"], "rolled_back", "{record:#}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("workflows"), "{error}");
    let wf = record["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "workflows")
        .unwrap();
    assert_ne!(wf["checksum_source"], wf["checksum_target"], "{wf}");

    // Nothing left in eu, everything still in us, served from us, writable again.
    assert_eq!(total(&rows_in(&stack, "eu", &id).await), 0);
    assert_eq!(rows_in(&stack, "us", &id).await, in_us);
    let (after, region) = customer.snapshot().await;
    assert_eq!((region.as_str(), &after), ("us", &before));
    let t = stack
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}"), None)
        .await;
    assert_eq!(
        (t.json["region"].as_str(), t.json["status"].as_str()),
        (Some("us"), Some("active"))
    );
    let d = direct_write(&stack, "us", &id).await;
    assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
    assert_audit_clean(&stack).await;
    customer
        .ok(
            Method::POST,
            "/v1/workflows",
            json!({"name": "after", "definition": {}}),
        )
        .await;
    drop(customer);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_dry_run_one_move_at_a_time_and_abort() {
    let stack = Stack::start_with(held()).await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/tenants/{id}/move");

    for (to, why) in [("mars", "not a configured region"), ("us", "already in us")] {
        let r = stack
            .admin(Method::POST, &path, Some(&json!({ "to": to })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
        assert_eq!(r.json["field"], "to", "{r:?}");
        assert!(r.json["detail"].as_str().unwrap().contains(why), "{r:?}");
    }
    // apac has no node: once its health check says so, a move there is 503 before anything.
    let r = stack
        .until(
            "a move to apac is refused",
            Duration::from_secs(10),
            || async {
                let r = stack
                    .admin(Method::POST, &path, Some(&json!({ "to": "apac" })))
                    .await;
                (r.status == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
            },
        )
        .await;
    assert!(r.json["detail"].as_str().unwrap().contains("apac"), "{r:?}");

    // A dry run answers the plan and changes nothing.
    let r = stack
        .admin(
            Method::POST,
            &path,
            Some(&json!({ "to": "eu", "dry_run": true })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let tables: Vec<&str> = r.json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, TABLES);
    assert!(r.json["rows_total"].as_i64().unwrap() >= 8, "{r:?}");
    assert!(r.json["estimated_bytes"].as_i64().unwrap() > 0, "{r:?}");
    let listed = stack
        .admin(Method::GET, &format!("/admin/v1/tenants/{id}/moves"), None)
        .await;
    assert_eq!(listed.json["items"], json!([]));
    assert_eq!(total(&rows_in(&stack, "eu", &id).await), 0);

    // Two concurrent requests: one starts, the other is 409 move_in_progress.
    let (a, b) = tokio::join!(
        move_tenant(&stack, &id, "eu"),
        move_tenant(&stack, &id, "eu")
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let (started, refused) = if a.status == StatusCode::ACCEPTED {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        refused.json["type"],
        "urn:residency:problem:move_in_progress"
    );
    let move_id = started.json["move_id"].as_str().unwrap().to_owned();
    until_held(&stack, &move_id).await;
    let again = move_tenant(&stack, &id, "eu").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert!(total(&rows_in(&stack, "eu", &id).await) > 0);

    // Abort: the target's rows are deleted, the tenant is active on us again.
    let r = stack
        .admin(
            Method::POST,
            &format!("/admin/v1/moves/{move_id}/abort"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = until_settled(&stack, &move_id).await;
    assert_eq!(record["phase"], "rolled_back", "{record:#}");
    assert!(
        record["error"].as_str().unwrap().contains("aborted"),
        "{record:#}"
    );
    assert_eq!(total(&rows_in(&stack, "eu", &id).await), 0);
    let me = stack.me(&id).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.headers["x-residency-region"], "us");
    let r = stack
        .admin(
            Method::POST,
            &format!("/admin/v1/moves/{move_id}/abort"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    // PATCH with a region points to the move endpoint.
    let r = stack
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(&json!({"region": "eu"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(
        r.json["detail"].as_str().unwrap().contains("/move"),
        "{r:?}"
    );
    stack.stop().await;
}

/// Adds `n` configurations and `n` audit events to `tenant` in `region`'s database directly
/// (as the superuser: bulk data without n API calls).
async fn bulk(stack: &Stack, region: &str, tenant: &str, n: i64) {
    let db = integration_tests::connect(&stack.db(region).admin_db_url).await;
    let t: Uuid = tenant.parse().unwrap();
    db.execute(
        "INSERT INTO configurations (tenant_id, key, value, updated_by) \
         SELECT $1, 'bulk.' || g, jsonb_build_object('n', g, 'text', repeat('x', 64)), 'bulk' \
         FROM generate_series(1, $2::bigint) g",
        &[&t, &n],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id, detail) \
         SELECT $1, gen_random_uuid(), 'bulk', 'bulk.insert', 'configuration', 'bulk.' || g, \
                jsonb_build_object('n', g) \
         FROM generate_series(1, $2::bigint) g",
        &[&t, &n],
    )
    .await
    .unwrap();
}

fn move_record_path(move_id: &str) -> String {
    format!("/admin/v1/moves/{move_id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_whose_driver_dies_mid_copy_is_resumed_to_identical_checksums() {
    let mut stack = Stack::start_with(StackOptions {
        audit: true,
        move_batch_rows: 10,
        ..StackOptions::default()
    })
    .await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    bulk(&stack, "us", &id, 1500).await;
    let in_us = rows_in(&stack, "us", &id).await;

    let r = move_tenant(&stack, &id, "eu").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let move_id = r.json["move_id"].as_str().unwrap().to_owned();
    // Stop the driving gateway once some, not all, rows are copied.
    let copied_then = stack
        .until("the copy is under way", MOVE_DEADLINE, || async {
            let r = stack
                .admin(Method::GET, &move_record_path(&move_id), None)
                .await;
            let copied: i64 = r.json["tables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["rows_copied"].as_i64().unwrap())
                .sum();
            (r.json["phase"] == "copying" && copied > 100).then_some(copied)
        })
        .await;
    stack.restart_gateway().await;
    let stopped = stack
        .admin(Method::GET, &move_record_path(&move_id), None)
        .await;
    assert_eq!(stopped.json["phase"], "copying", "{:#}", stopped.json);
    let copied_at_stop: i64 = stopped.json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows_copied"].as_i64().unwrap())
        .sum();
    assert!(
        copied_at_stop >= copied_then && copied_at_stop < total(&in_us),
        "stopped mid-copy: {copied_at_stop} of {}",
        total(&in_us)
    );
    // Rows in both regions while the record says copying are expected, not a violation.
    assert_audit_clean(&stack).await;
    // Nobody drives it now; the tenant stays frozen, its reads served by us.
    let me = stack.me(&id).await;
    assert_eq!(
        (
            me.status,
            me.headers["x-residency-region"].to_str().unwrap()
        ),
        (StatusCode::OK, "us")
    );

    let r = stack
        .until("resume is accepted", Duration::from_secs(15), || async {
            let r = stack
                .admin(
                    Method::POST,
                    &format!("/admin/v1/moves/{move_id}/resume"),
                    None,
                )
                .await;
            (r.status == StatusCode::ACCEPTED).then_some(r)
        })
        .await;
    assert_eq!(r.json["phase"], "copying");
    let record = until_settled(&stack, &move_id).await;
    assert_eq!(record["phase"], "done", "{record:#}");
    for (t, (_, n)) in record["tables"].as_array().unwrap().iter().zip(&in_us) {
        assert_eq!(t["checksum_source"], t["checksum_target"], "{t}");
        assert_eq!(t["rows_copied"].as_i64(), Some(*n), "{t}");
        assert!(
            t["checksum_source"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{n}:")),
            "{t}"
        );
    }
    assert_eq!(total(&rows_in(&stack, "us", &id).await), 0);
    assert_eq!(total(&rows_in(&stack, "eu", &id).await), total(&in_us) + 1);
    let me = stack.me(&id).await;
    assert_eq!(me.headers["x-residency-region"], "eu");
    assert_audit_clean(&stack).await;
    stack.stop().await;
}

#[derive(Debug)]
struct Sample {
    /// When the request was sent.
    sent: std::time::Instant,
    /// When its answer was complete.
    at: std::time::Instant,
    status: StatusCode,
    region: Option<String>,
    kind: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_read_load_no_read_fails_and_none_is_answered_by_the_wrong_region() {
    let stack = Stack::start_with(StackOptions {
        move_batch_rows: 100,
        ..StackOptions::default()
    })
    .await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    bulk(&stack, "us", &id, 3000).await;
    // The load is far over the scale tier's quota; a 429 would say nothing about the move.
    let r = stack
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(&json!({"limits": {"rate_limit_per_min": 1_000_000}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let token = format!("Bearer {}", stack.idp.token(&id, "owner-acme", "owner"));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = |method: Method, path: &'static str, body: Option<Value>| {
        let (public, token, stop) = (stack.public.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let http = integration_tests::Http::default();
            let mut out = Vec::new();
            while !stop.is_cancelled() {
                let sent = std::time::Instant::now();
                let r = http
                    .send(
                        method.clone(),
                        &format!("{public}{path}"),
                        &[("authorization", &token)],
                        body.as_ref(),
                    )
                    .await;
                out.push(Sample {
                    sent,
                    at: std::time::Instant::now(),
                    status: r.status,
                    region: r
                        .headers
                        .get("x-residency-region")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    kind: r.json["type"].as_str().map(str::to_owned),
                });
            }
            out
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| load(Method::GET, "/v1/configurations?limit=5", None))
        .collect();
    let writer = load(
        Method::PUT,
        "/v1/configurations/load.write",
        Some(json!({"value": 1})),
    );
    let started = std::time::Instant::now();
    let r = move_tenant(&stack, &id, "eu").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let move_id = r.json["move_id"].as_str().unwrap().to_owned();
    let record = until_settled(&stack, &move_id).await;
    let moved_in = started.elapsed();
    assert_eq!(record["phase"], "done", "{record:#}");
    // Writes landed between the plan and the freeze; the totals are counted again once frozen.
    for t in record["tables"].as_array().unwrap() {
        assert_eq!(t["rows_total"], t["rows_copied"], "{t}");
        assert_eq!(t["checksum_source"], t["checksum_target"], "{t}");
    }
    // Keep loading a little after the end, so post-move answers are in the samples.
    stack
        .until("reads answered by eu", Duration::from_secs(5), || async {
            let me = stack.me(&id).await;
            (me.headers["x-residency-region"] == "eu").then_some(())
        })
        .await;
    stop.cancel();
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap());
    }
    let writes = writer.await.unwrap();

    let failed: Vec<&Sample> = reads
        .iter()
        .filter(|s| s.status != StatusCode::OK)
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed reads, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Once eu has answered, no read sent after that is answered by us (reads sent earlier
    // may still finish at us: the three readers overlap).
    let first_eu = reads
        .iter()
        .filter(|s| s.region.as_deref() == Some("eu"))
        .map(|s| s.at)
        .min()
        .expect("some read answered by eu");
    let wrong: Vec<&Sample> = reads
        .iter()
        .filter(|s| s.sent > first_eu && s.region.as_deref() != Some("eu"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} reads from us after the flip, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // Writes are refused only with tenant_moving, in one window.
    let refused: Vec<&Sample> = writes.iter().filter(|s| !s.status.is_success()).collect();
    assert!(
        refused
            .iter()
            .all(|s| s.status == StatusCode::SERVICE_UNAVAILABLE
                && s.kind.as_deref() == Some("urn:residency:problem:tenant_moving")),
        "{:?}",
        refused
            .iter()
            .find(|s| s.status != StatusCode::SERVICE_UNAVAILABLE)
    );
    let (Some(first), Some(last)) = (refused.first(), refused.last()) else {
        panic!("no write was refused during the move");
    };
    let inside = writes
        .iter()
        .filter(|s| s.at > first.at && s.at < last.at && s.status.is_success())
        .count();
    assert_eq!(inside, 0, "a write succeeded inside the freeze window");
    assert!(
        writes.last().unwrap().status.is_success(),
        "writes work again after the move"
    );
    let rows = total(&rows_in(&stack, "eu", &id).await);
    println!(
        "MOVE UNDER LOAD: {rows} rows moved in {:.2}s; {} reads (0 failed, 0 from us after the first eu answer), \
         {} writes, {} refused; freeze window (first to last refused write) {:.0} ms",
        moved_in.as_secs_f64(),
        reads.len(),
        writes.len(),
        refused.len(),
        last.at.duration_since(first.at).as_secs_f64() * 1000.0,
    );
    stack.stop().await;
}

/// The README's figure: a tenant with 100,000 rows moved on this machine. A measurement, not
/// a check of speed: run it with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement: 100,000 rows"]
async fn measure_a_100k_row_move() {
    let stack = Stack::start_with(StackOptions {
        move_batch_rows: 5000,
        ..StackOptions::default()
    })
    .await;
    let t = stack.create_tenant("big", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    bulk(&stack, "us", &id, 50_000).await;
    let rows = total(&rows_in(&stack, "us", &id).await);
    let started = std::time::Instant::now();
    let r = move_tenant(&stack, &id, "eu").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record = until_settled(&stack, r.json["move_id"].as_str().unwrap()).await;
    let took = started.elapsed();
    assert_eq!(record["phase"], "done", "{record:#}");
    assert_eq!(total(&rows_in(&stack, "us", &id).await), 0);
    println!(
        "MOVE 100K: {rows} rows moved us -> eu in {:.2}s (batch 5000); phases {:#}",
        took.as_secs_f64(),
        record["phases"]
    );
    stack.stop().await;
}

fn residency(stack: &Stack, args: &[&str]) -> std::process::Output {
    std::process::Command::new(integration_tests::binary("residency"))
        .args(args)
        .env("RESIDENCY_ADMIN_URL", &stack.admin)
        .env(
            "RESIDENCY_ADMIN_TOKEN",
            integration_tests::gateway::ADMIN_TOKEN,
        )
        .env_remove("RUST_LOG")
        .output()
        .expect("run residency")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_plans_moves_and_reports() {
    let stack = Stack::start().await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();

    let plan = residency(&stack, &["tenants", "move", &id, "--to", "eu", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{plan:?}");
    assert!(
        text.contains("plan: tenant") && text.contains("audit_events"),
        "{text}"
    );

    let bad = residency(&stack, &["tenants", "move", &id, "--to", "mars"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("to: mars"),
        "{bad:?}"
    );
    let none = residency(&stack, &["tenants", "move", &id, "--resume"]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no move in flight"),
        "{none:?}"
    );

    let moved = residency(&stack, &["tenants", "move", &id, "--to", "eu", "--json"]);
    assert!(moved.status.success(), "{moved:?}");
    let record: Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!(
        (record["phase"].as_str(), record["to"].as_str()),
        (Some("done"), Some("eu"))
    );
    let people = residency(&stack, &["tenants", "move", &id, "--to", "us"]);
    assert!(people.status.success(), "{people:?}");
    let text = String::from_utf8_lossy(&people.stdout);
    assert!(
        text.contains("eu → us: done") && text.contains("yes"),
        "{text}"
    );
    let me = stack.me(&id).await;
    assert_eq!(me.headers["x-residency-region"], "us");
    stack.stop().await;
}

#[tokio::test]
async fn an_export_assertion_opens_the_export_only_and_only_of_a_frozen_tenant() {
    use integration_tests::{Node, NodeOptions, RegionDb};
    let db = RegionDb::create("us").await;
    let node = Node::start(&db, "us", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "acme").await;
    let export = json!({"table": "tenants", "limit": 10});
    let as_exporter = format!("system:move-export:{}", Uuid::new_v4());
    for (path, body) in [
        ("/internal/v1/moves/purge", json!({})),
        ("/internal/v1/moves/freeze", json!({"frozen": false})),
        ("/internal/v1/provision", json!({"name": "x"})),
    ] {
        let r = node
            .call(Method::POST, path, t, &as_exporter, "system", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {r:?}");
    }
    // The admin's own system assertion is not an export assertion.
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/export",
            t,
            "system:admin:test",
            "system",
            Some(&export),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // Nothing is exported from a tenant that may still be written.
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/export",
            t,
            &as_exporter,
            "system",
            Some(&export),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    // A purge refuses a tenant that is not frozen.
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/purge",
            t,
            "system:admin:test",
            "system",
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/freeze",
            t,
            "system:admin:test",
            "system",
            Some(&json!({"frozen": true})),
        )
        .await;
    assert_eq!(r.json["frozen"], true, "{r:?}");
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/export",
            t,
            &as_exporter,
            "system",
            Some(&export),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["rows"][0]["tenant_id"], t.to_string());
    // A customer assertion reaches none of it.
    let r = node
        .call(
            Method::POST,
            "/internal/v1/moves/plan",
            t,
            "owner",
            "owner",
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    node.stop().await;
}

/// A freeze written by another replica's admin reaches this gateway through NOTIFY: within a
/// second its writes are refused and its reads still served; a thaw undoes it as fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freeze_from_elsewhere_reaches_the_gateway_within_a_second() {
    use integration_tests::gateway::WITHIN;
    use residency_core::TenantStatus;
    use residency_directory::TenantPatch;
    let stack = Stack::start().await;
    let t = stack.create_tenant("acme", "us", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let customer = Customer {
        stack: &stack,
        token: stack.idp.token(&id, "owner-acme", "owner"),
    };
    let probe = json!({"value": 1});
    let write = || customer.call(Method::PUT, "/v1/configurations/freeze.probe", Some(&probe));
    assert!(write().await.status.is_success());
    let (moving, active) = (
        TenantPatch {
            status: Some(TenantStatus::Moving),
            ..TenantPatch::default()
        },
        TenantPatch {
            status: Some(TenantStatus::Active),
            ..TenantPatch::default()
        },
    );
    let tenant: Uuid = id.parse().unwrap();
    stack
        .store
        .update_tenant("admin:elsewhere", tenant, &moving)
        .await
        .unwrap();
    let refused = stack
        .until("writes are refused", WITHIN, || async {
            let r = write().await;
            (r.status == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
        })
        .await;
    assert_eq!(refused.json["type"], "urn:residency:problem:tenant_moving");
    assert_eq!(refused.headers["retry-after"], "2");
    let read = customer.call(Method::GET, "/v1/configurations", None).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.headers["x-residency-region"], "us");
    stack
        .store
        .update_tenant("admin:elsewhere", tenant, &active)
        .await
        .unwrap();
    stack
        .until("writes are accepted again", WITHIN, || async {
            write().await.status.is_success().then_some(())
        })
        .await;
    drop(customer);
    stack.stop().await;
}
