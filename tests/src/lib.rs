//! Harness for end-to-end tests against real Postgres.
//!
//! - [`RegionDb`]: a uniquely named region database with its own owner, app and auditor roles,
//!   bootstrapped and migrated exactly as in production, dropped (with its roles) on drop, so
//!   tests run in parallel and re-run safely;
//! - [`Node`]: a region node served in-process on `127.0.0.1:0` from a real config file,
//!   connected as the app role (non-superuser, `NOBYPASSRLS`, owns nothing), returned only
//!   once `/readyz` answers;
//! - [`Response`] and a tiny HTTP client; [`https::Https`] for TLS and mTLS listeners;
//! - [`stack_contract::check`]: the SPEC §4 `stack.json` contract, checked from the repo alone;
//! - [`rehearsal::Runner`]: runs the deployment's workloads (compose services, Kubernetes
//!   Jobs and Deployments) as local processes for `tests/tests/deploy_rehearsal.rs`.
//!
//! The admin URL comes from `RESIDENCY_TEST_ADMIN_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod directory;
pub mod fake_connector;
pub mod gateway;
pub mod https;
pub mod load;
pub mod process;
pub mod rehearsal;
pub mod stack_contract;
pub mod tls_postgres;
pub mod webhook_receiver;
pub mod workflows;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_core::assertion::{now_secs, AssertionKey, Signer};
use residency_core::{RegionId, TenantId};
use residency_region_node::db::{bootstrap, migrate};
use serde_json::Value;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The admin (superuser) URL used only to create and drop test databases and inspect catalogs.
#[must_use]
pub fn admin_url() -> String {
    std::env::var("RESIDENCY_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn password() -> String {
    Uuid::new_v4().simple().to_string()
}

/// Connects with `url` and drives the connection in the background.
///
/// # Panics
/// When Postgres is unreachable.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to postgres: {e}"));
    tokio::spawn(conn);
    client
}

/// A fresh region database with its three roles.
pub struct RegionDb {
    /// Database name.
    pub name: String,
    /// Owner role URL (migrations).
    pub owner_url: String,
    /// Application role URL (what the node uses).
    pub app_url: String,
    /// Auditor role URL.
    pub auditor_url: String,
    /// Admin URL pointing at this database (catalog inspection only).
    pub admin_db_url: String,
    /// Role names: owner, app, auditor.
    pub roles: [String; 3],
    /// The admin URL it was created with (and is dropped with).
    admin: String,
}

impl RegionDb {
    /// Creates, bootstraps and migrates a database for `region`.
    ///
    /// # Panics
    /// When Postgres is unreachable or a migration fails.
    pub async fn create(region: &str) -> Self {
        Self::create_on(&admin_url(), region).await
    }

    /// [`RegionDb::create`] on the cluster `admin` (a superuser URL) points at; the role URLs
    /// keep its parameters (`sslmode`, `sslrootcert`, …).
    ///
    /// # Panics
    /// When Postgres is unreachable or a migration fails.
    pub async fn create_on(admin: &str, region: &str) -> Self {
        let base = format!(
            "rgt_{}_{}",
            &Uuid::new_v4().simple().to_string()[..10],
            region.replace('-', "_")
        );
        let spec = |suffix: &str| bootstrap::RoleSpec {
            name: format!("{base}_{suffix}"),
            password: password(),
        };
        let plan = bootstrap::Plan {
            database: base.clone(),
            owner: spec("owner"),
            app: spec("app"),
            auditor: spec("auditor"),
        };
        let admin = admin.to_owned();
        bootstrap::bootstrap(&admin, &plan)
            .await
            .unwrap_or_else(|e| panic!("bootstrap {base}: {e:#}"));
        let url = |r: &bootstrap::RoleSpec| bootstrap::role_url(&admin, r, &base).unwrap();
        let db = Self {
            owner_url: url(&plan.owner),
            app_url: url(&plan.app),
            auditor_url: url(&plan.auditor),
            admin_db_url: {
                let mut u = url::Url::parse(&admin).unwrap();
                u.set_path(&base);
                u.to_string()
            },
            roles: [
                plan.owner.name.clone(),
                plan.app.name.clone(),
                plan.auditor.name.clone(),
            ],
            name: base,
            admin: admin.clone(),
        };
        migrate::migrate(
            &db.owner_url,
            &migrate::GrantRoles {
                app: db.roles[1].clone(),
                auditor: db.roles[2].clone(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("migrate {}: {e:#}", db.name));
        db
    }
}

impl Drop for RegionDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = self.roles.clone();
        let admin = self.admin.clone();
        // Drop runs inside the test's runtime; tear down on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let refs: Vec<&str> = roles.iter().map(String::as_str).collect();
                if let Err(e) = bootstrap::teardown(&admin, &name, &refs).await {
                    eprintln!("teardown of {name} failed: {e:#}");
                }
            });
        })
        .join();
    }
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
    /// Raw body text.
    pub text: String,
}

