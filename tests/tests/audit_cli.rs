//! `residency audit` as a real process: exit codes, the three output formats, the input
//! sources (stack.json with a directory file or the Postgres directory, audit.toml), and the
//! documented JSON schema (`docs/audit.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration_tests::directory::DirectoryDb;
use integration_tests::{binary, connect, AuditFixture, Node, NodeOptions, RegionDb};
use residency_audit::ViolationKind;
use serde_json::Value;
use uuid::Uuid;

fn audit(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(binary("residency"))
        .arg("audit")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run residency")
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks a report against the schema documented in docs/audit.md (version 1).
fn assert_schema(report: &Value) {
    let obj = report.as_object().expect("report is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["clean", "regions", "version", "violations"]);
    assert_eq!(report["version"], 1);
    assert!(report["clean"].is_boolean());
    let kinds: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.as_str()).collect();
    for v in report["violations"].as_array().expect("violations array") {
        let v = v.as_object().expect("violation object");
        for k in v.keys() {
            assert!(
                ["kind", "region", "tenant_id", "table", "role", "detail"].contains(&k.as_str()),
                "unexpected violation field {k}"
            );
        }
        assert!(kinds.contains(&v["kind"].as_str().expect("kind")), "{v:?}");
        assert!(v["region"].is_string() && v["detail"].is_string(), "{v:?}");
        for opt in ["tenant_id", "table", "role"] {
            assert!(v.get(opt).is_none_or(Value::is_string), "{opt}: {v:?}");
        }
    }
    for r in report["regions"].as_array().expect("regions array") {
        for (key, check) in [
            ("id", Value::is_string as fn(&Value) -> bool),
            ("display_name", Value::is_string),
            ("location", Value::is_string),
            ("upstreams", Value::is_array),
            ("database", Value::is_object),
            ("app_role", Value::is_string),
            ("status", Value::is_string),
            ("tables_scanned", Value::is_u64),
            ("rows_total", Value::is_u64),
            ("tables", Value::is_array),
            ("tenants", Value::is_array),
            ("posture", Value::is_object),
            ("duration_ms", Value::is_u64),
        ] {
            assert!(r.get(key).is_some_and(check), "region.{key}: {r}");
        }
        assert!(["audited", "unreachable", "failed"].contains(&r["status"].as_str().unwrap()));
        let db = &r["database"];
        assert!(
            db["host"].is_string()
                && db["port"].is_u64()
                && db["name"].is_string()
                && db["role"].is_string()
        );
        for t in r["tables"].as_array().unwrap() {
            assert!(t["table"].is_string() && t["rows"].is_u64() && t["tenants"].is_u64());
            assert!(
                t["counted"].is_boolean()
                    && t["rls_enabled"].is_boolean()
                    && t["rls_forced"].is_boolean()
            );
        }
        for t in r["tenants"].as_array().unwrap() {
            assert!(t["tenant_id"].is_string() && t["rows"].is_u64() && t["at_home"].is_boolean());
            assert!(t["tables"].as_object().unwrap().values().all(Value::is_u64));
        }
        let p = &r["posture"];
        assert!(p["passed"].is_u64() && p["failed"].is_u64());
        for c in p["checks"].as_array().unwrap() {
            assert!(c["name"].is_string() && c["description"].is_string());
            assert!(c["checked"].is_u64() && c["failures"].is_u64());
        }
    }
}

fn docs() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_violation_kind_is_documented() {
    let docs = docs();
    for k in ViolationKind::ALL {
        assert!(
            docs.contains(&format!("`{}`", k.as_str())),
            "docs/audit.md misses {k}"
        );
    }
}

/// Parses the HTML page and returns (verdict, violation rows, region cards, tenant rows).
fn html_summary(html: &str) -> (String, Vec<String>, usize, Vec<String>) {
    let dom = tl::parse(html, tl::ParserOptions::default()).expect("html parses");
    let parser = dom.parser();
    let verdict = dom
        .get_element_by_id("verdict")
        .expect("verdict element")
        .get(parser)
        .unwrap()
        .inner_text(parser)
        .into_owned();
    let rows = |selector: &str| -> Vec<String> {
        dom.query_selector(selector)
            .map(|it| {
                it.filter_map(|h| h.get(parser))
                    .map(|n| n.inner_text(parser).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let violations = rows("tr.violation");
    let regions = rows("section.region").len();
    let tenants = rows("tr.tenant");
    assert!(
        dom.query_selector("script")
            .is_none_or(|mut it| it.next().is_none()),
        "the page must not contain any script element"
    );
    (verdict, violations, regions, tenants)
}

/// Takes a screenshot of the page with headless Chromium when it is installed, kept as
/// `target/test-artifacts/<name>.png`.
fn screenshot(page: &Path, name: &str) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new("which")
                .arg(c)
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("chromium not installed: html checked by parsing only");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let status = Command::new("timeout")
        .arg("90")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=1280,1600")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        status.status.success(),
        "chromium: {}",
        text(&status.stderr)
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        png.display()
    );
}

#[tokio::test]
async fn clean_stack_exits_0_in_every_format() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (stack, directory) = fx.write_stack(dir.path());

    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("Residency audit: CLEAN"), "{stdout}");
    assert!(stdout.contains("VIOLATIONS: none"), "{stdout}");
    for region in ["us", "eu"] {
        assert!(stdout.contains(&fx.tenant(region).to_string()), "{stdout}");
        assert!(
            stderr.contains(&format!("audit: {region}: connecting to")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("audit: {region}: [13/13]")),
            "{stderr}"
        );
    }

    let html = dir.path().join("report.html");
    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--json"),
        os("--quiet"),
        os("--html"),
        os(&html),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "--quiet: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_schema(&report);
    assert_eq!(report["clean"], true);
    assert_eq!(report["violations"], serde_json::json!([]));
    assert_eq!(report["regions"][1]["id"], "eu");
    assert_eq!(report["regions"][1]["tables_scanned"], 13);

    let page = std::fs::read_to_string(&html).unwrap();
    let (verdict, violations, regions, tenants) = html_summary(&page);
    assert_eq!(verdict, "CLEAN");
    assert!(violations.is_empty());
    assert_eq!(regions, 2);
    assert_eq!(tenants.len(), 2, "{tenants:?}");
    screenshot(&html, "audit-clean");
}

#[tokio::test]
async fn seeded_fault_exits_1_and_is_named_in_every_format() {
    let mut fx = AuditFixture::create(&["us", "eu"]).await;
    let us_tenant = fx.tenant("us");
    // Directory text reaches the page: it must be escaped.
    fx.tenants[0].name = "<script>alert('x')</script> & co".into();
    fx.admin_exec(
        "eu",
        &format!(
            "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id) \
             VALUES ('{us_tenant}', gen_random_uuid(), 'x', 'leak', 'workflow', 'w')"
        ),
    )
    .await;
    let app = fx.db("eu").roles[1].clone();
    fx.admin_exec("eu", &format!("GRANT TRUNCATE ON members TO \"{app}\""))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (stack, directory) = fx.write_stack(dir.path());
    let html = dir.path().join("report.html");

    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--html"),
        os(&html),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("Residency audit: VIOLATIONS"),
        "{stdout}"
    );
    assert!(stdout.contains("misplaced_rows") && stdout.contains(&us_tenant.to_string()));
    assert!(stdout.contains("app_role_privilege") && stdout.contains(&app));
    assert!(stderr.contains("2 violation(s) found"), "{stderr}");

    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&report);
    assert_eq!(report["clean"], false);
    let v = report["violations"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["kind"], "misplaced_rows");
    assert_eq!(v[0]["region"], "eu");
    assert_eq!(v[0]["tenant_id"], us_tenant.to_string());
    assert_eq!(v[0]["table"], "audit_events");
    assert_eq!(v[1]["kind"], "app_role_privilege");
    assert_eq!(v[1]["table"], "members");
    assert_eq!(v[1]["role"], app);

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    let (verdict, violations, regions, tenants) = html_summary(&page);
    assert_eq!(verdict, "VIOLATIONS");
    assert_eq!(violations.len(), 2);
    assert!(
        violations[0].contains("misplaced_rows") && violations[0].contains(&us_tenant.to_string())
    );
    assert_eq!(regions, 2);
    assert_eq!(tenants.len(), 2);
    screenshot(&html, "audit-violations");
}

