//! Workflows that run (issue 18), end to end: real `region-node` processes with their worker
//! on, a real region database, and a fake Slack/HubSpot-like service on a loopback port that
//! records every call.
//!
//! Covered: a three-step workflow (action → transform → action) calls the fake with the
//! connections' credentials and logs one line per step; a failing step retries then fails the
//! run, and `retry` runs it again; a disabled action and a role without `connections.use`
//! are refused (in a run and through `invoke`); a delayed run is cancelled; a worker killed
//! mid-call is replaced after its lease; two nodes on one database run each step exactly
//! once; the worker's RLS context; credentials in no log line and no answer.

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::fake_connector::{Answer, FakeConnector};
use integration_tests::process::{until, Logs, NodeProcess};
use integration_tests::{connect, Http, RegionDb, Response};
use residency_core::assertion::now_secs;
use residency_core::TenantId;
use serde_json::{json, Value};
use uuid::Uuid;

const HUBSPOT_TOKEN: &str = "hs-secret-token-4f1e9a";
const SLACK_TOKEN: &str = "xoxb-secret-token-77c2d0";
const SEARCH: &str = "/hubspot/crm/v3/objects/companies/search";
const POST: &str = "/slack/chat.postMessage";

/// A node process with its worker on, its connectors pointed at `fake`, its output captured.
async fn worker_node(db: &RegionDb, fake: &FakeConnector, lease: &str) -> (NodeProcess, Logs) {
    worker_node_sharing(db, fake, lease, None).await
}

/// [`worker_node`], with the credentials key of `with` (replicas of a region share it).
async fn worker_node_sharing(
    db: &RegionDb,
    fake: &FakeConnector,
    lease: &str,
    with: Option<&NodeProcess>,
) -> (NodeProcess, Logs) {
    let slack = fake.base("slack");
    let hubspot = fake.base("hubspot");
    let key = with
        .map(|n| n.dir.path().join("credentials.key").display().to_string())
        .unwrap_or_default();
    let mut env = vec![
        ("RESIDENCY__WORKER__ENABLED", "true"),
        ("RESIDENCY__WORKER__POLL_INTERVAL", "100ms"),
        ("RESIDENCY__WORKER__LEASE", lease),
        ("RESIDENCY__WORKER__MAX_ATTEMPTS", "5"),
        ("RESIDENCY__WORKER__CONCURRENCY", "4"),
        ("RESIDENCY__DATABASE__POOL_SIZE", "8"),
        ("RESIDENCY__CONNECTORS__SLACK__BASE_URL", slack.as_str()),
        ("RESIDENCY__CONNECTORS__HUBSPOT__BASE_URL", hubspot.as_str()),
    ];
    if with.is_some() {
        env.push(("RESIDENCY__CREDENTIALS__KEY_FILE", key.as_str()));
    }
    let mut node = NodeProcess::spawn(db, "eu", "info", Stdio::piped, &env);
    let logs = Logs::default();
    let child = node.child.as_mut().unwrap();
    logs.collect(child.stdout.take().unwrap());
    logs.collect(child.stderr.take().unwrap());
    node.until_ready().await;
    (node, logs)
}

/// Calls a node as `subject` with `role` of `tenant`.
async fn api(
    node: &NodeProcess,
    tenant: Uuid,
    role: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let a = node
        .signer()
        .mint(
            TenantId::from_uuid(tenant),
            &format!("{role}-user"),
            role,
            now_secs(),
        )
        .unwrap()
        .0;
    Http::default()
        .send(
            method,
            &format!("{}{path}", node.base()),
            &[("x-residency-assertion", &a)],
            body,
        )
        .await
}

