//! `residency audit` against a real local stack started with `residency up`: the stack's own
//! databases, roles, Postgres directory, demo tenants, gateway and nodes. A clean stack audits
//! clean with routing evidence from the running gateway and nodes (reached over the stack's
//! mTLS); a row moved into another region is then found and named (exit 1). The gateway's
//! `GET /admin/v1/audit` (the `[audit]` section `up` writes) gives the same verdicts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use integration_tests::{admin_url, binary, connect, Http};
use serde_json::Value;
use uuid::Uuid;

const STACK_DEADLINE: Duration = Duration::from_secs(240);

/// `up` starts the node and gateway binaries from next to itself: build all three.
fn residency() -> PathBuf {
    let _ = binary("region-node");
    let _ = binary("residency-gateway");
    binary("residency")
}

/// A base port with the 6 ports after it free, below the ephemeral range.
fn free_base() -> u16 {
    let seed = Uuid::new_v4().as_u128();
    for i in 0..200u128 {
        let base = 20_000 + u16::try_from((seed.wrapping_add(i * 7919)) % 10_000).unwrap();
        if (base..base + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range found");
}

/// The running stack: stopped with SIGTERM, then its databases dropped with
/// `up --teardown`, even when the test fails.
struct Stack {
    child: Child,
    dir: PathBuf,
    prefix: String,
    log: PathBuf,
}

impl Stack {
    fn start(dir: &Path) -> Self {
        let prefix = format!("aud{}", &Uuid::new_v4().simple().to_string()[..8]);
        let log = dir.with_extension("up.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(residency())
            .args([
                "up",
                "--pg",
                &admin_url(),
                "--prefix",
                &prefix,
                "--base-port",
            ])
            .arg(free_base().to_string())
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start residency up");
        Self {
            child,
            dir: dir.to_path_buf(),
            prefix,
            log,
        }
    }

    /// Polls for stack.json (written once everything is up); fails early if `up` exits.
    async fn ready(&mut self) -> Value {
        let path = self.dir.join("stack.json");
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if let Ok(bytes) = std::fs::read(&path) {
                return serde_json::from_slice(&bytes).expect("stack.json is JSON");
            }
            let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("residency up exited ({status}):\n{}", log());
            }
            assert!(
                start.elapsed() < STACK_DEADLINE,
                "no stack.json:\n{}",
                log()
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
        }
        let _ = Command::new(residency())
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
    }
}

/// `GET /admin/v1/audit` on the stack's gateway: `(outcome header, report)`.
async fn gateway_audit(stack: &Value) -> (String, Value) {
    let url = format!("{}/admin/v1/audit", stack["admin"]["url"].as_str().unwrap());
    let auth = format!("Bearer {}", stack["admin"]["token"].as_str().unwrap());
    let r = Http::default()
        .send(Method::GET, &url, &[("authorization", &auth)], None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let outcome = r.headers["x-audit-outcome"].to_str().unwrap().to_owned();
    (outcome, r.json)
}

/// `value` with only `keys` (a missing one as `null`).
fn pick(value: &Value, keys: &[&str]) -> Value {
    keys.iter()
        .map(|k| ((*k).to_owned(), value[*k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `pick` on every element of the array `list`.
fn pick_each(list: &Value, keys: &[&str]) -> Value {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| pick(v, keys))
        .collect()
}

/// What the gateway's report and the CLI's must share: verdicts and per-region findings.
/// Row counts are evidence, not verdicts, and the stack is live: its workers run the demo
/// workflows while the two audits read (execution logs, jobs), so they are left out.
fn verdicts(report: &Value) -> Value {
    let regions: Vec<Value> = report["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut region = pick(
                r,
                &[
                    "id",
                    "status",
                    "tables_scanned",
                    "posture",
                    "database",
                    "upstreams",
                ],
            );
            region["tables"] = pick_each(
                &r["tables"],
                &["table", "counted", "rls_enabled", "rls_forced"],
            );
            region["tenants"] = pick_each(
                &r["tenants"],
                &["tenant_id", "home_region", "at_home", "status"],
            );
            region
        })
        .collect();
    let mut shared = pick(report, &["version", "clean", "violations"]);
    shared["regions"] = regions.into();
    shared
}

async fn audit(stack: &Path, extra: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(binary("residency"));
    cmd.arg("audit").arg("--stack").arg(stack).args(extra);
    cmd.output().await.expect("run residency audit")
}

#[tokio::test(flavor = "multi_thread")]
async fn local_stack_audits_clean_then_names_a_moved_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let mut up = Stack::start(&dir);
    let stack = up.ready().await;
    let stack_path = dir.join("stack.json");

    let html = dir.join("audit.html");
    let out = audit(&stack_path, &["--json", "--html", html.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report:#}");
    let regions = report["regions"].as_array().unwrap();
    assert_eq!(
        regions
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["us", "eu", "apac"]
    );
    for r in regions {
        assert_eq!(r["status"], "audited", "{r}");
        assert_eq!(r["tables_scanned"], 13, "{r}");
        assert_eq!(r["posture"]["failed"], 0, "{r}");
        assert!(
            r["database"]["role"]
                .as_str()
                .unwrap()
                .ends_with("_auditor"),
            "{r}"
        );
        // Routing evidence from the running gateway and the region's node.
        assert_eq!(r["routing"]["upstreams_reachable"], 1, "{}", r["routing"]);
        assert!(r["routing"]["requests_total"].is_u64(), "{}", r["routing"]);
        assert_eq!(r["routing"]["misroutes_refused"], 0, "{}", r["routing"]);
    }
    // Every demo tenant is at home in its region.
    for t in stack["demo_tenants"].as_array().unwrap() {
        let home = t["region"].as_str().unwrap();
        let r = regions.iter().find(|r| r["id"] == home).unwrap();
        let placed = r["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["tenant_id"] == t["id"])
            .unwrap_or_else(|| panic!("{} not found in {home}", t["id"]));
        assert_eq!(placed["at_home"], true);
    }
    assert!(std::fs::read_to_string(&html).unwrap().contains("CLEAN"));

    // The gateway's own audit: same verdicts, with evidence from its counters and from the
    // nodes over mTLS.
    let (outcome, from_gateway) = gateway_audit(&stack).await;
    assert_eq!(outcome, "clean", "{from_gateway:#}");
    assert_eq!(verdicts(&from_gateway), verdicts(&report));
    for r in from_gateway["regions"].as_array().unwrap() {
        assert_eq!(r["routing"]["upstreams_reachable"], 1, "{}", r["routing"]);
        assert!(r["routing"]["requests_total"].is_u64(), "{}", r["routing"]);
        assert_eq!(r["routing"]["misroutes_refused"], 0, "{}", r["routing"]);
    }

    // Move a US customer's row into the EU database, as a superuser could.
    let us_tenant = stack["demo_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["region"] == "us")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let eu = stack["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "eu")
        .unwrap();
    let eu_db = url::Url::parse(eu["database_url"].as_str().unwrap()).unwrap();
    let mut as_admin = url::Url::parse(&admin_url()).unwrap();
    as_admin.set_path(eu_db.path());
    connect(as_admin.as_str())
        .await
        .batch_execute(&format!(
            "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id) \
             VALUES ('{us_tenant}', gen_random_uuid(), 'x', 'moved', 'workflow', 'w')"
        ))
        .await
        .unwrap();
    let out = audit(&stack_path, &["--quiet"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("misplaced_rows"), "{stdout}");
    assert!(stdout.contains(&us_tenant), "{stdout}");
    let (outcome, from_gateway) = gateway_audit(&stack).await;
    assert_eq!(outcome, "violations");
    assert!(
        from_gateway["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "misplaced_rows"
                && v["region"] == "eu"
                && v["tenant_id"] == us_tenant.as_str()),
        "{from_gateway:#}"
    );
    drop(up);
}