#[tokio::test]
async fn unreachable_region_database_exits_2_naming_the_region() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (stack, directory) = fx.write_stack(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut json: Value = serde_json::from_slice(&std::fs::read(&stack).unwrap()).unwrap();
    json["regions"][1]["auditor_database_url"] =
        format!("postgres://aud:secretpass@127.0.0.1:{port}/gone").into();
    std::fs::write(&stack, serde_json::to_vec(&json).unwrap()).unwrap();

    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--json"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not run: region eu: cannot connect to 127.0.0.1:{port}/gone"
        )),
        "{stderr}"
    );
    let report: Value =
        serde_json::from_slice(&out.stdout).expect("the partial report is still printed");
    assert_schema(&report);
    assert_eq!(report["clean"], false);
    assert_eq!(report["regions"][1]["status"], "unreachable");
    assert_eq!(report["regions"][0]["status"], "audited");
    assert!(!text(&out.stdout).contains("secretpass") && !stderr.contains("secretpass"));
}

#[test]
fn bad_input_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.json");
    std::fs::write(
        &stack,
        r#"{"regions": [{"id": "eu", "database_url": "postgres://o@127.0.0.1/x"}]}"#,
    )
    .unwrap();
    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os("nope.toml"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: regions[0].app_database_url", stack.display())),
        "{stderr}"
    );

    let missing = dir.path().join("audit.toml");
    let out = audit(&[os("--config"), os(&missing)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read file", missing.display())),
        "{stderr}"
    );

    // No stack here and none given.
    let out = Command::new(binary("residency"))
        .arg("audit")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(".residency/stack.json"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn audit_toml_deployment_config_is_accepted() {
    let fx = AuditFixture::create(&["apac"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, directory) = fx.write_stack(dir.path());
    let db = fx.db("apac");
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\nsource = \"file\"\npath = \"directory.toml\"\n\n\
             [[regions]]\nid = \"apac\"\ndisplay_name = \"Asia Pacific\"\nlocation = \"Singapore, SG\"\n\
             auditor_database_url = \"{}\"\napp_role = \"{}\"\nupstreams = [\"http://apac.invalid:8080\"]\n",
            db.auditor_url, db.roles[1]
        ),
    )
    .unwrap();
    assert!(directory.exists());
    let out = audit(&[os("--config"), os(&config), os("--json")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&report);
    assert_eq!(report["regions"][0]["location"], "Singapore, SG");
    assert_eq!(
        report["regions"][0]["upstreams"][0],
        "http://apac.invalid:8080"
    );
}

#[tokio::test]
async fn stack_with_the_postgres_directory() {
    let directory = DirectoryDb::create().await;
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions { pool_size: 1 }).await;
    let (home, missing) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(home, "pg-directory-customer").await;
    node.stop().await;
    let dir_client = connect(&directory.url).await;
    dir_client
        .batch_execute(&format!(
            "SELECT set_config('residency.actor', 'test', false);
             INSERT INTO tenants (id, name, region, tier, status)
             VALUES ('{home}', 'pg-directory-customer', 'eu', 'scale', 'active')"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.json");
    std::fs::write(
        &stack,
        serde_json::to_vec(&serde_json::json!({
            "directory": { "database_url": directory.url },
            "regions": [{ "id": "eu", "node_url": "http://eu.invalid:8080",
                          "database_url": db.owner_url, "app_database_url": db.app_url,
                          "auditor_database_url": db.auditor_url }]
        }))
        .unwrap(),
    )
    .unwrap();
    let out = audit(&[os("--stack"), os(&stack), os("--json")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["regions"][0]["tenants"][0]["tenant_id"],
        home.to_string()
    );
    assert_eq!(report["regions"][0]["tenants"][0]["at_home"], true);

    // A customer active in the directory but never provisioned in its region.
    dir_client
        .batch_execute(&format!(
            "SELECT set_config('residency.actor', 'test', false);
             INSERT INTO tenants (id, name, region, tier, status)
             VALUES ('{missing}', 'never-provisioned', 'eu', 'starter', 'active')"
        ))
        .await
        .unwrap();
    let out = audit(&[os("--stack"), os(&stack), os("--json")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["violations"][0]["kind"], "missing_home_record");
    assert_eq!(report["violations"][0]["tenant_id"], missing.to_string());

    // The directory unreachable: could not run.
    let mut json: Value = serde_json::from_slice(&std::fs::read(&stack).unwrap()).unwrap();
    json["directory"]["database_url"] = "postgres://d@127.0.0.1:1/directory".into();
    std::fs::write(&stack, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = audit(&[os("--stack"), os(&stack)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("directory at 127.0.0.1:1/directory"),
        "{stderr}"
    );
}

/// Serves `body` as `/metrics` to every connection; with `token`, only to requests carrying
/// `Authorization: Bearer <token>` (others get 401). Returns the base URL.
async fn fake_metrics(body: &'static str, token: Option<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let authorized = token.is_none_or(|t| {
                    head.contains(&format!("authorization: bearer {}", t.to_ascii_lowercase()))
                });
                let (status, body) = if !head.starts_with("get /metrics ") {
                    ("404 Not Found", "")
                } else if authorized {
                    ("200 OK", body)
                } else {
                    ("401 Unauthorized", "")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

// Multi-threaded: the fake servers keep serving while the test blocks on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_evidence_comes_from_gateway_and_node_metrics() {
    let fx = AuditFixture::create(&["us", "eu"]).await;
    let gateway = fake_metrics(
        "# TYPE residency_gateway_requests_total counter\n\
         residency_gateway_requests_total{region=\"us\",status_class=\"2xx\"} 10\n\
         residency_gateway_requests_total{region=\"us\",status_class=\"4xx\"} 2\n\
         residency_gateway_requests_total{region=\"none\",status_class=\"4xx\"} 9\n",
        Some("admintoken"),
    )
    .await;
    let node = fake_metrics(
        "residency_node_misdirected_requests_total 3\nresidency_node_requests_total{route=\"/v1/me\"} 40\n",
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (stack, directory) = fx.write_stack(dir.path());
    let mut json: Value = serde_json::from_slice(&std::fs::read(&stack).unwrap()).unwrap();
    json["admin"] = serde_json::json!({ "url": gateway, "token": "admintoken" });
    json["regions"][0]["node_url"] = node.clone().into();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    json["regions"][1]["node_url"] = format!("http://{dead}").into();
    std::fs::write(&stack, serde_json::to_vec(&json).unwrap()).unwrap();

    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--json"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&report);
    let us = &report["regions"][0]["routing"];
    assert_eq!(us["requests_total"], 12, "{us}");
    assert_eq!(us["misroutes_refused"], 3, "{us}");
    assert_eq!(us["upstreams_reachable"], 1, "{us}");
    let eu = &report["regions"][1]["routing"];
    assert_eq!(eu["requests_total"], 0, "{eu}");
    assert!(eu.get("misroutes_refused").is_none(), "{eu}");
    assert_eq!(eu["upstreams_reachable"], 0, "{eu}");
    assert!(
        eu["source"].as_str().unwrap().contains(&dead.to_string()),
        "{eu}"
    );

    // A wrong admin token: the gateway's figures are left out, the audit still runs.
    json["admin"]["token"] = "wrong".into();
    std::fs::write(&stack, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = audit(&[
        os("--stack"),
        os(&stack),
        os("--directory-file"),
        os(&directory),
        os("--json"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["regions"][0]["routing"]
        .get("requests_total")
        .is_none());
    assert!(
        text(&out.stderr).contains("status 401"),
        "{}",
        text(&out.stderr)
    );
}
