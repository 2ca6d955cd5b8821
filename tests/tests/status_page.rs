//! The status page (`GET /admin/status`) of a real `residency-gateway` with two real region
//! nodes (eu, us) and `[audit]`: who may see it (bearer token or a session cookie from the
//! sign-in form; nothing about customers or regions otherwise), what it shows, and how it looks
//! in a real browser: headless Chromium (Debian's `chromium`, installed here when missing)
//! signs in through the form, the DOM is checked and a screenshot is kept in
//! `target/test-artifacts/status-page.png`.
//!
//! How the browser signs in without the token in a URL: the test writes a local HTML file
//! (mode 0600, in a temporary directory) holding a form that posts the token to
//! `/admin/status/login`; Chromium opens it, the form submits itself, the gateway answers with
//! the session cookie and a same-origin refresh to `/admin/status`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::directory::DirectoryDb;
use integration_tests::gateway::ADMIN_TOKEN;
use integration_tests::process::{region_toml, until, GatewayOptions, GatewayProcess, NodeProcess};
use integration_tests::{Http, RegionDb, Response};
use serde_json::json;
use uuid::Uuid;

struct Deployment {
    gw: GatewayProcess,
    nodes: Vec<NodeProcess>,
    _dbs: Vec<RegionDb>,
    _dir: DirectoryDb,
    /// `(name, id)` of every customer created.
    customers: Vec<(String, String)>,
}