/// A minimal HTTP/1.1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    /// Sends a request with optional JSON body and extra headers.
    ///
    /// # Panics
    /// On transport errors.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"))
    }

    /// [`Http::send`], with a transport error (refused, reset, …) as `Err`.
    ///
    /// # Errors
    /// The transport error, as text.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Response, String> {
        let body = body.map(|b| ("application/json", Bytes::from(b.to_string())));
        self.try_send_bytes(method, url, headers, body).await
    }

    /// A `POST` of an `application/x-www-form-urlencoded` body (`form` already encoded).
    ///
    /// # Panics
    /// On a transport failure.
    pub async fn send_form(&self, url: &str, headers: &[(&str, &str)], form: &str) -> Response {
        let body = Some((
            "application/x-www-form-urlencoded",
            Bytes::from(form.to_owned()),
        ));
        self.try_send_bytes(Method::POST, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    async fn try_send_bytes(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<Response, String> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some((content_type, b)) => {
                req = req.header("content-type", content_type);
                b
            }
            None => Bytes::new(),
        };
        let resp = self
            .client
            .request(req.body(Full::new(bytes)).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(Response {
            status,
            headers,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            text,
        })
    }
}

/// A region node served in-process.
pub struct Node {
    /// Listen address.
    pub addr: SocketAddr,
    /// Region id.
    pub region: RegionId,
    signer: Signer,
    key: AssertionKey,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Directory holding the node's config and key files.
    pub dir: tempfile::TempDir,
    http: Http,
}

/// Options for starting a node.
pub struct NodeOptions {
    /// Pool size.
    pub pool_size: u32,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { pool_size: 4 }
    }
}

/// The regions of every test deployment: a node names the others as its peers, so an
/// assertion addressed to one of them is answered 421.
pub const TEST_REGIONS: [&str; 3] = ["us", "eu", "apac"];

/// Writes a node config for `db` into `dir`, with fresh key files. Returns the config path
/// and the assertion key.
///
/// # Panics
/// On I/O errors.
pub fn write_node_config(
    dir: &std::path::Path,
    db: &RegionDb,
    region: &str,
    listen: &str,
    pool_size: u32,
) -> (PathBuf, AssertionKey) {
    let secret: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    std::fs::write(dir.join("assertion.key"), &secret).unwrap();
    let cred: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    std::fs::write(dir.join("credentials.key"), cred).unwrap();
    let toml = format!(
        r#"[node]
listen = "{listen}"
shutdown_grace = "5s"

[region]
id = "{region}"
display_name = "Test {region}"
location = "loopback"
peers = [{peers}]

[database]
url = "{app}"
owner_url = "{owner}"
auditor_role = "{auditor}"
pool_size = {pool_size}
checkout_timeout = "2s"

[[assertion.keys]]
kid = "{region}-test"
alg = "HS256"
key_file = "assertion.key"

[credentials]
key_file = "credentials.key"

[webhooks]
# Test receivers are local http servers; retries are quick.
allow_http = true
allow_private_targets = true
backoff_base = "100ms"
backoff_cap = "1s"
poll_interval = "250ms"
# Off in tests unless a suite turns it on (RESIDENCY__WORKER__ENABLED=true) with its
# connectors pointed at a local fake: no test calls a real connector.
[worker]
enabled = false
"#,
        app = db.app_url,
        owner = db.owner_url,
        auditor = db.roles[2],
        peers = TEST_REGIONS
            .iter()
            .filter(|r| **r != region)
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, toml).unwrap();
    let key = AssertionKey::new(&format!("{region}-test"), "HS256", secret).unwrap();
    (path, key)
}

fn rand_byte() -> u8 {
    // Uuid v4 uses the OS RNG; two bytes of it are plenty for test keys.
    Uuid::new_v4().as_bytes()[0]
}

