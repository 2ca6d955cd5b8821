//! The gateway's and the node's log lines, read from the real processes' output (issue 16,
//! logs): `--log-format json` (and `RESIDENCY_LOG_FORMAT`) gives one JSON object per line;
//! `[log] access = true` one access line per request on target `residency::access` with the
//! request id the client saw, tenant, region, credential kind, method, route template,
//! status, bytes and times; a 5xx the gateway answers itself is logged exactly once with its
//! request id and cause; no line carries a bearer token, an API key or an internal
//! assertion. Without `[log]` there is no access line, and the default format is text.
//!
//! Every wait polls the collected lines or the processes' readiness; the final assertions
//! run after the gateway exited and its output streams ended, so no line is in flight.

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::directory::DirectoryDb;
use integration_tests::gateway::ADMIN_TOKEN;
use integration_tests::process::{
    region_toml, GatewayOptions, GatewayProcess, Logs, NodeProcess, Output,
};
use integration_tests::{Http, RegionDb, Response};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use uuid::Uuid;

const ACCESS_TARGET: &str = "residency::access";

/// A directory, one `eu` node (JSON logs through `RESIDENCY_LOG_FORMAT`, captured) and a
/// gateway started with `args`, `extra` config and `RUST_LOG=info` (the proxy's request span
/// at debug), output captured.
struct Stack {
    gw: GatewayProcess,
    node: NodeProcess,
    node_logs: Logs,
    http: Http,
    _db: RegionDb,
    _dir: DirectoryDb,
}

impl Stack {
    async fn start(args: &[&str], extra: &str) -> Self {
        let dir = DirectoryDb::create().await;
        let db = RegionDb::create("eu").await;
        let mut node = NodeProcess::spawn(
            &db,
            "eu",
            "info",
            Stdio::piped,
            &[("RESIDENCY_LOG_FORMAT", "json")],
        );
        let node_logs = Logs::default();
        node_logs.collect(node.child.as_mut().unwrap().stdout.take().unwrap());
        node.until_ready().await;
        let gw = GatewayProcess::start_with(
            &GatewayOptions {
                directory_url: &dir.reader_url,
                writer_url: &dir.writer_url,
                regions: region_toml("eu", &[node.addr()], &node.key_file()),
                limits: "upstream_timeout = \"2s\"",
                extra,
                jwks: None,
            },
            args,
            // The request span is at debug (cheap when off); turned on for the proxy module.
            &[("RUST_LOG", "info,residency_gateway::proxy=debug")],
            Output::Capture,
        )
        .await;
        Self {
            gw,
            node,
            node_logs,
            http: Http::default(),
            _db: db,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.http
            .send(
                Method::GET,
                &format!("http://{}{path}", self.gw.public),
                headers,
                None,
            )
            .await
    }

    /// SIGTERM to the gateway, then waits until it exited and its output ended.
    async fn stop_gateway(&mut self) {
        integration_tests::process::signal(self.gw.pid(), Signal::SIGTERM);
        self.gw.wait(Duration::from_secs(30)).await;
        self.gw.logs.closed().await;
    }
}

fn request_id(r: &Response) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// The gateway's lines as JSON objects; every line must be one.
fn json_lines(logs: &Logs) -> Vec<Value> {
    logs.lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
        })
        .collect()
}

