//! Workflows that run (issue 18), end to end: real `region-node` processes with their worker
//! on, a real region database, and a fake Slack/HubSpot-like service on a loopback port that
//! records every call.
//!
//! Here: a three-step workflow (action → transform → action) calls the fake with the
//! connections' credentials and logs one line per step, credentials in no log line and no
//! answer; a failing step retries then fails the run, and `retry` runs it again; a disabled
//! action and a role without `connections.use` are refused (in a run and through `invoke`);
//! definitions are validated by step and field. `workflows_workers.rs` has the worker's
//! operations (cancel, a killed worker, two workers, RLS).

use http::{Method, StatusCode};
use integration_tests::fake_connector::{Answer, FakeConnector};
use integration_tests::process::until;
use integration_tests::webhook_receiver::Receiver;
use integration_tests::workflows::{
    api, assert_no_secret, connections, created, messages, provision, run, three_steps,
    until_status, worker_node, workflow, HUBSPOT_TOKEN, POST, SEARCH, SLACK_TOKEN,
};
use integration_tests::RegionDb;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

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
    // A subscriber to the end of runs (issue [8/9] webhooks).
    let receiver = Receiver::start(0, 204).await;
    let sub = api(
        &node,
        t,
        "owner",
        Method::POST,
        "/v1/webhooks",
        Some(&json!({"url": receiver.url(), "events": ["workflow.run.finished"]})),
    )
    .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{sub:?}");
    let id = run(&node, t, "owner", &wf, json!({"company": "Acme", "n": 1})).await;
    let exec = until_status(&node, t, &id, "succeeded").await;
    let finished = until(
        "the workflow.run.finished delivery",
        Duration::from_secs(30),
        || {
            let got = receiver.got();
            async move { got.into_iter().find(|r| r.event == "workflow.run.finished") }
        },
    )
    .await;
    let event: Value = serde_json::from_slice(&finished.body).unwrap();
    assert_eq!(event["type"], "workflow.run.finished", "{event}");
    assert_eq!(event["data"]["execution_id"], id.as_str(), "{event}");
    assert_eq!(event["data"]["workflow_id"], wf.as_str(), "{event}");
    assert_eq!(event["data"]["status"], "succeeded", "{event}");

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
async fn a_role_that_loses_a_permission_mid_run_stops_the_run() {
    let db = RegionDb::create("eu").await;
    let fake = FakeConnector::start().await;
    let (node, _logs) = worker_node(&db, &fake, "10s").await;
    let t = Uuid::new_v4();
    provision(&node, t, "acme").await;
    let (_, sl) = connections(&node, t, &["post_message"]).await;
    let role = created(
        api(
            &node,
            t,
            "owner",
            Method::POST,
            "/v1/roles",
            Some(&json!({
                "name": "sender", "based_on": "operator"
            })),
        )
        .await,
    )
    .await;
    let wf = workflow(&node, t, "later", json!({"steps": [
        {"id": "wait", "type": "delay", "seconds": 2},
        {"id": "notify", "type": "action", "connection_id": sl, "action": "post_message", "input": {"text": "hi"}}
    ]}))
    .await;
    let id = run(&node, t, "sender", &wf, json!({})).await;
    until_status(&node, t, &id, "running").await;
    // While the run waits, its role loses connections.use: checked live, the step is refused.
    let r = api(
        &node,
        t,
        "owner",
        Method::PATCH,
        &format!("/v1/roles/{}", role["id"].as_str().unwrap()),
        Some(&json!({"remove": ["connections.use"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let exec = until_status(&node, t, &id, "failed").await;
    let error = exec["error"].as_str().unwrap();
    assert!(
        error.contains("step notify") && error.contains("connections.use"),
        "{error}"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}
