//! Deployment rehearsal: the shipped deployments run by the real binaries against a TLS-only
//! Postgres cluster, and one customer request per region served through the gateway. A
//! shipped file that stops working fails here, not only one that stops parsing.
//!
//! - **compose**: `deploy/compose.yaml`, `deploy/config/`, and the secrets
//!   `deploy/gen-secrets.sh` generates (run on a copy of `deploy/`). Every service's `command`
//!   runs as written with its `environment` after compose's interpolation (`${VAR}`,
//!   `${VAR:?…}` from the generated `.env`, `$$` → `$`) and its bind-mounted files; the
//!   one-shot services (those others wait for with `service_completed_successfully`) run
//!   first and must exit 0, then the serving ones start in `depends_on` order.
//! - **Kubernetes**: `deploy/k8s/base` with each overlay's `node.toml` and `gateway.toml`:
//!   the Jobs (`directory-init`, then `region-node-init` per region) and the Deployments
//!   (`region-node` per region, then every region's `gateway`) run their containers'
//!   `command` + `args` with the `env` and the volume mounts of the manifests, from Secrets
//!   and ConfigMaps the test fills the way the manifests' comments ask an operator to
//!   (Postgres URLs with `sslmode=verify-full&sslrootcert=/etc/residency/postgres/ca.pem`,
//!   `kubernetes.io/tls` Secrets with `tls.crt`, `tls.key`, `ca.crt`); readiness is the
//!   manifests' own `readinessProbe`, without a client certificate.
//!
//! What the test substitutes in place of Docker or a cluster is only this (see
//! `integration_tests::rehearsal`): paths (`/etc/residency/…` → a directory per workload),
//! listen ports (`0.0.0.0:<port>` → a free loopback port), service names in upstream URLs
//! (`//region-node-us:8080`, `//region-node.residency-us.svc:8080`,
//! `//region-node.us.residency.internal:8080` → `//localhost:<that node's port>`), and for
//! compose the Postgres host names (`@postgres-<x>:5432/` → the cluster) with
//! `sslmode=disable` → `verify-full` (compose's Postgres runs in clear text on internal
//! networks; the cluster accepts TLS only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use integration_tests::https::Https;
use integration_tests::rehearsal::{until, Runner, Workload};
use integration_tests::tls_postgres::{ca, leaf};
use integration_tests::{Http, Response};
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