/// The one access line of `id`.
fn access_of<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == ACCESS_TARGET && l["request_id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "one access line for {id}: {found:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_name_each_request_once_with_its_id_and_never_a_credential() {
    let mut s = Stack::start(&["--log-format", "json"], "[log]\naccess = true\n").await;
    let tenant =
        s.gw.create_tenant(
            &format!("obs-{}", &Uuid::new_v4().simple().to_string()[..8]),
            "eu",
            100_000,
        )
        .await;
    let key =
        s.gw.admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/api-keys"),
            Some(&json!({"name": "obs", "role": "developer"})),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{key:?}");
    let api_key = key.json["api_key"].as_str().unwrap().to_owned();
    let token = s.gw.idp.token(&tenant, "user-1", "developer");
    let bearer = format!("Bearer {token}");

    // A JWT, no client request id: the gateway's own id is the one logged.
    let jwt = s.get("/v1/me", &[("authorization", &bearer)]).await;
    assert_eq!(jwt.status, StatusCode::OK, "{jwt:?}");
    // An API key, with the client's request id; an id in the path and a query string.
    let with_key = s
        .get(
            &format!("/v1/workflows/{}?q=hidden-query-value", Uuid::new_v4()),
            &[
                ("authorization", &format!("ApiKey {api_key}")),
                ("x-request-id", "obs-key-1"),
            ],
        )
        .await;
    assert_eq!(request_id(&with_key), "obs-key-1");
    assert!(with_key.status.is_client_error(), "{with_key:?}");
    // A refused credential.
    let refused = s
        .get(
            "/v1/me",
            &[
                ("authorization", "Bearer not.a.jwt"),
                ("x-request-id", "obs-401"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // The home region goes away: the gateway itself answers 502 (or 503 once ejected).
    s.node.kill().await;
    let down = s
        .get(
            "/v1/me",
            &[("authorization", &bearer), ("x-request-id", "obs-5xx")],
        )
        .await;
    assert!(
        matches!(
            down.status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{down:?}"
    );
    s.stop_gateway().await;

    let lines = json_lines(&s.gw.logs);
    for l in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(l[field].is_string(), "{field} in {l}");
        }
    }
    let a = access_of(&lines, &request_id(&jwt));
    assert_eq!(a["level"], "INFO");
    assert_eq!(a["status"], 200);
    assert_eq!(a["tenant"], tenant.as_str());
    assert_eq!(a["region"], "eu");
    assert_eq!(a["credential"], "jwt");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["route"], "/v1/me");
    assert!(a["bytes"].as_u64().is_some_and(|b| b > 0), "{a}");
    assert!(
        a["duration_ms"].is_f64() && a["upstream_ms"].is_f64(),
        "{a}"
    );

    let a = access_of(&lines, "obs-key-1");
    assert_eq!(a["status"], with_key.status.as_u16());
    assert_eq!(a["credential"], "api_key");
    assert_eq!(a["tenant"], tenant.as_str());
    assert_eq!(a["route"], "/v1/workflows/{id}");

    let a = access_of(&lines, "obs-401");
    assert_eq!(a["status"], 401);
    assert!(
        a.get("tenant").is_none() && a.get("credential").is_none(),
        "{a}"
    );
    assert!(a.get("upstream_ms").is_none(), "{a}");

    let a = access_of(&lines, "obs-5xx");
    assert_eq!(a["status"], down.status.as_u16());
    assert_eq!(a["region"], "eu");

    // The 5xx: one warning, with its id, the bounded kind and the cause; the 401 is the
    // client's and is not a warning.
    let warned = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["target"] != ACCESS_TARGET && l["request_id"] == id)
            .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
            .collect()
    };
    let w = warned("obs-5xx");
    assert_eq!(w.len(), 1, "the 5xx is logged exactly once: {w:#?}");
    assert_eq!(w[0]["status"], down.status.as_u16());
    assert!(
        matches!(
            w[0]["kind"].as_str(),
            Some("upstream_connect" | "upstream_failed" | "no_upstream")
        ),
        "{}",
        w[0]
    );
    assert!(
        w[0]["cause"].as_str().is_some_and(|c| !c.is_empty()),
        "{}",
        w[0]
    );
    assert_eq!(w[0]["region"], "eu");
    // Inside the request span: its fields are on the line.
    assert_eq!(w[0]["span"]["request_id"], "obs-5xx");
    assert_eq!(w[0]["span"]["route"], "/v1/me");
    assert_eq!(w[0]["span"]["credential"], "jwt");
    assert!(warned("obs-401").is_empty());

    // No credential, assertion (a JWS, `eyJ…`) or query string in any line of either process.
    let node_lines = s.node_logs.lines();
    assert!(!node_lines.is_empty(), "the node logged nothing");
    for l in &node_lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("node line ({e}): {l}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{l}");
    }
    for l in s.gw.logs.lines().iter().chain(&node_lines) {
        for secret in [
            token.as_str(),
            api_key.as_str(),
            "eyJ",
            ADMIN_TOKEN,
            "hidden-query-value",
        ] {
            assert!(!l.contains(secret), "{secret:?} in a log line: {l}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_log_access_there_is_no_access_line_and_the_default_format_is_text() {
    let mut s = Stack::start(&[], "").await;
    let tenant =
        s.gw.create_tenant(
            &format!("obs-{}", &Uuid::new_v4().simple().to_string()[..8]),
            "eu",
            100_000,
        )
        .await;
    let r = s.gw.me(&tenant).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    s.stop_gateway().await;
    let lines = s.gw.logs.lines();
    assert!(
        lines.iter().any(|l| l.contains(" INFO ")),
        "text lines at info: {lines:#?}"
    );
    for l in &lines {
        assert!(!l.starts_with('{'), "a JSON line in text format: {l}");
        assert!(
            !l.contains(ACCESS_TARGET),
            "an access line although [log] access is off: {l}"
        );
    }
}