async fn deploy() -> Deployment {
    let (dir, eu, us) = tokio::join!(
        DirectoryDb::create(),
        RegionDb::create("eu"),
        RegionDb::create("us")
    );
    let (n_eu, n_us) = tokio::join!(
        NodeProcess::start(&eu, "eu", &[]),
        NodeProcess::start(&us, "us", &[])
    );
    let regions = [&n_eu, &n_us]
        .iter()
        .map(|n| region_toml(n.region.as_str(), &[n.addr()], &n.key_file()))
        .collect::<String>();
    let mut audit = "[audit]\ntimeout = \"30s\"\n".to_owned();
    for (id, db) in [("eu", &eu), ("us", &us)] {
        audit.push_str(&format!(
            "[audit.regions.{id}]\ndatabase_url = \"{}\"\napp_role = \"{}\"\n",
            db.auditor_url, db.roles[1]
        ));
    }
    let gw = GatewayProcess::start(&GatewayOptions {
        directory_url: &dir.reader_url,
        writer_url: &dir.writer_url,
        regions,
        limits: "",
        extra: &audit,
        jwks: None,
    })
    .await;
    let mut customers = Vec::new();
    for (region, tier) in [
        ("eu", "scale"),
        ("eu", "scale"),
        ("eu", "starter"),
        ("us", "enterprise"),
    ] {
        let name = format!("cust-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let r = gw
            .admin(
                Method::POST,
                "/admin/v1/tenants",
                Some(&json!({
                    "name": name, "region": region, "tier": tier,
                    "owner": { "subject": format!("owner-{name}"), "email": format!("o@{name}.test") },
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        customers.push((name, r.json["id"].as_str().unwrap().to_owned()));
    }
    Deployment {
        gw,
        nodes: vec![n_eu, n_us],
        _dbs: vec![eu, us],
        _dir: dir,
        customers,
    }
}

impl Deployment {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.admin)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        Http::default()
            .send(Method::GET, &self.url(path), headers, None)
            .await
    }

    /// Nothing that names a customer on `r`.
    fn leaks_nothing(&self, r: &Response) {
        for (name, id) in &self.customers {
            assert!(!r.text.contains(name), "{name} leaked: {}", r.text);
            assert!(!r.text.contains(id), "{id} leaked: {}", r.text);
        }
        for marker in [
            "Regions and upstreams",
            "Customers per region",
            "127.0.0.1:",
        ] {
            assert!(!r.text.contains(marker), "{marker} shown: {}", r.text);
        }
    }
}

const BEARER: &str = "authorization";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_status_page_needs_the_admin_token_or_a_session() {
    let d = deploy().await;
    // No credential: a problem for API clients, the sign-in form for browsers, nothing else.
    let r = d.get("/admin/status", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    d.leaks_nothing(&r);
    let r = d.get("/admin/status", &[("accept", "text/html")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.text.contains("action=\"/admin/status/login\""),
        "{}",
        r.text
    );
    d.leaks_nothing(&r);
    // A wrong token, a forged cookie.
    let wrong = bearer("not-the-admin-token");
    let r = d.get("/admin/status", &[(BEARER, &wrong)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    d.leaks_nothing(&r);
    let forged = format!("residency_admin_session={}", "ab".repeat(32));
    for cookie in [
        forged.as_str(),
        &format!("residency_admin_session={ADMIN_TOKEN}"),
    ] {
        let r = d.get("/admin/status", &[("cookie", cookie)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{cookie}");
        d.leaks_nothing(&r);
    }
    let r = d.get("/admin/status/audit", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A wrong token at the form.
    let http = Http::default();
    let r = http
        .send_form(&d.url("/admin/status/login"), &[], "token=guess")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.headers.contains_key("set-cookie"));
    d.leaks_nothing(&r);

    // An organization's owner token opens that organization's admin API, never the
    // platform's status page (neither as a bearer nor at the form).
    let admin = bearer(ADMIN_TOKEN);
    let org = http
        .send(
            Method::POST,
            &d.url("/admin/v1/organizations"),
            &[(BEARER, &admin)],
            Some(&json!({"name": "Status Org", "domain": "status-org.example"})),
        )
        .await;
    assert_eq!(org.status, StatusCode::CREATED, "{org:?}");
    let org_id = org.json["id"].as_str().unwrap().to_owned();
    let tok = http
        .send(
            Method::POST,
            &d.url(&format!("/admin/v1/organizations/{org_id}/tokens")),
            &[(BEARER, &admin)],
            Some(&json!({"name": "ops", "role": "owner"})),
        )
        .await;
    assert_eq!(tok.status, StatusCode::CREATED, "{tok:?}");
    let secret = tok.json["secret"].as_str().unwrap().to_owned();
    let r = d.get("/admin/status", &[(BEARER, &bearer(&secret))]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "org token: {r:?}");
    d.leaks_nothing(&r);
    let r = http
        .send_form(
            &d.url("/admin/status/login"),
            &[],
            &format!("token={secret}"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "org token at the form: {r:?}"
    );
    assert!(!r.headers.contains_key("set-cookie"));

    // The right token at the form: a session cookie that is not the token.
    let r = http
        .send_form(
            &d.url("/admin/status/login"),
            &[],
            &format!("token={ADMIN_TOKEN}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin/status",
        "Max-Age=3600",
    ] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains(ADMIN_TOKEN));
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = d.get("/admin/status", &[("cookie", &cookie)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Regions and upstreams"));
    // The bearer header works too, and signing out ends the session.
    let page = d
        .get("/admin/status", &[(BEARER, &bearer(ADMIN_TOKEN))])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let out = http
        .send_form(&d.url("/admin/status/logout"), &[("cookie", &cookie)], "")
        .await;
    assert_eq!(out.status, StatusCode::OK);
    let r = d.get("/admin/status", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Debian's `chromium`, installed when missing.
fn chromium() -> PathBuf {
    let found = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    if let Some(p) = found("/usr/bin/chromium") {
        return p;
    }
    let status = std::process::Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("run apt-get");
    assert!(status.success(), "apt-get install -y chromium failed");
    found("/usr/bin/chromium").expect("chromium installed")
}

/// Runs headless Chromium on a sign-in page for `admin` (the token in a 0600 file, never in a
/// URL) with `mode` (`--dump-dom` or `--screenshot=<file>`); returns its stdout.
async fn browse(admin: &str, mode: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let signin = tmp.path().join("signin.html");
    std::fs::write(
        &signin,
        format!(
            "<!doctype html><form method=\"post\" action=\"{admin}/admin/status/login\">\
             <input type=\"hidden\" name=\"token\" value=\"{ADMIN_TOKEN}\"></form>\
             <script>document.forms[0].submit()</script>"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&signin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let profile = tmp.path().join("profile");
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            "--window-size=1366,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(format!("file://{}", signin.display()))
        .kill_on_drop(true)
        .output();
    // A bound on a hung browser, not a speed assertion.
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium finished within 2 minutes")
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in the DOM, words separated by single spaces.
fn section_text(dom: &str, id: &str) -> String {
    let doc = tl::parse(dom, tl::ParserOptions::default()).expect("html");
    let parser = doc.parser();
    let node = doc
        .get_element_by_id(id)
        .unwrap_or_else(|| panic!("no #{id} in {dom}"))
        .get(parser)
        .unwrap();
    // Tags become spaces: adjacent cells stay apart.
    let mut text = String::new();
    let mut in_tag = false;
    for c in node.outer_html(parser).chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn the_status_page_shows_the_deployment_in_a_real_browser() {
    let d = deploy().await;
    // Traffic: three answers from eu, one refused request.
    for _ in 0..3 {
        let me = d.gw.me(&d.customers[0].1).await;
        assert_eq!(me.status, StatusCode::OK, "{me:?}");
    }
    let auth = bearer(ADMIN_TOKEN);
    let before = d.get("/admin/status", &[(BEARER, &auth)]).await;
    assert!(
        before
            .text
            .contains("No audit has run on this gateway since it started"),
        "{}",
        before.text
    );
    let none = d.get("/admin/status/audit", &[(BEARER, &auth)]).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let audit = d.gw.admin(Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let outcome = audit.headers["x-audit-outcome"]
        .to_str()
        .unwrap()
        .to_owned();
    let report = d.get("/admin/status/audit", &[(BEARER, &auth)]).await;
    assert_eq!(report.status, StatusCode::OK);
    assert!(report.text.contains("<html"), "{}", report.text);

    // Rates need a first snapshot a second old; on a fast machine the page can be read sooner,
    // so wait for that state on the page itself rather than assert on timing.
    until(
        "a rate window on the status page",
        Duration::from_secs(15),
        || async {
            let page = d.get("/admin/status", &[(BEARER, &auth)]).await;
            page.text.contains("per second over the last").then_some(())
        },
    )
    .await;
    let admin = format!("http://{}", d.gw.admin);
    let dom = browse(&admin, "--dump-dom").await;
    assert!(dom.contains("Residency Gateway status"), "{dom}");

    let regions = section_text(&dom, "regions");
    for want in ["eu", "us", "healthy", "200"] {
        assert!(regions.contains(want), "regions lack {want}: {regions}");
    }
    for node in &d.nodes {
        assert!(regions.contains(&node.base()), "{regions}");
    }
    let customers = section_text(&dom, "customers");
    // eu: starter 1, growth 0, scale 2, enterprise 0, served 3; us: enterprise 1; all: 4.
    assert!(customers.contains("eu 1 0 2 0 3 0"), "{customers}");
    assert!(customers.contains("us 0 0 0 1 1 0"), "{customers}");
    assert!(customers.contains("all 1 0 2 1 4 0"), "{customers}");
    let traffic = section_text(&dom, "traffic");
    assert!(traffic.contains("per second over the last"), "{traffic}");
    let eu_row = traffic
        .split(" eu ")
        .nth(1)
        .unwrap_or_else(|| panic!("no eu row: {traffic}"));
    // req/s, 5xx/s, 4xx/s, total, 5xx total: at least the three answers since start.
    let total: u64 = eu_row.split(' ').nth(3).unwrap().parse().unwrap();
    assert!(total >= 3, "{traffic}");
    let directory = section_text(&dom, "directory");
    assert!(directory.contains("fresh"), "{directory}");
    assert!(directory.contains("postgres"), "{directory}");
    assert!(directory.contains("Last NOTIFY"), "{directory}");
    // Creating the customers notified the gateway.
    assert!(!directory.contains("Last NOTIFY none"), "{directory}");
    let audit = section_text(&dom, "audit");
    let verdict = match outcome.as_str() {
        "clean" => "CLEAN",
        "violations" => "VIOLATIONS",
        _ => "INCOMPLETE",
    };
    assert!(audit.contains(verdict), "{audit}");
    assert!(audit.contains("Open the full report"), "{audit}");

    // The screenshot, kept as an artefact.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let artefacts = target.join("test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let png = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    browse(&admin, &format!("--screenshot={}", png.display())).await;
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
}