const REGIONS: [&str; 3] = ["us", "eu", "apac"];

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(p: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
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

fn password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Through the gateway at `admin` (its admin listener) the admin API creates a `scale`
/// customer in every region (provisioned on its home node) with an API key; then through
/// every public listener in `publics` (trusting `ca`) `GET /v1/me` answers from the
/// customer's home region.
async fn one_request_per_region(admin: &str, token: &str, publics: &[String], ca: &Path) {
    let http = Http::default();
    let bearer = format!("Bearer {token}");
    let client = Https::new(ca, None);
    for region in REGIONS {
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
        for public in publics {
            let me = until(&format!("GET {public}/v1/me in {region}"), || async {
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
    }
}

/// `GET` `url` until it answers 200.
async fn until_ok(what: &str, url: &str) {
    let http = Http::default();
    until(what, || async {
        let r = http.send(Method::GET, url, &[], None).await;
        (r.status == StatusCode::OK).then_some(()).ok_or(r.text)
    })
    .await;
}

/// Asserts that no workload printed any of `secrets`.
fn no_secret_logged(runner: &Runner, names: &[String], secrets: &[String]) {
    for name in names {
        let log = runner.log(name);
        for s in secrets {
            assert!(!log.contains(s.as_str()), "{name} logged a secret:\n{log}");
        }
    }
}

// --- compose ----------------------------------------------------------------------------

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

struct Compose {
    dir: PathBuf,
    file: Yaml,
    env: BTreeMap<String, String>,
}

impl Compose {
    fn names(&self) -> Vec<String> {
        self.file["services"]
            .as_hash()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    }

    fn service(&self, name: &str) -> &Yaml {
        let s = &self.file["services"][name];
        assert!(!s.is_badvalue(), "compose.yaml has no service {name}");
        s
    }

    fn depends_on(&self, name: &str) -> Vec<(String, String)> {
        self.service(name)["depends_on"]
            .as_hash()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let cond = v["condition"].as_str().unwrap_or("service_started");
                (k.as_str().unwrap().to_owned(), cond.to_owned())
            })
            .collect()
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

    /// The other services (but the databases) in `depends_on` order.
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

    fn workload(&self, name: &str) -> Workload {
        let s = self.service(name);
        let env = s["environment"]
            .as_hash()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = interpolate(&scalar(v), &self.env);
                (k.as_str().unwrap().to_owned(), v)
            })
            .collect();
        let files = strings(&s["volumes"])
            .iter()
            .filter_map(|v| {
                let mut parts = v.split(':');
                let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
                // Named volumes (the databases' data) are not files.
                let src = src.strip_prefix("./")?;
                let bytes = std::fs::read(self.dir.join(src))
                    .unwrap_or_else(|e| panic!("{name}: mount ./{src}: {e}"));
                Some((dst.to_owned(), bytes))
            })
            .collect();
        Workload {
            name: name.to_owned(),
            argv: strings(&s["command"])
                .iter()
                .map(|a| interpolate(a, &self.env))
                .collect(),
            env,
            files,
        }
    }
}

#[tokio::test]
async fn the_compose_deployment_serves_every_region_on_a_tls_only_postgres() {
    let mut runner = Runner::new();
    let dir = runner.dir().join("deploy");
    copy_tree(&deploy(), &dir);
    let out = std::process::Command::new("sh")
        .arg(dir.join("gen-secrets.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen-secrets.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose = Compose {
        file: yaml(&dir.join("compose.yaml")).remove(0),
        env: read(&dir.join(".env"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        dir,
    };
    for n in compose.names() {
        if n.starts_with("postgres-") {
            runner.postgres_host(&format!("{n}:5432"));
        } else {
            runner.alias(&n, &n);
        }
    }
    runner.clear_text_postgres_becomes_tls();

    let one_shot = compose.one_shot();
    assert!(one_shot.contains("directory-init"), "{one_shot:?}");
    for name in &one_shot {
        runner.run(&compose.workload(name)).await;
    }
    let serving = compose.serving();
    assert_eq!(
        serving.last().map(String::as_str),
        Some("gateway"),
        "{serving:?}"
    );
    for name in &serving {
        runner.start(&compose.workload(name)).await;
    }

    let secrets = compose.dir.join("secrets");
    let admin = format!("http://127.0.0.1:{}", runner.host_port("gateway", 8480));
    until_ok("the gateway's /readyz", &format!("{admin}/readyz")).await;
    // Clients trust the deployment's CA, which signed the gateway's certificate.
    one_request_per_region(
        &admin,
        read(&secrets.join("admin.token")).trim(),
        &[format!(
            "https://localhost:{}",
            runner.host_port("gateway", 8443)
        )],
        &secrets.join("ca.pem"),
    )
    .await;
    let names: Vec<String> = one_shot.iter().chain(&serving).cloned().collect();
    let values: Vec<String> = compose.env.values().cloned().collect();
    no_secret_logged(&runner, &names, &values);
}

// --- Kubernetes -------------------------------------------------------------------------

/// Secrets and ConfigMaps of one namespace: name → key → content.
#[derive(Default, Clone)]
struct Namespace {
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Namespace {
    fn secret(&mut self, name: &str, key: &str, value: impl Into<Vec<u8>>) {
        self.secrets
            .entry(name.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    fn config_map(&mut self, name: &str, key: &str, value: impl Into<Vec<u8>>) {
        self.config_maps
            .entry(name.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    fn source(&self, volume: &Yaml) -> &BTreeMap<String, Vec<u8>> {
        if let Some(n) = volume["secret"]["secretName"].as_str() {
            return self
                .secrets
                .get(n)
                .unwrap_or_else(|| panic!("the rehearsal has no Secret {n}"));
        }
        let n = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {volume:?}"));
        self.config_maps
            .get(n)
            .unwrap_or_else(|| panic!("the rehearsal has no ConfigMap {n}"))
    }

    /// The workload of `pod`'s first container, named `name`.
    fn workload(&self, name: &str, pod: &Yaml) -> Workload {
        let c = &pod["containers"][0];
        let mut argv = strings(&c["command"]);
        argv.extend(strings(&c["args"]));
        let env = c["env"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|e| {
                let key = e["name"].as_str().unwrap().to_owned();
                if let Some(v) = e["value"].as_str() {
                    return (key, v.to_owned());
                }
                let r = &e["valueFrom"]["secretKeyRef"];
                let (secret, k) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                let v = self
                    .secrets
                    .get(secret)
                    .and_then(|s| s.get(k))
                    .unwrap_or_else(|| panic!("{name}: env {key}: no Secret {secret} key {k}"));
                (key, String::from_utf8(v.clone()).unwrap())
            })
            .collect();
        let mut files = Vec::new();
        for m in c["volumeMounts"].as_vec().into_iter().flatten() {
            let at = m["mountPath"].as_str().unwrap().trim_end_matches('/');
            let vol = pod["volumes"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("{name}: no volume {:?}", m["name"]));
            let src = self.source(vol);
            match m["subPath"].as_str() {
                Some(sub) => files.push((at.to_owned(), src[sub].clone())),
                None => files.extend(src.iter().map(|(k, v)| (format!("{at}/{k}"), v.clone()))),
            }
        }
        Workload {
            name: name.to_owned(),
            argv,
            env,
            files,
        }
    }
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("base lacks {kind} {name}"))
}

fn pod(doc: &Yaml) -> &Yaml {
    &doc["spec"]["template"]["spec"]
}

/// Waits until the pod's `readinessProbe` (plain `httpGet` on a named port) answers 200.
async fn until_probe_ready(runner: &Runner, name: &str, pod: &Yaml) {
    let c = &pod["containers"][0];
    let get = &c["readinessProbe"]["httpGet"];
    let port_name = get["port"].as_str().expect("a named probe port");
    let port = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(port_name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap();
    let host = runner.host_port(name, u16::try_from(port).unwrap());
    let path = get["path"].as_str().unwrap();
    until_ok(
        &format!("{name}: readinessProbe {path}"),
        &format!("http://127.0.0.1:{host}{path}"),
    )
    .await;
}

#[tokio::test]
async fn the_kubernetes_overlays_serve_every_region_on_a_tls_only_postgres() {
    let mut runner = Runner::new();
    let docs: Vec<Yaml> = [
        "init.yaml",
        "directory-init.yaml",
        "region-node.yaml",
        "gateway.yaml",
    ]
    .iter()
    .flat_map(|f| yaml(&deploy().join("k8s/base").join(f)))
    .collect();
    let pg_port = runner.pg.port;
    let tls = "sslmode=verify-full&sslrootcert=/etc/residency/postgres/ca.pem";
    let url = |user: &str, pw: &str, db: &str| {
        format!("postgres://{user}:{pw}@localhost:{pg_port}/{db}?{tls}")
    };
    // The operator's material: one internal CA for node and gateway client certificates, a
    // public one for the gateway's listener, keys, passwords.
    let (internal_ca, internal) = ca("residency internal CA");
    let (public_ca, public) = ca("public CA");
    let public_ca_file = runner.dir().join("public-ca.pem");
    std::fs::write(&public_ca_file, &public_ca).unwrap();
    let (client_crt, client_key) = leaf(&["gateway"], &internal, true);
    let (gw_crt, gw_key) = leaf(&["localhost"], &public, false);
    let admin_token = password();
    let mut secrets = vec![admin_token.clone()];
    let mut common = Namespace::default();
    common.config_map("jwks", "jwks.json", r#"{"keys":[]}"#);
    common.config_map("postgres-ca", "ca.pem", read(&runner.pg.ca_file));
    let dir_pw: Vec<String> = (0..3).map(|_| password()).collect();
    secrets.extend(dir_pw.iter().cloned());
    let admin_url = format!("postgres://postgres@localhost:{pg_port}/postgres?{tls}");
    common.secret("directory-init", "admin_url", admin_url.clone());
    let owner = url(
        "residency_directory_owner",
        &dir_pw[0],
        "residency_directory",
    );
    common.secret("directory-init", "owner_url", owner);
    common.secret("directory-init", "reader_password", dir_pw[1].clone());
    common.secret("directory-init", "writer_password", dir_pw[2].clone());
    let reader = url(
        "residency_directory_reader",
        &dir_pw[1],
        "residency_directory",
    );
    let writer = url(
        "residency_directory_writer",
        &dir_pw[2],
        "residency_directory",
    );
    common.secret("gateway-directory", "reader_url", reader);
    common.secret("gateway-directory", "writer_url", writer);
    common.secret("gateway-keys", "admin.token", admin_token.clone());
    common.secret("gateway-tls", "tls.crt", gw_crt);
    common.secret("gateway-tls", "tls.key", gw_key);
    common.secret("gateway-upstream-tls", "tls.crt", client_crt);
    common.secret("gateway-upstream-tls", "tls.key", client_key);
    common.secret("gateway-upstream-tls", "ca.crt", internal_ca.clone());
    let assertion: BTreeMap<&str, Vec<u8>> = REGIONS
        .iter()
        .map(|r| (*r, password().into_bytes()[..32].to_vec()))
        .collect();
    for (r, key) in &assertion {
        common.secret("gateway-keys", &format!("{r}-assertion.key"), key.clone());
    }
    let mut namespaces = BTreeMap::new();
    for r in REGIONS {
        let overlay = deploy().join(format!("k8s/overlays/{r}"));
        let mut ns = common.clone();
        ns.config_map(
            "region-node-config",
            "node.toml",
            read(&overlay.join("node.toml")),
        );
        ns.config_map(
            "gateway-config",
            "gateway.toml",
            read(&overlay.join("gateway.toml")),
        );
        let pw: Vec<String> = (0..3).map(|_| password()).collect();
        secrets.extend(pw.iter().cloned());
        let db = format!("residency_{r}");
        ns.secret("region-node-db-init", "admin_url", admin_url.clone());
        ns.secret(
            "region-node-db-init",
            "owner_url",
            url(&format!("{db}_owner"), &pw[0], &db),
        );
        ns.secret("region-node-db-init", "auditor_password", pw[2].clone());
        ns.secret(
            "region-node-db",
            "url",
            url(&format!("{db}_app"), &pw[1], &db),
        );
        let keys = "region-node-keys";
        ns.secret(keys, &format!("{r}-assertion.key"), assertion[r].clone());
        ns.secret(keys, &format!("{r}-credentials.key"), vec![9u8; 32]);
        let (crt, key) = leaf(&["localhost"], &internal, false);
        ns.secret("region-node-tls", "tls.crt", crt);
        ns.secret("region-node-tls", "tls.key", key);
        ns.secret("region-node-tls", "ca.crt", internal_ca.clone());
        namespaces.insert(r, ns);
    }

    // The Jobs, as each overlay applies them (the directory's once: it is the same Job).
    let mut names = vec!["directory-init".to_owned()];
    let job = pod(find(&docs, "Job", "directory-init"));
    runner
        .run(&namespaces["us"].workload("directory-init", job))
        .await;
    for r in REGIONS {
        let name = format!("region-node-init-{r}");
        let job = pod(find(&docs, "Job", "region-node-init"));
        runner.run(&namespaces[r].workload(&name, job)).await;
        names.push(name);
    }
    // The region nodes, reachable under their in-cluster and cross-region names.
    let node_pod = pod(find(&docs, "Deployment", "region-node"));
    for r in REGIONS {
        let name = format!("region-node-{r}");
        runner.start(&namespaces[r].workload(&name, node_pod)).await;
        until_probe_ready(&runner, &name, node_pod).await;
        // Its API port requires a gateway's client certificate.
        let internal_ca_file = runner.dir().join("internal-ca.pem");
        std::fs::write(&internal_ca_file, &internal_ca).unwrap();
        let api = format!("https://localhost:{}/readyz", runner.host_port(&name, 8080));
        let anonymous = Https::new(&internal_ca_file, None)
            .send(Method::GET, &api, &[], None)
            .await;
        assert!(
            anonymous.is_err(),
            "{name} served a client without a certificate"
        );
        runner.alias(&format!("region-node.residency-{r}.svc"), &name);
        runner.alias(&format!("region-node.{r}.residency.internal"), &name);
        names.push(name);
    }
    // Every region's gateway, each routing to all three regions.
    let gw_pod = pod(find(&docs, "Deployment", "gateway"));
    let mut publics = Vec::new();
    for r in REGIONS {
        let name = format!("gateway-{r}");
        runner.start(&namespaces[r].workload(&name, gw_pod)).await;
        until_probe_ready(&runner, &name, gw_pod).await;
        publics.push(format!(
            "https://localhost:{}",
            runner.host_port(&name, 8443)
        ));
        names.push(name);
    }
    let admin = format!("http://127.0.0.1:{}", runner.host_port("gateway-eu", 8480));
    one_request_per_region(&admin, &admin_token, &publics, &public_ca_file).await;
    no_secret_logged(&runner, &names, &secrets);
}
