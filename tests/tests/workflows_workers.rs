//! Workflows that run (issue 18), the worker's operations: real `region-node` processes with
//! their worker on against one region database and a fake connector service. A delayed run is
//! cancelled (its job gone); a worker killed mid-call is replaced after its lease; two nodes on
//! one database run each step exactly once; the worker's context for one customer sees nothing
//! of another (API and SQL as the app role).

use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::fake_connector::{Answer, FakeConnector};
use integration_tests::process::until;
use integration_tests::workflows::{
    api, connections, messages, provision, run, three_steps, until_status, worker_node,
    worker_node_sharing, workflow, POST, SEARCH,
};
use integration_tests::{connect, RegionDb};
use serde_json::json;
use uuid::Uuid;

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
