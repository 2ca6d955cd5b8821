//! Deployment rehearsal: the shipped compose deployment (`deploy/compose.yaml`, the configs
//! in `deploy/config/`, the secrets `deploy/gen-secrets.sh` generates) run by the real
//! binaries, against a TLS-only Postgres cluster (`tls_postgres`), and one customer request
//! per region served through the gateway. It fails when a shipped file stops working, not
//! only when it stops parsing.
//!
//! What the test does in place of Docker, and nothing more:
//! - it copies `deploy/` (configs, compose file, `gen-secrets.sh`) and runs `gen-secrets.sh`
//!   there, so the passwords, keys and certificates are the ones a user gets;
//! - each service's `command` runs as written (the image's binaries are this build's), with
//!   its `environment` after compose's interpolation (`${VAR}`, `${VAR:?…}` from the generated
//!   `.env`, `$$` → `$`);
//! - a service's bind mounts become copies under a directory of its own, and every
//!   `/etc/residency/` path in its command, environment and mounted configs points there;
//! - **ports**: every `0.0.0.0:<port>` a mounted config listens on becomes `127.0.0.1:<free
//!   port>`, and `//<service>:<port>` in another service's config becomes `//localhost:<that
//!   free port>` (what compose's service DNS does);
//! - **Postgres**: the four compose databases are one TLS-only cluster: `@postgres-<x>:5432/`
//!   becomes `@localhost:<its port>/` and `sslmode=disable` becomes
//!   `sslmode=verify-full&sslrootcert=<its CA>` (the configs' `allow_insecure_transport`
//!   stays as shipped; the cluster refuses clear text);
//! - the one-shot services (those others wait for with `service_completed_successfully`) run
//!   first and must exit 0; then the serving ones start in `depends_on` order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use integration_tests::https::Https;
use integration_tests::tls_postgres::TlsPostgres;
use integration_tests::{binary, Http, Response};
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

const DEADLINE: Duration = Duration::from_secs(60);

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        // Never the developer's own generated secrets.
        if name == "secrets" || name == ".env" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Compose's interpolation: `${VAR}` and `${VAR:?message}` from `env`, `$$` → `$`.
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix('{') {
            let end = body.find('}').expect("unterminated ${");
            let name = body[..end].split([':', '-', '?']).next().unwrap();
            let value = env
                .get(name)
                .unwrap_or_else(|| panic!("compose uses ${{{name}}}, which .env lacks"));
            out.push_str(value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect(),
        Yaml::String(s) => vec![s.clone()],
        Yaml::BadValue => Vec::new(),
        other => panic!("expected strings, got {other:?}"),
    }
}

fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// The test's stand-in for compose: the work directory, the cluster and the port map.
struct Rehearsal {
    work: tempfile::TempDir,
    compose: Yaml,
    env: BTreeMap<String, String>,
    pg: TlsPostgres,
    bin_dir: PathBuf,
    /// `(service, container port)` → host port on 127.0.0.1.
    ports: BTreeMap<(String, u16), u16>,
    children: Vec<(String, tokio::process::Child)>,
}