impl Node {
    /// Starts a node for `db` and waits until it is ready.
    ///
    /// # Panics
    /// When the node does not become ready within 20 s.
    pub async fn start(db: &RegionDb, region: &str, opts: NodeOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_node_config(dir.path(), db, region, "127.0.0.1:0", opts.pool_size);
        let cfg: residency_config::node::NodeConfig =
            residency_config::load::load(&path, &Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(residency_region_node::run(cfg, listener, shutdown.clone()));
        let region = RegionId::new(region).unwrap();
        let node = Self {
            addr,
            signer: Signer::new(region.clone(), &key, 60),
            region,
            key,
            shutdown,
            task: Some(task),
            dir,
            http: Http::default(),
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .http
                .send(Method::GET, &self.url("/readyz"), &[], None)
                .await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node never became ready: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Absolute URL of `path` on this node.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The node's assertion key (to mint tokens directly).
    #[must_use]
    pub fn key(&self) -> &AssertionKey {
        &self.key
    }

    /// Mints a valid assertion for `tenant`: a system-scoped one (as the gateway's admin
    /// provisioner mints) for role `system` with a `system:<actor>` subject, else a customer one.
    ///
    /// # Panics
    /// For any other reserved identity (the gateway cannot mint one either).
    #[must_use]
    pub fn assertion(&self, tenant: Uuid, subject: &str, role: &str) -> String {
        let tenant = TenantId::from_uuid(tenant);
        let actor = subject.strip_prefix(residency_core::assertion::SYSTEM_SUBJECT_PREFIX);
        match actor {
            Some(actor) if role == residency_core::assertion::SYSTEM_ROLE => {
                self.signer.mint_system(tenant, actor, now_secs())
            }
            _ => self.signer.mint(tenant, subject, role, now_secs()),
        }
        .unwrap()
        .0
    }

    /// Calls the node as `tenant` with `role` (empty: use the member record of `subject`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        tenant: Uuid,
        subject: &str,
        role: &str,
        body: Option<&Value>,
    ) -> Response {
        let a = self.assertion(tenant, subject, role);
        self.http
            .send(
                method,
                &self.url(path),
                &[("x-residency-assertion", &a)],
                body,
            )
            .await
    }

    /// Calls with raw headers (no assertion added).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        self.http.send(method, &self.url(path), headers, body).await
    }

    /// Provisions `tenant` with an owner member whose subject is `owner-<tenant>`.
    ///
    /// # Panics
    /// When provisioning does not answer 201 or 200.
    pub async fn provision(&self, tenant: Uuid, name: &str) -> Response {
        let a = self.assertion(tenant, "system:test", "system");
        let body = serde_json::json!({
            "name": name,
            "owner": { "subject": format!("owner-{tenant}"), "email": format!("owner@{name}.test") }
        });
        let r = self
            .http
            .send(
                Method::POST,
                &self.url("/internal/v1/provision"),
                &[("x-residency-assertion", &a)],
                Some(&body),
            )
            .await;
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::OK,
            "{r:?}"
        );
        r
    }