async fn provision(node: &NodeProcess, tenant: Uuid, name: &str) {
    let sys = node
        .signer()
        .mint_system(TenantId::from_uuid(tenant), "test", now_secs())
        .unwrap()
        .0;
    let r = Http::default()
        .send(
            Method::POST,
            &format!("{}/internal/v1/provision", node.base()),
            &[("x-residency-assertion", &sys)],
            Some(&json!({"name": name})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

async fn created(r: Response) -> Value {
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.json
}

/// A HubSpot connection (`search_companies` enabled) and a Slack one (`post_message`
/// enabled, unless `slack_actions` says otherwise).
async fn connections(node: &NodeProcess, t: Uuid, slack_actions: &[&str]) -> (String, String) {
    let hs = created(
        api(
            node,
            t,
            "owner",
            Method::POST,
            "/v1/connections",
            Some(&json!({
                "connector_id": "hubspot", "name": "crm", "enabled_actions": ["search_companies"],
                "credentials": {"access_token": HUBSPOT_TOKEN}
            })),
        )
        .await,
    )
    .await;
    let sl = created(
        api(
            node,
            t,
            "owner",
            Method::POST,
            "/v1/connections",
            Some(&json!({
                "connector_id": "slack", "name": "team", "enabled_actions": slack_actions,
                "credentials": {"token": SLACK_TOKEN}
            })),
        )
        .await,
    )
    .await;
    (
        hs["id"].as_str().unwrap().to_owned(),
        sl["id"].as_str().unwrap().to_owned(),
    )
}

/// action (HubSpot search) → transform → action (Slack post).
fn three_steps(hs: &str, sl: &str) -> Value {
    json!({"steps": [
        {"id": "fetch", "type": "action", "connection_id": hs, "action": "search_companies",
         "input": {"query": "{{trigger.company}}"}},
        {"id": "shape", "type": "transform",
         "output": {"channel": "#sales", "text": "Found {{steps.fetch.output.total}} for {{trigger.company}}"}},
        {"id": "notify", "type": "action", "connection_id": sl, "action": "slack.post_message",
         "input": {"channel": "{{steps.shape.output.channel}}", "text": "{{steps.shape.output.text}}", "n": "{{trigger.n}}"}}
    ]})
}

async fn workflow(node: &NodeProcess, t: Uuid, name: &str, definition: Value) -> String {
    let wf = created(
        api(
            node,
            t,
            "owner",
            Method::POST,
            "/v1/workflows",
            Some(&json!({
                "name": name, "definition": definition
            })),
        )
        .await,
    )
    .await;
    wf["id"].as_str().unwrap().to_owned()
}

async fn run(node: &NodeProcess, t: Uuid, role: &str, wf: &str, input: Value) -> String {
    let r = created(
        api(
            node,
            t,
            role,
            Method::POST,
            &format!("/v1/workflows/{wf}/runs"),
            Some(&json!({"input": input})),
        )
        .await,
    )
    .await;
    r["id"].as_str().unwrap().to_owned()
}

/// Waits until the execution is in `status`; returns it (with its log lines).
async fn until_status(node: &NodeProcess, t: Uuid, id: &str, status: &str) -> Value {
    until(
        &format!("execution {id} {status}"),
        Duration::from_secs(60),
        || async {
            let r = api(
                node,
                t,
                "owner",
                Method::GET,
                &format!("/v1/executions/{id}"),
                None,
            )
            .await;
            (r.json["status"] == status).then_some(r.json)
        },
    )
    .await
}

fn messages(exec: &Value) -> Vec<String> {
    exec["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [HUBSPOT_TOKEN, SLACK_TOKEN] {
        assert!(!text.contains(s), "{what} carries a credential: {text}");
    }
}

#[tokio::test]
async fn three_steps_run_with_the_connections_credentials() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    fake.answer(
        SEARCH,
        Answer::Json(json!({"total": 2, "results": [{"id": "c1"}, {"id": "c2"}],
                                            "echoed": HUBSPOT_TOKEN})),
    );
    let (node, logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    let (hs, sl) = connections(&node, t, &["post_message"]).await;
    let wf = workflow(&node, t, "notify-sales", three_steps(&hs, &sl)).await;
    let id = run(&node, t, "owner", &wf, json!({"company": "Acme", "n": 1})).await;
    let exec = until_status(&node, t, &id, "succeeded").await;

    let search = fake.calls_to(SEARCH);
    assert_eq!(search.len(), 1, "{search:?}");
    assert_eq!(search[0].method, "POST");
    assert_eq!(
        search[0].authorization.as_deref(),
        Some(format!("Bearer {HUBSPOT_TOKEN}").as_str())
    );
    assert_eq!(search[0].body, json!({"query": "Acme"}));
    let post = fake.calls_to(POST);
    assert_eq!(post.len(), 1, "{post:?}");
    assert_eq!(post[0].method, "POST");
    assert_eq!(
        post[0].authorization.as_deref(),
        Some(format!("Bearer {SLACK_TOKEN}").as_str())
    );
    assert_eq!(
        post[0].body,
        json!({"channel": "#sales", "text": "Found 2 for Acme", "n": 1})
    );

    // One line per step, with its timing, in order.
    let lines = messages(&exec);
    let step = |id: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("step {id} ")) && l.contains(" succeeded in "))
    };
    let (a, b, c) = (step("fetch"), step("shape"), step("notify"));
    assert!(
        a.is_some() && b.is_some() && c.is_some() && a < b && b < c,
        "{lines:#?}"
    );
    assert!(
        exec["started_at"].is_string() && exec["finished_at"].is_string(),
        "{exec}"
    );
    assert_eq!(exec["error"], Value::Null);
    // The token the fake echoed back is scrubbed; neither credential is in the answer.
    assert_no_secret("the execution", &exec.to_string());

    // invoke: the same checks, the connector's answer, never the credential (the fake echoes
    // the authorization header back).
    let r = api(
        &node,
        t,
        "owner",
        Method::POST,
        &format!("/v1/connections/{sl}/actions/post_message/invoke"),
        Some(&json!({"input": {"channel": "#x", "text": "hi"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], 200);
    assert_eq!(
        r.json["body"]["echo"],
        json!({"channel": "#x", "text": "hi"})
    );
    assert_eq!(r.json["body"]["seen_authorization"], "Bearer [redacted]");
    assert_no_secret("the invoke answer", &r.text);
    assert_eq!(fake.calls_to(POST).len(), 2);

    // Nothing the node wrote carries a credential.
    drop(node);
    logs.closed().await;
    let all = logs.lines().join("\n");
    assert!(
        all.contains(&id) || !all.is_empty(),
        "no log lines captured"
    );
    assert_no_secret("the node's output", &all);
}

#[tokio::test]
async fn a_failing_step_retries_then_fails_and_retry_runs_it_again() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    fake.answer(POST, Answer::Status(500));
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    let (_, sl) = connections(&node, t, &["post_message"]).await;
    let wf = workflow(
        &node,
        t,
        "flaky",
        json!({"steps": [
            {"id": "notify", "type": "action", "connection_id": sl, "action": "post_message",
             "input": {"text": "hi"}, "retries": {"max": 2, "backoff_seconds": 1}}
        ]}),
    )
    .await;
    let id = run(&node, t, "owner", &wf, json!({})).await;
    let exec = until_status(&node, t, &id, "failed").await;
    assert_eq!(fake.calls_to(POST).len(), 3, "one attempt and two retries");
    let error = exec["error"].as_str().unwrap();
    assert!(error.contains("notify") && error.contains("500"), "{error}");
    let lines = messages(&exec);
    assert_eq!(
        lines.iter().filter(|l| l.contains("retry")).count(),
        2,
        "{lines:#?}"
    );
    assert_no_secret("the execution", &exec.to_string());

    // Retry (executions.retry): the connector works again, the run succeeds.
    fake.answer(POST, Answer::Json(json!({"ok": true})));
    let r = api(
        &node,
        t,
        "viewer",
        Method::POST,
        &format!("/v1/executions/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = api(
        &node,
        t,
        "operator",
        Method::POST,
        &format!("/v1/executions/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], "queued");
    until_status(&node, t, &id, "succeeded").await;
    assert_eq!(fake.calls_to(POST).len(), 4);
    // A succeeded run is not retried.
    let r = api(
        &node,
        t,
        "operator",
        Method::POST,
        &format!("/v1/executions/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
}

#[tokio::test]
async fn a_disabled_action_and_a_role_without_connections_use_are_refused() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    // post_message is an action of slack, but not enabled on this connection.
    let (_, sl) = connections(&node, t, &["list_channels"]).await;
    let wf = workflow(&node, t, "notify", json!({"steps": [
        {"id": "notify", "type": "action", "connection_id": sl, "action": "post_message", "input": {"text": "hi"}}
    ]}))
    .await;
    let id = run(&node, t, "owner", &wf, json!({})).await;
    let exec = until_status(&node, t, &id, "failed").await;
    let error = exec["error"].as_str().unwrap();
    assert!(error.contains("not enabled"), "{error}");
    let r = api(
        &node,
        t,
        "owner",
        Method::POST,
        &format!("/v1/connections/{sl}/actions/post_message/invoke"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(
        r.json["detail"].as_str().unwrap().contains("not enabled"),
        "{r:?}"
    );
    let r = api(
        &node,
        t,
        "owner",
        Method::POST,
        &format!("/v1/connections/{sl}/actions/no_such/invoke"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // A role that may run workflows but not use connections.
    created(
        api(
            &node,
            t,
            "owner",
            Method::POST,
            "/v1/roles",
            Some(&json!({
                "name": "runner", "based_on": "operator", "remove": ["connections.use"]
            })),
        )
        .await,
    )
    .await;
    let r = api(
        &node,
        t,
        "owner",
        Method::PATCH,
        &format!("/v1/connections/{sl}"),
        Some(&json!({"enabled_actions": ["post_message"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let id = run(&node, t, "runner", &wf, json!({})).await;
    let exec = until_status(&node, t, &id, "failed").await;
    let error = exec["error"].as_str().unwrap();
    assert!(error.contains("connections.use"), "{error}");
    let r = api(
        &node,
        t,
        "runner",
        Method::POST,
        &format!("/v1/connections/{sl}/actions/post_message/invoke"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    // Another customer's connection does not exist for this one.
    let other = Uuid::new_v4();
    provision(&node, other, "other").await;
    let r = api(
        &node,
        other,
        "owner",
        Method::POST,
        &format!("/v1/connections/{sl}/actions/post_message/invoke"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = api(
        &node,
        other,
        "owner",
        Method::POST,
        "/v1/workflows",
        Some(&json!({
            "name": "steal", "definition": {"steps": [
                {"id": "s", "type": "action", "connection_id": sl, "action": "post_message"}]}
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.json["field"], "definition.steps[0].connection_id");
}

#[tokio::test]
async fn definitions_are_validated_by_step_and_field() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    let (hs, _) = connections(&node, t, &["post_message"]).await;
    for (definition, field) in [
        (json!({"steps": {}}), "definition.steps"),
        (
            json!({"steps": [{"id": "a", "type": "nap"}]}),
            "definition.steps[0].type",
        ),
        (
            json!({"steps": [{"id": "a", "type": "delay", "seconds": 1},
                          {"id": "b", "type": "action", "connection_id": hs, "action": "post_message"}]}),
            "definition.steps[1].action",
        ),
        (
            json!({"steps": [{"id": "a", "type": "transform", "output": {"x": "{{steps.z.output}}"}}]}),
            "definition.steps[0].output",
        ),
    ] {
        let r = api(
            &node,
            t,
            "owner",
            Method::POST,
            "/v1/workflows",
            Some(&json!({"name": "w", "definition": definition})),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{definition}: {r:?}"
        );
        assert_eq!(r.json["field"], field, "{r:?}");
    }
    let wf = workflow(
        &node,
        t,
        "ok",
        json!({"steps": [{"id": "a", "type": "delay", "seconds": 1}]}),
    )
    .await;
    let r = api(
        &node,
        t,
        "owner",
        Method::PATCH,
        &format!("/v1/workflows/{wf}"),
        Some(&json!({"definition": {"steps": [{"id": "a", "type": "delay", "seconds": 0}]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.json["field"], "definition.steps[0].seconds");
}

#[tokio::test]
async fn a_delayed_run_is_cancelled() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    let (_, sl) = connections(&node, t, &["post_message"]).await;
    let wf = workflow(&node, t, "later", json!({"steps": [
        {"id": "wait", "type": "delay", "seconds": 3600},
        {"id": "notify", "type": "action", "connection_id": sl, "action": "post_message", "input": {"text": "late"}}
    ]}))
    .await;
    let id = run(&node, t, "owner", &wf, json!({})).await;
    // The worker took it and is waiting out the delay (without holding it).
    until("the delay is logged", Duration::from_secs(30), || async {
        let r = api(
            &node,
            t,
            "owner",
            Method::GET,
            &format!("/v1/executions/{id}"),
            None,
        )
        .await;
        messages(&r.json)
            .iter()
            .any(|l| l.starts_with("step wait "))
            .then_some(())
    })
    .await;
    let r = api(
        &node,
        t,
        "operator",
        Method::POST,
        &format!("/v1/executions/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["status"], "cancelled");
    // Its job is gone: nothing will wake it.
    let admin = connect(&db.admin_db_url).await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM jobs WHERE subject_id = $1",
            &[&Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_killed_worker_is_replaced_after_its_lease() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    fake.answer(SEARCH, Answer::Block);
    let (mut first, _logs) = worker_node(&db, &fake, "2s").await;
    let t = Uuid::new_v4();
    provision(&first, t, "acme").await;
    let (hs, sl) = connections(&first, t, &["post_message"]).await;
    let wf = workflow(&first, t, "notify-sales", three_steps(&hs, &sl)).await;
    let id = run(&first, t, "owner", &wf, json!({"company": "Acme", "n": 1})).await;
    // The first worker is inside its call to the fake: kill it there.
    until("the first call", Duration::from_secs(30), || async {
        (!fake.calls_to(SEARCH).is_empty()).then_some(())
    })
    .await;
    first.kill().await;
    fake.answer(SEARCH, Answer::Json(json!({"total": 1})));
    fake.release();
    let (second, _logs2) = worker_node_sharing(&db, &fake, "2s", Some(&first)).await;
    let exec = until_status(&second, t, &id, "succeeded").await;
    assert_eq!(
        fake.calls_to(SEARCH).len(),
        2,
        "the step ran again after the lease"
    );
    assert_eq!(fake.calls_to(POST).len(), 1);
    assert!(
        messages(&exec).iter().any(|l| l.contains("resumed")),
        "{exec}"
    );
}

#[tokio::test]
async fn two_workers_never_run_the_same_execution() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (a, _la) = worker_node(&db, &fake, "10s").await;
    let (b, _lb) = worker_node_sharing(&db, &fake, "10s", Some(&a)).await;
    fake.answer(SEARCH, Answer::Json(json!({"total": 1})));
    let t = Uuid::new_v4();
    provision(&a, t, "acme").await;
    let (hs, sl) = connections(&a, t, &["post_message"]).await;
    let wf = workflow(&a, t, "notify-sales", three_steps(&hs, &sl)).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let node = if n % 2 == 0 { &a } else { &b };
        ids.push(
            run(
                node,
                t,
                "owner",
                &wf,
                json!({"company": format!("c{n}"), "n": n}),
            )
            .await,
        );
    }
    for id in &ids {
        until_status(&a, t, id, "succeeded").await;
    }
    for n in 0..12 {
        let searches = fake
            .calls_to(SEARCH)
            .into_iter()
            .filter(|c| c.body["query"] == format!("c{n}"))
            .count();
        let posts = fake
            .calls_to(POST)
            .into_iter()
            .filter(|c| c.body["n"] == n)
            .count();
        assert_eq!((searches, posts), (1, 1), "run {n}");
    }
}

#[tokio::test]
async fn the_workers_context_for_one_customer_sees_nothing_of_another() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let (ta, tb) = (Uuid::new_v4(), Uuid::new_v4());
    provision(&node, ta, "a").await;
    provision(&node, tb, "b").await;
    let (hs, sl) = connections(&node, tb, &["post_message"]).await;
    let wf = workflow(
        &node,
        tb,
        "b-flow",
        json!({"steps": [
        {"id": "wait", "type": "delay", "seconds": 3600},
        {"id": "notify", "type": "action", "connection_id": sl, "action": "post_message"}]}),
    )
    .await;
    let id = run(&node, tb, "owner", &wf, json!({"secret_input": "b-only"})).await;
    let _ = hs;
    until("b's run is waiting", Duration::from_secs(30), || async {
        let r = api(
            &node,
            tb,
            "owner",
            Method::GET,
            &format!("/v1/executions/{id}"),
            None,
        )
        .await;
        (r.json["status"] == "running").then_some(())
    })
    .await;
    // Through the API, A does not see B's execution.
    let r = api(
        &node,
        ta,
        "owner",
        Method::GET,
        &format!("/v1/executions/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // In SQL as the app role under A's setting (what the worker's transaction for A sets):
    // none of B's executions, logs, connections or jobs.
    let app = connect(&db.app_url).await;
    app.batch_execute("BEGIN").await.unwrap();
    app.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&ta.to_string()],
    )
    .await
    .unwrap();
    for table in [
        "executions",
        "execution_logs",
        "connections",
        "workflows",
        "jobs",
    ] {
        let n: i64 = app
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} under A's setting");
    }
    app.batch_execute("ROLLBACK").await.unwrap();
    // And with no setting at all, nothing.
    let n: i64 = app
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