impl Rehearsal {
    fn new() -> Self {
        for b in ["residency", "region-node", "residency-gateway"] {
            let _ = binary(b);
        }
        let bin_dir = binary("residency").parent().unwrap().to_owned();
        let work = tempfile::tempdir().unwrap();
        let d = work.path().join("deploy");
        copy_tree(&deploy(), &d);
        let out = std::process::Command::new("sh")
            .arg(d.join("gen-secrets.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gen-secrets.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = read(&d.join(".env"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let compose = YamlLoader::load_from_str(&read(&d.join("compose.yaml")))
            .unwrap()
            .remove(0);
        Self {
            work,
            compose,
            env,
            pg: TlsPostgres::start(),
            bin_dir,
            ports: BTreeMap::new(),
            children: Vec::new(),
        }
    }

    fn deploy_dir(&self) -> PathBuf {
        self.work.path().join("deploy")
    }

    fn service(&self, name: &str) -> &Yaml {
        let s = &self.compose["services"][name];
        assert!(!s.is_badvalue(), "compose.yaml has no service {name}");
        s
    }

    fn names(&self) -> Vec<String> {
        self.compose["services"]
            .as_hash()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    }

    fn depends_on(&self, name: &str) -> Vec<(String, String)> {
        match self.service(name)["depends_on"].as_hash() {
            None => Vec::new(),
            Some(h) => h
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v["condition"]
                            .as_str()
                            .unwrap_or("service_started")
                            .to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Services others wait for with `service_completed_successfully`.
    fn one_shot(&self) -> BTreeSet<String> {
        self.names()
            .iter()
            .flat_map(|n| self.depends_on(n))
            .filter(|(_, c)| c == "service_completed_successfully")
            .map(|(d, _)| d)
            .collect()
    }

    /// The Postgres and service-DNS rewrites of a text of service `name`.
    fn rewrite(&self, name: &str, text: &str) -> String {
        let root = self.work.path().join("roots").join(name);
        let mut t = text.replace(
            "/etc/residency/",
            &format!("{}/etc/residency/", root.display()),
        );
        for n in self.names().iter().filter(|n| n.starts_with("postgres-")) {
            t = t.replace(
                &format!("@{n}:5432/"),
                &format!("@localhost:{}/", self.pg.port),
            );
        }
        t = t.replace(
            "sslmode=disable",
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                self.pg.ca_file.display()
            ),
        );
        for ((service, port), host) in &self.ports {
            t = t.replace(
                &format!("//{service}:{port}"),
                &format!("//localhost:{host}"),
            );
        }
        t
    }

    /// Copies service `name`'s bind mounts under its root, rewriting mounted configs
    /// (listen ports first, then the other rewrites).
    fn mount(&mut self, name: &str) {
        let root = self.work.path().join("roots").join(name);
        for v in strings(&self.service(name)["volumes"]) {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
            let Some(src) = src.strip_prefix("./") else {
                continue; // a named volume (the databases' data)
            };
            let from = self.deploy_dir().join(src);
            let to = root.join(dst.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if to.extension().is_some_and(|e| e == "toml") {
                let mut text = read(&from);
                while let Some(i) = text.find("\"0.0.0.0:") {
                    let rest = &text[i + 9..];
                    let end = rest.find('"').unwrap();
                    let port: u16 = rest[..end].parse().unwrap();
                    let host = free_port();
                    self.ports.insert((name.to_owned(), port), host);
                    text = format!("{}\"127.0.0.1:{host}\"{}", &text[..i], &rest[end + 1..]);
                }
                std::fs::write(&to, self.rewrite(name, &text)).unwrap();
            } else {
                std::fs::copy(&from, &to)
                    .unwrap_or_else(|e| panic!("{name}: mount {}: {e}", from.display()));
            }
        }
    }

    /// The command of service `name`, with its environment, ready to run.
    fn command(&mut self, name: &str) -> tokio::process::Command {
        self.mount(name);
        let svc = self.service(name).clone();
        let argv: Vec<String> = strings(&svc["command"])
            .iter()
            .map(|a| self.rewrite(name, &interpolate(a, &self.env)))
            .collect();
        assert!(!argv.is_empty(), "{name} has no command");
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear();
        cmd.env(
            "PATH",
            format!(
                "{}:{}",
                self.bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        if let Some(env) = svc["environment"].as_hash() {
            for (k, v) in env {
                let value = self.rewrite(name, &interpolate(&scalar(v), &self.env));
                cmd.env(k.as_str().unwrap(), value);
            }
        }
        let log = self.work.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Runs a one-shot service to completion; it must exit 0.
    async fn run(&mut self, name: &str) {
        let status = self.command(name).status().await.unwrap();
        assert!(
            status.success(),
            "{name} exited {status}:\n{}",
            self.log(name)
        );
    }

    /// Starts a serving service and waits until every port it listens on accepts.
    async fn start(&mut self, name: &str) {
        let child = self.command(name).spawn().unwrap();
        self.children.push((name.to_owned(), child));
        let ports: Vec<u16> = self
            .ports
            .iter()
            .filter(|((s, _), _)| s == name)
            .map(|(_, h)| *h)
            .collect();
        assert!(!ports.is_empty(), "{name} listens on no 0.0.0.0 port");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        for port in ports {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                self.alive(name);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} never listened on {port}:\n{}",
                    self.log(name)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn alive(&mut self, name: &str) {
        let log = self.log(name);
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited {status}:\n{log}");
        }
    }

    fn host_port(&self, service: &str, port: u16) -> u16 {
        *self
            .ports
            .get(&(service.to_owned(), port))
            .unwrap_or_else(|| panic!("{service} does not listen on {port}"))
    }

    /// Serving services in `depends_on` order.
    fn serving(&self) -> Vec<String> {
        let one_shot = self.one_shot();
        let mut left: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !n.starts_with("postgres-") && !one_shot.contains(n))
            .collect();
        let mut out = Vec::new();
        while !left.is_empty() {
            let i = left
                .iter()
                .position(|n| self.depends_on(n).iter().all(|(d, _)| !left.contains(d)))
                .expect("a depends_on cycle");
            out.push(left.remove(i));
        }
        out
    }
}

/// Polls `probe` until it returns `Some` or the deadline passes.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{what}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_compose_deployment_serves_every_region_on_a_tls_only_postgres() {
    let mut r = Rehearsal::new();
    // The one-shot set-up, as compose runs it before anything serves.
    let one_shot = r.one_shot();
    assert!(one_shot.contains("directory-init"), "{one_shot:?}");
    for name in &one_shot {
        r.run(name).await;
    }
    let serving = r.serving();
    assert_eq!(
        serving.last().map(String::as_str),
        Some("gateway"),
        "{serving:?}"
    );
    for name in &serving {
        r.start(name).await;
    }

    let secrets = r.deploy_dir().join("secrets");
    let token = read(&secrets.join("admin.token")).trim().to_owned();
    let admin = format!("http://127.0.0.1:{}", r.host_port("gateway", 9090));
    let public = format!("https://localhost:{}", r.host_port("gateway", 8443));
    let http = Http::default();
    let bearer = format!("Bearer {token}");
    until("the gateway's /readyz", || async {
        let resp = http
            .send(Method::GET, &format!("{admin}/readyz"), &[], None)
            .await;
        (resp.status == StatusCode::OK)
            .then_some(())
            .ok_or(resp.text)
    })
    .await;
    // Clients trust the deployment's CA, which signed the gateway's certificate.
    let client = Https::new(&secrets.join("ca.pem"), None);
    for region in ["us", "eu", "apac"] {
        // The admin API provisions the customer on its home node (over mTLS) ...
        let body =
            json!({"name": format!("rehearsal-{region}"), "region": region, "tier": "scale"});
        let created: Response = until(&format!("creating a tenant in {region}"), || async {
            let resp = http
                .send(
                    Method::POST,
                    &format!("{admin}/admin/v1/tenants"),
                    &[("authorization", &bearer)],
                    Some(&body),
                )
                .await;
            if resp.status == StatusCode::CREATED {
                Ok(resp)
            } else {
                Err(format!("{resp:?}"))
            }
        })
        .await;
        let id = created.json["id"].as_str().unwrap().to_owned();
        let key = http
            .send(
                Method::POST,
                &format!("{admin}/admin/v1/tenants/{id}/api-keys"),
                &[("authorization", &bearer)],
                Some(&json!({"name": "rehearsal"})),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{key:?}");
        let api_key = key.json["api_key"].as_str().unwrap().to_owned();
        // ... and a customer request is served from that region.
        let me = until(&format!("GET /v1/me in {region}"), || async {
            let resp = client
                .send(
                    Method::GET,
                    &format!("{public}/v1/me"),
                    &[("x-api-key", &api_key)],
                    None,
                )
                .await?;
            if resp.status == StatusCode::OK {
                Ok(resp)
            } else {
                Err(format!("{resp:?}"))
            }
        })
        .await;
        assert_eq!(me.json["tenant_id"], id.as_str(), "{me:?}");
        assert_eq!(me.json["region"], region, "{me:?}");
        assert_eq!(
            me.headers
                .get("x-residency-region")
                .and_then(|v| v.to_str().ok()),
            Some(region),
            "{me:?}"
        );
    }
    for name in one_shot.iter().chain(&serving) {
        let log = r.log(name);
        for (var, secret) in &r.env {
            assert!(
                !log.contains(secret.as_str()),
                "{name} logged {var}:\n{log}"
            );
        }
    }
}
