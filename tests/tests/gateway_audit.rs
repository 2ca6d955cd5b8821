//! `GET /admin/v1/audit` on a real gateway (shared stack harness: Postgres directory, real
//! eu and us nodes, an `apac` database) with an `[audit]` section: the same report as
//! `residency audit --json`, a seeded misplaced row named, one audit at a time, and the
//! endpoint's refusals (no `[audit]` → 404, no token → 401).

use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::gateway::{Stack, StackOptions};
use integration_tests::{binary, connect};
use serde_json::{json, Value};

/// Creates a customer in each of eu and us through the admin API (provisioned on the home
/// node) and sends one request through the gateway for each; returns `(eu, us)` tenant ids.
async fn customers(s: &Stack) -> (String, String) {
    let mut ids = Vec::new();
    for region in ["eu", "us"] {
        let t = s
            .create_tenant(&format!("audit-{region}"), region, "growth")
            .await;
        let id = t["id"].as_str().unwrap().to_owned();
        let me = s
            .until(
                "the new customer is served",
                Duration::from_secs(5),
                || async {
                    let r = s.me(&id).await;
                    (r.status == StatusCode::OK).then_some(r)
                },
            )
            .await;
        assert_eq!(me.json["region"], region);
        ids.push(id);
    }
    (ids[0].clone(), ids[1].clone())
}

/// The report without what legitimately differs between two runs and two callers: timings,
/// and the routing evidence only the gateway has.
fn comparable(report: &Value) -> Value {
    let mut r = report.clone();
    for region in r["regions"].as_array_mut().unwrap() {
        let o = region.as_object_mut().unwrap();
        o.remove("duration_ms");
        o.remove("routing");
    }
    r
}

/// Runs `residency audit --json` on a stack.json describing the same regions and directory.
async fn cli_report(s: &Stack, dir: &std::path::Path) -> (Option<i32>, Value) {
    let regions: Vec<Value> = ["eu", "us", "apac"]
        .iter()
        .map(|id| {
            let db = s.db(id);
            let upstream = match *id {
                "apac" => format!("http://{}", s.apac_addr),
                _ => format!(
                    "http://{}",
                    s.nodes
                        .iter()
                        .find(|n| n.region.as_str() == *id)
                        .unwrap()
                        .addr
                ),
            };
            json!({
                "id": id, "display_name": "", "location": "", "node_url": upstream,
                "database_url": db.owner_url, "app_database_url": db.app_url,
                "auditor_database_url": db.auditor_url,
            })
        })
        .collect();
    let stack = dir.join("stack.json");
    std::fs::write(
        &stack,
        json!({ "directory": { "database_url": s.dir.url }, "regions": regions }).to_string(),
    )
    .unwrap();
    let out = tokio::process::Command::new(binary("residency"))
        .args(["audit", "--json", "--quiet", "--stack"])
        .arg(&stack)
        .output()
        .await
        .expect("run residency audit");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cli json: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_matches_the_cli_then_names_a_misplaced_row() {
    let s = Stack::start_with(StackOptions {
        audit: true,
        ..StackOptions::default()
    })
    .await;
    let (_, us_tenant) = customers(&s).await;

    let r = s.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-audit-outcome"], "clean");
    let report = r.json;
    assert_eq!(report["version"], 1);
    assert_eq!(report["clean"], true, "{report:#}");
    assert_eq!(report["violations"], json!([]));
    let ids: Vec<&str> = report["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["eu", "us", "apac"]);
    for region in report["regions"].as_array().unwrap() {
        assert_eq!(region["status"], "audited", "{region}");
        assert_eq!(region["posture"]["failed"], 0, "{region}");
        assert!(
            region["database"]["role"]
                .as_str()
                .unwrap()
                .ends_with("_auditor"),
            "{region}"
        );
        // Routing evidence from the gateway's own counters and the nodes' /metrics.
        let routing = &region["routing"];
        let live = region["id"] != "apac";
        assert_eq!(routing["upstreams_reachable"], u64::from(live), "{routing}");
        // In this process the region nodes install the global metrics recorder first, so
        // the gateway's own counter reads 0 here; it is present either way.
        assert!(routing["requests_total"].is_u64(), "{routing}");
        if live {
            assert_eq!(routing["misroutes_refused"], 0, "{routing}");
        }
    }

    // The same report as the CLI's, field for field (timings and gateway-only evidence aside).
    let tmp = tempfile::tempdir().unwrap();
    let (code, cli) = cli_report(&s, tmp.path()).await;
    assert_eq!(code, Some(0), "{cli:#}");
    assert_eq!(comparable(&report), comparable(&cli));

    // A US customer's row in the EU database, as a superuser could put it there.
    connect(&s.db("eu").admin_db_url)
        .await
        .batch_execute(&format!(
            "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id) \
             VALUES ('{us_tenant}', gen_random_uuid(), 'x', 'moved', 'workflow', 'w')"
        ))
        .await
        .unwrap();
    let r = s.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-audit-outcome"], "violations");
    assert_eq!(r.json["clean"], false);
    let misplaced: Vec<&Value> = r.json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "misplaced_rows")
        .collect();
    assert_eq!(misplaced.len(), 1, "{:#}", r.json["violations"]);
    assert_eq!(misplaced[0]["region"], "eu");
    assert_eq!(misplaced[0]["tenant_id"], us_tenant.as_str());
    assert_eq!(misplaced[0]["table"], "audit_events");
    let (code, cli) = cli_report(&s, tmp.path()).await;
    assert_eq!(code, Some(1));
    assert_eq!(comparable(&r.json), comparable(&cli));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_audit_at_a_time_and_the_token_is_required() {
    let s = Stack::start_with(StackOptions {
        audit: true,
        ..StackOptions::default()
    })
    .await;
    customers(&s).await;

    let r = s.admin_as(None, Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.headers.contains_key("www-authenticate"));
    let r = s
        .admin_as(
            Some("wrong-token-0123456789abcdef"),
            Method::GET,
            "/admin/v1/audit",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // Hold a lock the audit's count of audit_events must wait for, so the first audit is
    // known to be running while the second call arrives.
    let eu = s.db("eu");
    let locker = connect(&eu.admin_db_url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let watcher = connect(&eu.admin_db_url).await;
    let auditor = eu.roles[2].clone();
    let first = s.admin(Method::GET, "/admin/v1/audit", None);
    let second = async {
        s.until(
            "the audit waits for the lock",
            Duration::from_secs(20),
            || async {
                let n: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                     WHERE usename = $1 AND wait_event_type = 'Lock'",
                        &[&auditor],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (n > 0).then_some(())
            },
        )
        .await;
        let r = s.admin(Method::GET, "/admin/v1/audit", None).await;
        locker.batch_execute("ROLLBACK").await.unwrap();
        r
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "{second:?}");
    assert_eq!(
        second.json["type"],
        "urn:residency:problem:audit_in_progress"
    );
    assert!(second.headers.contains_key("retry-after"));
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.json["clean"], true, "{:#}", first.json);
    // Once it finished, the next audit runs.
    let again = s.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(again.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_audit_section_the_endpoint_says_which_key_to_add() {
    let s = Stack::start().await;
    let r = s.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json["type"], "urn:residency:problem:audit_not_configured");
    assert!(
        r.json["detail"].as_str().unwrap().contains("audit.regions"),
        "{r:?}"
    );
    assert_eq!(
        r.json["request_id"].as_str(),
        r.headers["x-request-id"].to_str().ok()
    );
    let r = s.admin_as(None, Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    s.stop().await;
}