    /// Stops the node and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("node task").expect("node run");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Path of a workspace binary, built on first use with the same cargo, so tests that spawn
/// real processes work under a plain `cargo test`. The debug profile, unless
/// `RESIDENCY_TEST_PROFILE=release` (for load figures from optimized processes).
///
/// # Panics
/// When the build fails.
#[must_use]
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let release = std::env::var("RESIDENCY_TEST_PROFILE").is_ok_and(|p| p == "release");
    if !built.iter().any(|b| b == name) {
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--bin", name]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.current_dir(&root).status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// Region databases seeded through real nodes, and the matching directory, for the audit
/// suites (`tests/tests/audit*.rs`).
pub struct AuditFixture {
    /// `(region id, database)`, in audit order.
    pub dbs: Vec<(String, RegionDb)>,
    /// The directory's view: one active tenant per region, homed there.
    pub tenants: Vec<residency_core::TenantEntry>,
}

impl AuditFixture {
    /// Creates one database per region in `regions`, and in each provisions one tenant through
    /// a real node (pool of one, stopped afterwards) with a workflow, a run and a configuration,
    /// so most customer tables hold rows.
    ///
    /// # Panics
    /// When Postgres is unreachable or a call fails.
    pub async fn create(regions: &[&str]) -> Self {
        let mut dbs = Vec::new();
        let mut tenants = Vec::new();
        for region in regions {
            let db = RegionDb::create(region).await;
            let node = Node::start(&db, region, NodeOptions { pool_size: 1 }).await;
            let tenant = Uuid::new_v4();
            node.provision(tenant, &format!("{region}-customer")).await;
            let owner = format!("owner-{tenant}");
            let w = node
                .call(
                    Method::POST,
                    "/v1/workflows",
                    tenant,
                    &owner,
                    "",
                    Some(&serde_json::json!({"name": "w", "definition": {}})),
                )
                .await;
            assert_eq!(w.status, StatusCode::CREATED, "{w:?}");
            let wid = w.json["id"].as_str().expect("workflow id").to_owned();
            let run = node
                .call(
                    Method::POST,
                    &format!("/v1/workflows/{wid}/runs"),
                    tenant,
                    &owner,
                    "",
                    Some(&serde_json::json!({"input": {}})),
                )
                .await;
            assert_eq!(run.status, StatusCode::CREATED, "{run:?}");
            let c = node
                .call(
                    Method::PUT,
                    "/v1/configurations/audit.test",
                    tenant,
                    &owner,
                    "",
                    Some(&serde_json::json!({"value": true})),
                )
                .await;
            assert!(c.status.is_success(), "{c:?}");
            node.stop().await;
            tenants.push(residency_core::TenantEntry {
                id: TenantId::from_uuid(tenant),
                name: format!("{region}-customer"),
                region: RegionId::new(region).expect("valid region id"),
                tier: residency_core::Tier::Growth,
                status: residency_core::TenantStatus::Active,
                rate_limit_per_min: None,
            });
            dbs.push(((*region).to_owned(), db));
        }
        Self { dbs, tenants }
    }

    /// The database of `region`.
    ///
    /// # Panics
    /// For a region the fixture does not have.
    #[must_use]
    pub fn db(&self, region: &str) -> &RegionDb {
        &self
            .dbs
            .iter()
            .find(|(r, _)| r == region)
            .unwrap_or_else(|| panic!("no region {region}"))
            .1
    }

    /// The tenant homed in `region`.
    ///
    /// # Panics
    /// For a region the fixture does not have.
    #[must_use]
    pub fn tenant(&self, region: &str) -> Uuid {
        self.tenants
            .iter()
            .find(|t| t.region.as_str() == region)
            .unwrap_or_else(|| panic!("no tenant in {region}"))
            .id
            .as_uuid()
    }

    /// Runs `sql` as the superuser in `region`'s database (to seed faults).
    ///
    /// # Panics
    /// When the SQL fails.
    pub async fn admin_exec(&self, region: &str, sql: &str) {
        connect(&self.db(region).admin_db_url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The audit input: every region with its auditor URL and app role, and the directory.
    #[must_use]
    pub fn input(&self) -> residency_audit::AuditInput {
        let regions = self
            .dbs
            .iter()
            .map(|(region, db)| residency_audit::RegionInput {
                id: RegionId::new(region).expect("valid region id"),
                display_name: format!("Test {region}"),
                location: format!("loopback <{region}>"),
                auditor_url: db.auditor_url.clone(),
                app_role: db.roles[1].clone(),
                upstreams: vec![format!("http://{region}.invalid:8080")],
                routing: None,
            })
            .collect();
        residency_audit::AuditInput::new(regions, self.tenants.clone())
    }

    /// Writes a `stack.json` (SPEC §4 fields the audit reads, plus `auditor_database_url`) and
    /// a `directory.toml` into `dir`; returns their paths.
    ///
    /// # Panics
    /// On I/O errors.
    #[must_use]
    pub fn write_stack(&self, dir: &std::path::Path) -> (PathBuf, PathBuf) {
        let regions: Vec<Value> = self
            .dbs
            .iter()
            .map(|(region, db)| {
                serde_json::json!({
                    "id": region,
                    "node_url": format!("http://{region}.invalid:8080"),
                    "database_url": db.owner_url,
                    "app_database_url": db.app_url,
                    "auditor_database_url": db.auditor_url,
                })
            })
            .collect();
        let stack = dir.join("stack.json");
        std::fs::write(
            &stack,
            serde_json::to_vec_pretty(&serde_json::json!({ "regions": regions })).unwrap(),
        )
        .unwrap();
        let directory = dir.join("directory.toml");
        let file = residency_core::DirectoryFile {
            tenants: self.tenants.clone(),
            ..residency_core::DirectoryFile::default()
        };
        std::fs::write(&directory, toml::to_string(&file).unwrap()).unwrap();
        (stack, directory)
    }
}
