//! Helpers of the workflow suites (`tests/tests/workflows_*.rs`): region-node processes with
//! their worker on and their connectors pointed at a [`FakeConnector`], calls as a role of a
//! tenant, the connections and workflows the suites use, and waiting on an execution's status.

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use residency_core::assertion::now_secs;
use residency_core::TenantId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fake_connector::FakeConnector;
use crate::process::{until, Logs, NodeProcess};
use crate::{Http, RegionDb, Response};

/// The HubSpot connection's token in these tests.
pub const HUBSPOT_TOKEN: &str = "hs-secret-token-4f1e9a";
/// The Slack connection's token in these tests.
pub const SLACK_TOKEN: &str = "xoxb-secret-token-77c2d0";
/// The fake's path of `hubspot.search_companies`.
pub const SEARCH: &str = "/hubspot/crm/v3/objects/companies/search";
/// The fake's path of `slack.post_message`.
pub const POST: &str = "/slack/chat.postMessage";

/// A node process with its worker on, its connectors pointed at `fake`, its output captured.
pub async fn worker_node(db: &RegionDb, fake: &FakeConnector, lease: &str) -> (NodeProcess, Logs) {
    worker_node_sharing(db, fake, lease, None).await
}

/// [`worker_node`], with the credentials key of `with` (replicas of a region share it).
pub async fn worker_node_sharing(
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

/// Calls a node as `<role>-user` with `role` of `tenant`.
pub async fn api(
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

/// Provisions `tenant` on `node` (system assertion).
pub async fn provision(node: &NodeProcess, tenant: Uuid, name: &str) {
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

/// The body of a 201, or a panic with the answer.
pub async fn created(r: Response) -> Value {
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r.json
}

/// A HubSpot connection (`search_companies` enabled) and a Slack one (`post_message`
/// enabled, unless `slack_actions` says otherwise).
pub async fn connections(node: &NodeProcess, t: Uuid, slack_actions: &[&str]) -> (String, String) {
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
pub fn three_steps(hs: &str, sl: &str) -> Value {
    json!({"steps": [
        {"id": "fetch", "type": "action", "connection_id": hs, "action": "search_companies",
         "input": {"query": "{{trigger.company}}"}},
        {"id": "shape", "type": "transform",
         "output": {"channel": "#sales", "text": "Found {{steps.fetch.output.total}} for {{trigger.company}}"}},
        {"id": "notify", "type": "action", "connection_id": sl, "action": "slack.post_message",
         "input": {"channel": "{{steps.shape.output.channel}}", "text": "{{steps.shape.output.text}}", "n": "{{trigger.n}}"}}
    ]})
}

/// Creates a workflow named `name` with `definition` as the owner; returns its id.
pub async fn workflow(node: &NodeProcess, t: Uuid, name: &str, definition: Value) -> String {
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

/// Starts a run of `wf` as `role` with `input`; returns the execution id.
pub async fn run(node: &NodeProcess, t: Uuid, role: &str, wf: &str, input: Value) -> String {
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

/// Waits until the execution is in `status`; returns it (with its log lines). Panics at once
/// when it ended in another status.
pub async fn until_status(node: &NodeProcess, t: Uuid, id: &str, status: &str) -> Value {
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
            // An execution that ended otherwise fails the test at once, with its log lines.
            let now = r.json["status"].as_str().unwrap_or_default();
            let ended = ["succeeded", "failed", "cancelled"].contains(&now);
            assert!(
                now == status || !ended,
                "execution {id} ended {now}, not {status}: {}",
                r.json
            );
            (now == status).then_some(r.json)
        },
    )
    .await
}

/// The log messages of an execution.
pub fn messages(exec: &Value) -> Vec<String> {
    exec["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Panics when `text` carries either test credential.
pub fn assert_no_secret(what: &str, text: &str) {
    for s in [HUBSPOT_TOKEN, SLACK_TOKEN] {
        assert!(!text.contains(s), "{what} carries a credential: {text}");
    }
}
