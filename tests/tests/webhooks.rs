//! Customer webhooks (`/v1/webhooks`) against real node processes and a real region database:
//! SSRF refusals at create and update, isolation between tenants, permissions, and deliveries
//! to a local receiver (hyper `service_fn` on port 0) with the signature checked from the
//! secret, retries after 500s, dead letters, the delivery log, and secrets kept out of every
//! later answer and out of the node's logs.

use std::process::Stdio;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{Method, StatusCode};
use integration_tests::process::{until, Logs, NodeProcess};
use integration_tests::webhook_receiver::{Received, Receiver};
use integration_tests::{Http, RegionDb, Response};
use residency_core::assertion::now_secs;
use residency_core::TenantId;
use serde_json::{json, Value};
use uuid::Uuid;

/// Checks `Residency-Signature: t=<t>,v1=<hex>` over `<t>.<body>` with `secret`.
fn verify(secret: &str, r: &Received) {
    let (t, v1) = r
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature {:?}", r.signature));
    let t: i64 = t.parse().unwrap();
    assert!((t - i64::try_from(now_secs()).unwrap()).abs() < 600, "{t}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(&r.body);
    hmac::verify(&key, &msg, &unhex(v1)).expect("the signature verifies");
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Fixture {
    node: NodeProcess,
    logs: Logs,
    db: RegionDb,
    http: Http,
}

impl Fixture {
    /// A node with fast retries (config, not sleeps) and `private` targets allowed or not;
    /// plain http is allowed (the receiver is a local http server).
    async fn start(private: bool, max_attempts: u32) -> Self {
        let db = RegionDb::create("eu").await;
        let private = private.to_string();
        let attempts = max_attempts.to_string();
        let mut node = NodeProcess::spawn(
            &db,
            "eu",
            "debug",
            Stdio::piped,
            &[
                ("RESIDENCY__WEBHOOKS__ALLOW_HTTP", "true"),
                ("RESIDENCY__WEBHOOKS__ALLOW_PRIVATE_TARGETS", &private),
                ("RESIDENCY__WEBHOOKS__MAX_ATTEMPTS", &attempts),
                ("RESIDENCY__WEBHOOKS__BACKOFF_BASE", "20ms"),
                ("RESIDENCY__WEBHOOKS__BACKOFF_CAP", "100ms"),
                ("RESIDENCY__WEBHOOKS__POLL_INTERVAL", "50ms"),
                ("RESIDENCY__WEBHOOKS__ATTEMPT_TIMEOUT", "5s"),
            ],
        );
        let logs = Logs::default();
        let child = node.child.as_mut().unwrap();
        logs.collect(child.stdout.take().unwrap());
        logs.collect(child.stderr.take().unwrap());
        node.until_ready().await;
        Self {
            node,
            logs,
            db,
            http: Http::default(),
        }
    }

    async fn provision(&self, name: &str) -> Uuid {
        let t = Uuid::new_v4();
        let a = self
            .node
            .signer()
            .mint_system(TenantId::from_uuid(t), "test", now_secs())
            .unwrap()
            .0;
        let r = self
            .http
            .send(
                Method::POST,
                &format!("{}/internal/v1/provision", self.node.base()),
                &[("x-residency-assertion", &a)],
                Some(&json!({"name": name, "owner": {"subject": format!("owner-{t}"), "email": format!("o@{name}.test")}})),
            )
            .await;
        assert!(r.status.is_success(), "{r:?}");
        t
    }

    async fn call_as(
        &self,
        tenant: Uuid,
        role: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let a = self
            .node
            .signer()
            .mint(
                TenantId::from_uuid(tenant),
                &format!("user-{role}"),
                role,
                now_secs(),
            )
            .unwrap()
            .0;
        self.http
            .send(
                method,
                &format!("{}{path}", self.node.base()),
                &[("x-residency-assertion", &a)],
                body,
            )
            .await
    }

    async fn call(
        &self,
        tenant: Uuid,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        self.call_as(tenant, "owner", method, path, body).await
    }

    async fn create(&self, tenant: Uuid, url: &str, events: &[&str]) -> Response {
        self.call(
            tenant,
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": url, "events": events, "description": "test"})),
        )
        .await
    }

    /// The subscription's deliveries once `done` holds for them.
    async fn deliveries_until(
        &self,
        tenant: Uuid,
        hook: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        until(what, Duration::from_secs(30), || async {
            let r = self
                .call(
                    tenant,
                    Method::GET,
                    &format!("/v1/webhooks/{hook}/deliveries"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            let items = r.json["items"].as_array().unwrap().clone();
            done(&items).then_some(items)
        })
        .await
    }
}

fn assert_refused_naming_url(r: &Response, what: &str) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {r:?}");
    assert_eq!(r.json["field"], "url", "{what}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_loopback_and_link_local_targets_are_refused() {
    let f = Fixture::start(false, 3).await;
    let t = f.provision("acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
        "http://100.64.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let r = f.create(t, url, &["ping"]).await;
        assert_refused_naming_url(&r, url);
    }
    let r = f.create(t, "ftp://example.com/hook", &["ping"]).await;
    assert_refused_naming_url(&r, "ftp");
    let r = f.create(t, "https://u:p@example.com/hook", &["ping"]).await;
    assert_refused_naming_url(&r, "credentials in the url");
    let r = f
        .create(t, "https://example.com/hook", &["no.such.event"])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.json["field"], "events[0]", "{r:?}");
    let list = f.call(t, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.json["items"], json!([]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_webhook_is_404_and_read_only_roles_cannot_write() {
    let f = Fixture::start(true, 3).await;
    let (a, b) = (f.provision("alpha").await, f.provision("beta").await);
    let receiver = Receiver::start(0, 200).await;
    let created = f.create(a, &receiver.url(), &["member.added"]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.json["id"].as_str().unwrap().to_owned();

    let one = format!("/v1/webhooks/{id}");
    for (method, path, body) in [
        (Method::GET, one.clone(), None),
        (Method::PATCH, one.clone(), Some(json!({"enabled": false}))),
        (Method::GET, format!("{one}/deliveries"), None),
        (Method::POST, format!("{one}/ping"), None),
        (Method::DELETE, one.clone(), None),
    ] {
        let r = f.call(b, method.clone(), &path, body.as_ref()).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path} as B: {r:?}"
        );
    }
    let listed = f.call(b, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed.json["items"], json!([]), "{listed:?}");
    // Still A's, unchanged.
    let r = f.call(a, Method::GET, &one, None).await;
    assert_eq!(
        (r.status, &r.json["enabled"]),
        (StatusCode::OK, &json!(true)),
        "{r:?}"
    );

    // `operator` holds webhooks.read but not webhooks.manage.
    let r = f.call_as(a, "operator", Method::GET, &one, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = f
        .call_as(
            a,
            "operator",
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": receiver.url(), "events": ["ping"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    for (method, path) in [
        (Method::PATCH, one.clone()),
        (Method::POST, format!("{one}/ping")),
        (Method::DELETE, one.clone()),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"enabled": false}));
        let r = f
            .call_as(a, "operator", method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {r:?}");
    }
    // `viewer` may not even read them.
    let r = f
        .call_as(a, "viewer", Method::GET, "/v1/webhooks", None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_after_500s_and_logged_and_the_secret_never_reappears() {
    let f = Fixture::start(true, 5).await;
    let t = f.provision("acme").await;
    let receiver = Receiver::start(2, 204).await;
    let events = [
        "member.added",
        "member.removed",
        "connection.created",
        "connection.deleted",
    ];
    let created = f.create(t, &receiver.url(), &events).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let id = created.json["id"].as_str().unwrap().to_owned();
    // An audit event for the create, without the secret.
    let audit = f
        .call(
            t,
            Method::GET,
            "/v1/audit-events?action=webhook.create",
            None,
        )
        .await;
    assert_eq!(
        audit.json["items"].as_array().map(Vec::len),
        Some(1),
        "{audit:?}"
    );

    // A write that rolls back emits nothing: an invalid member.
    let r = f
        .call(
            t,
            Method::POST,
            "/v1/members",
            Some(&json!({"subject": "x", "email": "x@y.test", "role": "nope"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");

    let member = f
        .call(
            t,
            Method::POST,
            "/v1/members",
            Some(&json!({"subject": "ann", "email": "ann@acme.test", "role": "viewer"})),
        )
        .await;
    assert_eq!(member.status, StatusCode::CREATED, "{member:?}");
    let member_id = member.json["id"].as_str().unwrap().to_owned();
    let r = f
        .call(t, Method::DELETE, &format!("/v1/members/{member_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let conn = f
        .call(
            t,
            Method::POST,
            "/v1/connections",
            Some(&json!({"connector_id": "notion", "name": "n", "credentials": {"k": "v"}})),
        )
        .await;
    assert_eq!(conn.status, StatusCode::CREATED, "{conn:?}");
    let conn_id = conn.json["id"].as_str().unwrap().to_owned();
    let r = f
        .call(
            t,
            Method::DELETE,
            &format!("/v1/connections/{conn_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");

    let log = f
        .deliveries_until(t, &id, "four deliveries delivered", |items| {
            items.len() == 4 && items.iter().all(|d| d["status"] == "delivered")
        })
        .await;
    for d in &log {
        assert_eq!(d["attempts"], 3, "two 500s, then a 204: {d:#}");
        assert_eq!(d["last_status_code"], 204, "{d:#}");
        let codes: Vec<&Value> = d["attempt_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["status_code"])
            .collect();
        assert_eq!(codes, [&json!(500), &json!(500), &json!(204)], "{d:#}");
        assert_eq!(
            d["attempt_log"][0]["error"], "the receiver answered 500",
            "{d:#}"
        );
        assert_eq!(d["webhook_id"], id.as_str());
    }
    // The log is keyset-paginated, newest first.
    let first = f
        .call(
            t,
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?limit=3"),
            None,
        )
        .await;
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    let second = f
        .call(
            t,
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?limit=3&cursor={cursor}"),
            None,
        )
        .await;
    let paged: Vec<&Value> = first.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.json["items"].as_array().unwrap())
        .map(|d| &d["id"])
        .collect();
    assert_eq!(paged, log.iter().map(|d| &d["id"]).collect::<Vec<_>>());
    assert_eq!(second.json["next_cursor"], Value::Null);
    let ids: Vec<&str> = paged.iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let mut types: Vec<&str> = log
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    let mut want = events.to_vec();
    want.sort_unstable();
    assert_eq!(types, want);

    // What the receiver got: 12 signed requests, the same delivery id and body per retry.
    let got = receiver.got();
    assert_eq!(got.len(), 12, "{got:?}");
    for r in &got {
        verify(&secret, r);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], r.event.as_str());
        assert_eq!(body["tenant_id"], t.to_string());
        assert!(
            log.iter()
                .any(|d| d["id"] == r.delivery.as_str() && d["event_id"] == body["id"]),
            "{body}"
        );
        match r.event.as_str() {
            "member.added" | "member.removed" => {
                assert_eq!(body["data"]["id"], member_id.as_str(), "{body}")
            }
            _ => assert_eq!(body["data"]["id"], conn_id.as_str(), "{body}"),
        }
    }
    // A forged signature does not verify.
    let mut forged = got[0].clone();
    forged.body = Bytes::from_static(b"{\"type\":\"ping\"}");
    assert!(std::panic::catch_unwind(|| verify(&secret, &forged)).is_err());

    // The secret never again: not in any answer, not in the node's logs.
    for path in [
        format!("/v1/webhooks/{id}"),
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{id}/deliveries"),
        "/v1/audit-events".to_owned(),
    ] {
        let r = f.call(t, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(
            !r.text.contains(&secret) && !r.text.contains("whsec_"),
            "{path}: {}",
            r.text
        );
    }
    let r = f
        .call(
            t,
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&json!({"description": "changed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(!r.text.contains("whsec_"), "{}", r.text);
    let ping = f
        .call(t, Method::POST, &format!("/v1/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{ping:?}");
    assert!(!ping.text.contains("whsec_"), "{}", ping.text);
    f.deliveries_until(t, &id, "the ping delivered", |items| {
        items
            .iter()
            .any(|d| d["event_type"] == "ping" && d["status"] == "delivered")
    })
    .await;
    let lines = f.logs.lines();
    assert!(
        lines.iter().any(|l| l.contains("webhook attempt")),
        "debug logs were captured"
    );
    let secret_hex = secret.trim_start_matches("whsec_");
    assert!(
        !lines.iter().any(|l| l.contains(secret_hex)),
        "the secret is in the node's logs"
    );

    // Deleting the subscription removes its delivery log with it.
    let r = f
        .call(t, Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let r = f
        .call(
            t,
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_always_fails_is_dead_lettered_after_max_attempts() {
    let f = Fixture::start(true, 3).await;
    let t = f.provision("acme").await;
    let receiver = Receiver::start(usize::MAX, 500).await;
    let created = f.create(t, &receiver.url(), &["member.added"]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let ping = f
        .call(t, Method::POST, &format!("/v1/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{ping:?}");
    assert_eq!(ping.json["event_type"], "ping");
    let log = f
        .deliveries_until(t, &id, "the ping dead-lettered", |items| {
            items.first().is_some_and(|d| d["status"] == "dead")
        })
        .await;
    let d = &log[0];
    assert_eq!(d["attempts"], 3, "{d:#}");
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 3, "{d:#}");
    assert_eq!(d["next_attempt_at"], Value::Null, "{d:#}");
    assert_eq!(d["last_error"], "the receiver answered 500", "{d:#}");
    assert_eq!(receiver.got().len(), 3, "no attempt after the dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_resolves_to_a_forbidden_address_at_delivery_time_is_not_connected_to() {
    // The create-time check passed once (a name that resolved to a public address); by
    // delivery time the stored URL reaches loopback (DNS rebinding). Stand-in: the row is
    // written straight into the database, sealed with the node's key, as the API would have.
    let f = Fixture::start(false, 2).await;
    let t = f.provision("acme").await;
    let receiver = Receiver::start(0, 200).await;
    let sub = Uuid::now_v7();
    let key = std::fs::read(f.node.dir.path().join("credentials.key")).unwrap();
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key).unwrap(),
    );
    let nonce = [7u8; 12];
    let mut aad = t.as_bytes().to_vec();
    aad.extend_from_slice(sub.as_bytes());
    let mut sealed = b"whsec_test".to_vec();
    key.seal_in_place_append_tag(
        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
        aws_lc_rs::aead::Aad::from(aad),
        &mut sealed,
    )
    .unwrap();
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&sealed);
    integration_tests::connect(&f.db.admin_db_url)
        .await
        .execute(
            "INSERT INTO webhook_subscriptions (tenant_id, id, url, events, secret, secret_kid) \
             VALUES ($1, $2, $3, ARRAY['ping'], $4, 'k1')",
            &[&t, &sub, &receiver.url(), &blob],
        )
        .await
        .unwrap();
    // Changing the URL is checked like creating one.
    let r = f
        .call(
            t,
            Method::PATCH,
            &format!("/v1/webhooks/{sub}"),
            Some(&json!({"url": "http://169.254.169.254/latest/meta-data"})),
        )
        .await;
    assert_refused_naming_url(&r, "patch to the metadata address");
    let ping = f
        .call(t, Method::POST, &format!("/v1/webhooks/{sub}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{ping:?}");
    let log = f
        .deliveries_until(t, &sub.to_string(), "the ping given up", |items| {
            items.first().is_some_and(|d| d["status"] == "dead")
        })
        .await;
    assert_eq!(log[0]["last_status_code"], Value::Null, "{:#}", log[0]);
    assert!(
        log[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("reserved address"),
        "{:#}",
        log[0]
    );
    assert!(
        receiver.got().is_empty(),
        "the receiver on loopback was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_an_api_key_at_the_admin_api_is_delivered_as_api_key_revoked_once() {
    let stack = integration_tests::gateway::Stack::start().await;
    let tenant = stack.create_tenant("acme", "eu", "scale").await;
    let id = tenant["id"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {}", stack.idp.token(&id, "owner-acme", "owner"));
    let receiver = Receiver::start(0, 200).await;
    // Through the gateway: the same paths as on the node.
    let created = Http::default()
        .send(
            Method::POST,
            &format!("{}/v1/webhooks", stack.public),
            &[("authorization", &auth)],
            Some(&json!({"url": receiver.url(), "events": ["api_key.revoked"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    let key = stack.create_api_key(&id, "ci", "developer").await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/tenants/{id}/api-keys/{key_id}");
    let r = stack.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let got = until(
        "api_key.revoked delivered",
        Duration::from_secs(30),
        || async {
            let got = receiver.got();
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    verify(&secret, &got[0]);
    assert_eq!(got[0].event, "api_key.revoked");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["id"], key_id.as_str(), "{body}");
    assert_eq!(body["data"]["prefix"], key["prefix"], "{body}");
    assert_eq!(body["tenant_id"], id.as_str());
    assert!(
        !got[0].body.windows(3).any(|w| w == b"rk_"),
        "no key material: {body}"
    );

    // Revoking again (idempotent) records nothing more; the audit has it once.
    let r = stack.admin(Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let audit = Http::default()
        .send(
            Method::GET,
            &format!("{}/v1/audit-events?action=api_key.revoke", stack.public),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        audit.json["items"].as_array().map(Vec::len),
        Some(1),
        "{audit:?}"
    );
    let hook = created.json["id"].as_str().unwrap();
    let log = Http::default()
        .send(
            Method::GET,
            &format!("{}/v1/webhooks/{hook}/deliveries", stack.public),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        log.json["items"].as_array().map(Vec::len),
        Some(1),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_gone_disables_the_webhook_and_says_so_in_the_audit() {
    let f = Fixture::start(true, 5).await;
    let t = f.provision("acme").await;
    let receiver = Receiver::start(0, 410).await;
    let created = f.create(t, &receiver.url(), &["member.added"]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let ping = f
        .call(t, Method::POST, &format!("/v1/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{ping:?}");
    let log = f
        .deliveries_until(t, &id, "the ping failed", |items| {
            items.first().is_some_and(|d| d["status"] == "failed")
        })
        .await;
    assert_eq!(
        (&log[0]["attempts"], &log[0]["last_status_code"]),
        (&json!(1), &json!(410))
    );
    assert_eq!(receiver.got().len(), 1, "not retried");
    let hook = f
        .call(t, Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(hook.json["enabled"], false, "{hook:?}");
    let audit = f
        .call(
            t,
            Method::GET,
            "/v1/audit-events?action=webhook.disable",
            None,
        )
        .await;
    let items = audit.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit:?}");
    assert_eq!(items[0]["actor"], "system:webhooks");
    // Disabled: no new deliveries, and a ping is refused.
    let r = f
        .call(
            t,
            Method::POST,
            "/v1/members",
            Some(&json!({"subject": "ann", "email": "ann@acme.test", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = f
        .call(
            t,
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.json["items"].as_array().map(Vec::len), Some(1), "{r:?}");
    let ping = f
        .call(t, Method::POST, &format!("/v1/webhooks/{id}/ping"), None)
        .await;
    assert_eq!(ping.status, StatusCode::CONFLICT, "{ping:?}");
}
