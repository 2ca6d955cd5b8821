//! `residency up` end to end: the real binary with its own database prefix, ports and
//! directory, against real Postgres. It waits for `stack.json`, checks it against the SPEC §4
//! contract with [`integration_tests::stack_contract`], calls every region through the gateway
//! over TLS (trusting the stack's CA) with a JWT minted from the stack's key and with a demo
//! API key, stops the stack with SIGTERM and checks that every child exited and every port is
//! free; then re-runs on the same directory (data kept) and with `--fresh` (data reset).
//!
//! These tests start real processes; they are few on purpose, and every wait is a poll with
//! a deadline.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use integration_tests::https::Https;
use integration_tests::process::until;
use integration_tests::{admin_url, binary};
use serde_json::{json, Value};
use uuid::Uuid;

const STACK_DEADLINE: Duration = Duration::from_secs(240);
const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// The binaries `up` starts must sit next to it: build all three.
fn residency() -> PathBuf {
    let _ = binary("region-node");
    let _ = binary("residency-gateway");
    binary("residency")
}

/// A base port with the 7 ports after it free (gateway, admin, identity provider, three
/// nodes, the connector sandbox), below the ephemeral range.
fn free_base() -> u16 {
    let seed = Uuid::new_v4().as_u128();
    for i in 0..200u128 {
        let base = 20_000 + u16::try_from((seed.wrapping_add(i * 7919)) % 10_000).unwrap();
        if (base..base + 7).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range found");
}

/// One run of `residency up`, killed (and its databases dropped, via the guard) on panic.
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    fn start(dir: &Path, prefix: &str, base: u16, extra: &[&str]) -> Self {
        Self::start_on(&admin_url(), dir, prefix, base, extra)
    }

    /// [`Up::start`] against the Postgres `pg` (a superuser URL).
    fn start_on(pg: &str, dir: &Path, prefix: &str, base: u16, extra: &[&str]) -> Self {
        // A stack.json left by an earlier run must not be mistaken for this run's.
        let _ = std::fs::remove_file(dir.join("stack.json"));
        let log = dir.with_extension(format!("{}.log", Uuid::new_v4().simple()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(residency())
            .args(["up", "--pg", pg, "--prefix", prefix, "--base-port"])
            .arg(base.to_string())
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start residency up");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls for stack.json; fails early, with the log, if `up` exits.
    async fn stack(&mut self, dir: &Path) -> Value {
        let path = dir.join("stack.json");
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if let Ok(bytes) = std::fs::read(&path) {
                return serde_json::from_slice(&bytes).expect("stack.json is JSON");
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "residency up exited ({status}) before writing stack.json:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < STACK_DEADLINE,
                "no stack.json after {STACK_DEADLINE:?}:\n{}",
                self.log()
            );
        }
    }

    /// SIGTERM, then wait for `up` to exit.
    async fn stop(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.wait(STOP_DEADLINE).await
    }

    async fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "up still running:\n{}",
                self.log()
            );
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGTERM first so the children are stopped by `up` itself.
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

/// Drops the stack's databases and roles with `up --teardown`, even when the test failed.
struct Teardown {
    dir: PathBuf,
    prefix: String,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let status = Command::new(residency())
            .args([
                "up",
                "--teardown",
                "--pg",
                &admin_url(),
                "--prefix",
                &self.prefix,
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("teardown of {} failed: {status:?}", self.prefix);
        }
    }
}

/// The stack's gateway, reached over HTTPS trusting only the stack's CA.
struct Gateway {
    url: String,
    client: Https,
}

struct Reply {
    status: StatusCode,
    region: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

impl Gateway {
    fn new(dir: &Path, stack: &Value) -> Self {
        let ca = dir.join(stack["gateway"]["ca_cert"].as_str().unwrap());
        Self {
            url: stack["gateway"]["url"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_owned(),
            client: Https::new(&ca, None),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: (&str, &str),
        body: Option<Value>,
    ) -> Reply {
        let r = self
            .client
            .send(
                method,
                &format!("{}{path}", self.url),
                &[auth],
                body.as_ref(),
            )
            .await
            .expect("a request to the stack's gateway, trusting the stack's CA");
        Reply {
            status: r.status,
            region: r
                .headers
                .get("x-residency-region")
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after: r
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: r.json,
        }
    }
}

/// A JWT minted from the stack's own key and claims, as an integrating script would.
fn mint(dir: &Path, stack: &Value, tenant: &str) -> String {
    mint_as(dir, stack, tenant, None)
}

/// As [`mint`], with a role claim (needed for customers that have no `demo-owner` member).
fn mint_as(dir: &Path, stack: &Value, tenant: &str, role: Option<&str>) -> String {
    let jwt = &stack["jwt"];
    let pem = std::fs::read(dir.join(jwt["private_key_pem"].as_str().unwrap())).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(jwt["kid"].as_str().unwrap().to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "iss": jwt["issuer"], "aud": jwt["audience"], "sub": "demo-owner",
        "iat": now, "exp": now + 300,
    });
    claims[jwt["tenant_claim"].as_str().unwrap()] = json!(tenant);
    if let Some(role) = role {
        claims[jwt["role_claim"].as_str().unwrap()] = json!(role);
    }
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn tenant<'a>(stack: &'a Value, region: &str, tier: &str) -> &'a Value {
    stack["demo_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["region"] == region && t["tier"] == tier)
        .unwrap_or_else(|| panic!("no {tier} demo tenant in {region}"))
}

/// The SPEC §4 contract, checked by the project's own port of it
/// ([`integration_tests::stack_contract`]); `.ci/run` also runs the shared checker on a live
/// stack.json (through `.ci/schemathesis`), never the tests.
fn check_contract(dir: &Path) {
    let path = dir.join("stack.json");
    if let Err(problems) = integration_tests::stack_contract::check(&path) {
        panic!("stack.json breaks the contract:\n{}", problems.join("\n"));
    }
}

/// Every port the stack named, and the pids `up` recorded for its children.
fn ports_and_children(dir: &Path, stack: &Value) -> (Vec<u16>, Vec<u32>) {
    let port = |u: &Value| {
        url::Url::parse(u.as_str().unwrap())
            .unwrap()
            .port()
            .unwrap()
    };
    let mut ports = vec![
        port(&stack["gateway"]["url"]),
        port(&stack["admin"]["url"]),
        port(&stack["jwt"]["jwks_url"]),
    ];
    ports.extend(
        stack["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| port(&r["node_url"])),
    );
    let run: Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let pids = run["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| u32::try_from(c[1].as_u64().unwrap()).unwrap())
        .collect();
    (ports, pids)
}

/// Whether `pid` runs (a zombie waiting for its parent to reap it does not).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie"))
    })
}

/// The pid `up` recorded for its child `label`.
fn child_pid(dir: &Path, label: &str) -> u32 {
    let run: Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    run["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == label)
        .map(|c| u32::try_from(c[1].as_u64().unwrap()).unwrap())
        .unwrap_or_else(|| panic!("no child {label} in run.json: {run}"))
}

/// SIGKILLs the node of `region`, then calls every region until `region` is served again
/// (deadline 60 s): the others answer 200 from their own region every time; `region` answers
/// 502 or 503 (+ `Retry-After`) while its node is down, never another region's data.
async fn survive_a_killed_node(dir: &Path, stack: &Value, gw: &Gateway, region: &str) {
    let regions = ["us", "eu", "apac"];
    let tokens: Vec<(&str, String, String)> = regions
        .iter()
        .map(|r| {
            let id = tenant(stack, r, "starter")["id"]
                .as_str()
                .unwrap()
                .to_owned();
            (*r, mint(dir, stack, &id), id)
        })
        .collect();
    let pid = child_pid(dir, region);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let start = Instant::now();
    let (mut refused, mut served_again) = (0, false);
    while !served_again {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{region} not served 60 s after its node was killed"
        );
        for (r, token, id) in &tokens {
            let (k, v) = bearer(token);
            let reply = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
            if *r != region {
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{r} while {region} is down: {}",
                    reply.body
                );
                assert_eq!(reply.region.as_deref(), Some(*r));
                assert_eq!(reply.body["tenant_id"], id.as_str());
            } else if reply.status == StatusCode::OK {
                assert_eq!(reply.region.as_deref(), Some(region));
                assert_eq!(reply.body["tenant_id"], id.as_str());
                served_again = refused > 0;
            } else {
                assert!(
                    reply.status == StatusCode::BAD_GATEWAY
                        || reply.status == StatusCode::SERVICE_UNAVAILABLE,
                    "{region} while its node is down: {} {}",
                    reply.status,
                    reply.body
                );
                if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(reply.retry_after.is_some(), "503 without Retry-After");
                }
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(child_pid(dir, region), pid, "a new {region} process serves");
}

fn assert_stopped(ports: &[u16], pids: &[u32]) {
    assert_eq!(pids.len(), 4, "three nodes and the gateway: {pids:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} is still running"
        );
    }
    for p in ports {
        assert!(
            TcpListener::bind(("127.0.0.1", *p)).is_ok(),
            "port {p} is still in use"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_every_region_survives_a_restart_and_fresh_resets() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("stack");
    let prefix = format!("upt_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let _teardown = Teardown {
        dir: dir.clone(),
        prefix: prefix.clone(),
    };
    let base = free_base();

    // Run 1: a fresh stack.
    let mut up = Up::start(&dir, &prefix, base, &[]);
    let stack = up.stack(&dir).await;
    check_contract(&dir);
    let gw = Gateway::new(&dir, &stack);
    for region in ["us", "eu", "apac"] {
        let t = tenant(&stack, region, "starter");
        let id = t["id"].as_str().unwrap();
        let (k, v) = bearer(&mint(&dir, &stack, id));
        let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
        assert_eq!(r.status, StatusCode::OK, "{region}: {}", r.body);
        assert_eq!(r.region.as_deref(), Some(region));
        assert_eq!(r.body["tenant_id"], id);
        assert_eq!(r.body["region"], region);
    }
    // The demo API key of a scale customer reaches its seeded workflow.
    let scale = tenant(&stack, "eu", "scale");
    let key = scale["api_key"].as_str().unwrap().to_owned();
    let r = gw
        .call(Method::GET, "/v1/workflows", ("x-api-key", &key), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.region.as_deref(), Some("eu"));
    assert!(
        !r.body["items"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    // The demo workflow ran in every region, against the local connector sandbox.
    for region in ["us", "eu", "apac"] {
        let t = tenant(&stack, region, "scale");
        let key = t["api_key"].as_str().unwrap().to_owned();
        let gw = &gw;
        let seen = until(
            &format!("the demo run of {region} succeeded"),
            Duration::from_secs(60),
            || {
                let key = key.clone();
                async move {
                    let r = gw
                        .call(Method::GET, "/v1/executions", ("x-api-key", &key), None)
                        .await;
                    let items = r.body["items"].as_array().cloned().unwrap_or_default();
                    let failed = items.iter().find(|e| e["status"] == "failed");
                    assert!(failed.is_none(), "{region}: {failed:?}");
                    items.into_iter().find(|e| e["status"] == "succeeded")
                }
            },
        )
        .await;
        assert_eq!(seen["error"], Value::Null, "{region}: {seen}");
    }
    // The dev identity provider's tokens work too (JWKS fetched by URL).
    let apac = tenant(&stack, "apac", "growth")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token_url = stack["jwt"]["token_url"].as_str().unwrap();
    let token = idp_token(token_url, &apac).await;
    let (k, v) = bearer(&token);
    let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
    assert_eq!(
        (r.status, r.region.as_deref()),
        (StatusCode::OK, Some("apac"))
    );
    // The admin API (Postgres directory) creates a customer in the EU, provisioned on the
    // EU node, and the gateway routes it there.
    let created = admin_create_tenant(&stack).await;
    assert_eq!(created["region"], "eu", "{created}");
    assert_eq!(created["status"], "active", "{created}");
    let acme = created["id"].as_str().unwrap().to_owned();
    let (k, v) = bearer(&mint_as(&dir, &stack, &acme, Some("viewer")));
    let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
    assert_eq!(
        (r.status, r.region.as_deref()),
        (StatusCode::OK, Some("eu")),
        "{}",
        r.body
    );
    assert_eq!(r.body["tenant_id"], acme.as_str());
    // A live move of that customer to us: the us node pulls its rows from the eu node over
    // the stack's mTLS ([moves] in the generated node configs).
    let (status, started) = admin(
        &stack,
        Method::POST,
        &format!("/admin/v1/tenants/{acme}/move"),
        Some(json!({ "to": "us" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let move_path = format!("/admin/v1/moves/{}", started["move_id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = admin(&stack, Method::GET, &move_path, None).await;
        if m["phase"] == "done" {
            break;
        }
        assert!(
            m["phase"] != "failed" && m["phase"] != "rolled_back",
            "the move over mTLS: {m:#}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the move did not finish: {m:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
    assert_eq!(
        (r.status, r.region.as_deref()),
        (StatusCode::OK, Some("us")),
        "{}",
        r.body
    );
    // Something to find again after a restart.
    let eu = tenant(&stack, "eu", "starter")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (k, v) = bearer(&mint(&dir, &stack, &eu));
    let r = gw
        .call(
            Method::PUT,
            "/v1/configurations/test.marker",
            (k, &v),
            Some(json!({ "value": { "run": 1 } })),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);

    // A region node dies (SIGKILL): `up` restarts it; meanwhile only its region's customers
    // see errors (502 for a request that met the dead connection, then 503 + Retry-After),
    // every other region keeps serving from its own node, and then the region recovers
    // without anyone restarting anything.
    survive_a_killed_node(&dir, &stack, &gw, "apac").await;
    assert!(
        up.log()
            .contains("[apac] exited unexpectedly (signal 9); restarting in"),
        "{}",
        up.log()
    );
    assert!(up.log().contains("[apac] restarted (pid"), "{}", up.log());

    let (ports, pids) = ports_and_children(&dir, &stack);
    let status = up.stop().await;
    assert!(status.success(), "up exited with {status}:\n{}", up.log());
    assert_stopped(&ports, &pids);
    assert!(up.log().contains("[gateway] stopped"), "{}", up.log());

    // Run 2: same directory and prefix: same tenants, same key, the data is still there.
    let mut up = Up::start(&dir, &prefix, base, &[]);
    let again = up.stack(&dir).await;
    check_contract(&dir);
    let ids = |s: &Value| {
        let mut v: Vec<String> = s["demo_tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&again),
        ids(&stack),
        "re-running keeps the demo tenants"
    );
    assert_eq!(
        tenant(&again, "eu", "scale")["api_key"].as_str(),
        Some(key.as_str())
    );
    let gw = Gateway::new(&dir, &again);
    let (k, v) = bearer(&mint(&dir, &again, &eu));
    let r = gw
        .call(Method::GET, "/v1/configurations/test.marker", (k, &v), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["value"], json!({ "run": 1 }));
    let r = gw
        .call(Method::GET, "/v1/workflows", ("x-api-key", &key), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the saved demo key still works: {}",
        r.body
    );
    // This time `up` dies without a chance to clean up (SIGKILL): its children notice that
    // their parent is gone and exit by themselves, freeing their ports.
    let (orphan_ports, orphans) = ports_and_children(&dir, &again);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(up.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = up.wait(STOP_DEADLINE).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !orphans.iter().all(|p| !is_running(*p)) {
        assert!(
            Instant::now() < deadline,
            "children of a SIGKILLed up still run after 30 s: {:?}",
            orphans
                .iter()
                .filter(|p| is_running(**p))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in &orphan_ports {
        assert!(
            TcpListener::bind(("127.0.0.1", *p)).is_ok(),
            "port {p} is still in use"
        );
    }

    // Run 3: --fresh starts over: new tenants, the marker is gone.
    let mut up = Up::start(&dir, &prefix, base, &["--fresh"]);
    let fresh = up.stack(&dir).await;
    for p in &orphans {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        assert!(
            status.is_empty() || status.contains("zombie"),
            "leftover child {p} still runs"
        );
    }
    check_contract(&dir);
    let old: std::collections::HashSet<_> = ids(&stack).into_iter().collect();
    assert!(
        ids(&fresh).iter().all(|id| !old.contains(id)),
        "--fresh made new tenants"
    );
    let gw = Gateway::new(&dir, &fresh);
    let eu_new = tenant(&fresh, "eu", "starter")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (k, v) = bearer(&mint(&dir, &fresh, &eu_new));
    let r = gw
        .call(Method::GET, "/v1/configurations/test.marker", (k, &v), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = gw
        .call(Method::GET, "/v1/configurations/demo.seeded", (k, &v), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the fresh stack is seeded: {}",
        r.body
    );
    // The old tenant is unknown to the fresh directory.
    let (k, v) = bearer(&mint(&dir, &fresh, &eu));
    let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let (ports, pids) = ports_and_children(&dir, &fresh);
    let status = up.stop().await;
    assert!(status.success(), "up exited with {status}:\n{}", up.log());
    assert_stopped(&ports, &pids);

    // --teardown removes the databases and roles (the guard runs it again, harmlessly).
    drop(_teardown);
    let admin = integration_tests::connect(&admin_url()).await;
    let like = format!("{prefix}\\_%");
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE $1) + \
                    (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1)",
            &[&like],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "databases or roles of {prefix} remain");
    assert!(!dir.exists(), "--teardown deletes the stack directory");
}

async fn idp_token(token_url: &str, tenant: &str) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = Request::post(token_url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({ "tenant_id": tenant }).to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// An admin API call on the stack's admin listener: (status, JSON body).
async fn admin(
    stack: &Value,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url = format!("{}{path}", stack["admin"]["url"].as_str().unwrap());
    let mut req = Request::builder().method(method).uri(url).header(
        "authorization",
        format!("Bearer {}", stack["admin"]["token"].as_str().unwrap()),
    );
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let resp = client
        .request(req.body(Full::new(bytes)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn admin_create_tenant(stack: &Value) -> Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url = format!(
        "{}/admin/v1/tenants",
        stack["admin"]["url"].as_str().unwrap()
    );
    let body = json!({ "name": "Acme GmbH", "region": "eu", "tier": "growth" });
    let req = Request::post(url)
        .header(
            "authorization",
            format!("Bearer {}", stack["admin"]["token"].as_str().unwrap()),
        )
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
        .unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// `residency up --pg '…?sslmode=verify-full&sslrootcert=…'` against a Postgres that accepts
/// TLS only: bootstrap, migrations, the nodes' pools, the gateway's directory (reader, LISTEN,
/// admin writer) all connect over verified TLS, and every region answers through the gateway.
#[tokio::test]
async fn up_runs_on_a_tls_only_postgres_with_verify_full() {
    let pg = integration_tests::tls_postgres::TlsPostgres::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("stack");
    let prefix = format!("uptls_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut up = Up::start_on(
        &pg.admin_url(&pg.verify_full()),
        &dir,
        &prefix,
        free_base(),
        &[],
    );
    let stack = up.stack(&dir).await;
    let gw = Gateway::new(&dir, &stack);
    for region in ["us", "eu", "apac"] {
        let t = tenant(&stack, region, "starter");
        let id = t["id"].as_str().unwrap();
        let (k, v) = bearer(&mint(&dir, &stack, id));
        let r = gw.call(Method::GET, "/v1/me", (k, &v), None).await;
        assert_eq!(r.status, StatusCode::OK, "{region}: {}", r.body);
        assert_eq!(r.region.as_deref(), Some(region));
    }
    // The admin API writes the directory over TLS and the gateway's LISTEN sees it.
    let created = admin_create_tenant(&stack).await;
    assert_eq!(created["status"], "active", "{created}");
    let status = up.stop().await;
    assert!(status.success(), "up exited with {status}:\n{}", up.log());
}

/// Runs `up` expecting it to fail at once; returns its exit code and output.
fn fails_fast(args: &[&str]) -> (Option<i32>, String) {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(residency())
        .args(["up", "--prefix", "upt_never", "--dir"])
        .arg(work.path().join("stack"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!work.path().join("stack/stack.json").exists());
    (out.status.code(), text)
}

#[test]
fn unreachable_postgres_is_one_clear_message_with_how_to_start_it() {
    let base = free_base().to_string();
    let (code, text) = fails_fast(&[
        "--pg",
        "postgres://postgres@127.0.0.1:1/postgres",
        "--base-port",
        &base,
    ]);
    assert_eq!(code, Some(69), "{text}");
    assert!(
        text.contains("cannot reach Postgres at postgres://postgres@127.0.0.1:1/postgres"),
        "{text}"
    );
    assert!(text.contains("start Postgres"), "{text}");
    assert!(text.contains("docker"), "{text}");
}

/// A Postgres that answers but refuses the login is named as such (exit 77, how to fix the
/// URL), not as unreachable with how to start it; the deprecated `RESIDENCY_PG` still works,
/// with a warning naming `RESIDENCY_PG_ADMIN_URL`.
#[test]
fn a_rejected_login_is_named_not_unreachable() {
    let role = format!("no_such_role_{}", Uuid::new_v4().simple());
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(residency())
        .args(["up", "--prefix", "upt_never", "--base-port"])
        .arg(free_base().to_string())
        .arg("--dir")
        .arg(work.path().join("stack"))
        .env_remove("RESIDENCY_PG_ADMIN_URL")
        .env(
            "RESIDENCY_PG",
            format!("postgres://{role}@127.0.0.1:5432/postgres"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(77), "{text}");
    assert!(
        text.contains("RESIDENCY_PG is deprecated") && text.contains("RESIDENCY_PG_ADMIN_URL"),
        "{text}"
    );
    assert!(
        text.contains("refused the connection")
            && text.contains("rejected the login")
            && text.contains("SQLSTATE 28000")
            && text.contains(&role),
        "{text}"
    );
    assert!(!text.contains("cannot reach Postgres"), "{text}");
    assert!(!text.contains("start Postgres"), "{text}");
    assert!(!work.path().join("stack/stack.json").exists());
}

#[test]
fn a_port_in_use_is_named() {
    // Another test's stack may take a range between the probe and this bind: probe again.
    let (base, _busy) = (0..20)
        .find_map(|_| {
            let base = free_base();
            TcpListener::bind(("127.0.0.1", base + 4))
                .ok()
                .map(|l| (base, l))
        })
        .expect("a free port range to occupy");
    let (code, text) = fails_fast(&["--pg", &admin_url(), "--base-port", &base.to_string()]);
    assert_eq!(code, Some(71), "{text}");
    assert!(
        text.contains(&format!("port {} (eu region node) is in use", base + 4)),
        "{text}"
    );
    assert!(text.contains("--base-port"), "{text}");
}

#[test]
fn missing_binaries_say_how_to_build_them() {
    let (code, text) = fails_fast(&["--bin-dir", "/nonexistent", "--base-port", "20000"]);
    assert_eq!(code, Some(72), "{text}");
    assert!(text.contains("cargo build --release"), "{text}");
}
