//! Region nodes and gateways as real processes (`region-node serve`, `residency-gateway`), for
//! the suites that signal them: kill, stop (`SIGSTOP`), continue, terminate. Each process
//! listens on a free loopback port picked here (so a restarted node comes back on the same
//! address with the same config) and is killed when dropped. Readiness is polled against a
//! deadline, never slept for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use residency_core::assertion::{AssertionKey, Signer};
use residency_core::RegionId;
use serde_json::{json, Value};

use crate::gateway::{Idp, ADMIN_TOKEN, AUDIENCE, ISSUER};
use crate::{binary, write_node_config, Http, RegionDb, Response};

/// A free loopback port (bound once and released; the kernel does not hand it out again at
/// once).
///
/// # Panics
/// When nothing can bind.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` to the process `pid`.
///
/// # Panics
/// When the signal cannot be sent (the process is gone).
pub fn signal(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// Polls `probe` every 25 ms until it yields a value, failing with `what` after `within`.
/// The deadline is a hang guard, not a speed assertion.
///
/// # Panics
/// When it has not after `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The lines a child writes to its standard output and error, collected as they arrive (for
/// suites that assert log lines).
#[derive(Clone, Default)]
pub struct Logs {
    lines: Arc<Mutex<Vec<String>>>,
    open: Arc<AtomicUsize>,
}

impl Logs {
    /// Reads `stream` line by line into these logs until its end.
    pub fn collect<R>(&self, stream: R)
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        use tokio::io::AsyncBufReadExt;
        let (lines, open) = (Arc::clone(&self.lines), Arc::clone(&self.open));
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Every line so far.
    ///
    /// # Panics
    /// When a collector panicked.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred` and returns it.
    ///
    /// # Panics
    /// When none does within 30 s.
    pub async fn until_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        until(what, Duration::from_secs(30), || async {
            self.lines().into_iter().find(|l| pred(l))
        })
        .await
    }

    /// Waits until every collected stream has ended (the child exited), so that no line
    /// is still on its way.
    ///
    /// # Panics
    /// When a stream is still open after 30 s.
    pub async fn closed(&self) {
        until("the log streams end", Duration::from_secs(30), || async {
            (self.open.load(Ordering::SeqCst) == 0).then_some(())
        })
        .await;
    }
}

/// Where a [`GatewayProcess`]'s output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The test's own output.
    Inherit,
    /// Collected into [`GatewayProcess::logs`].
    Capture,
}

/// The status of a `GET` within 2 s, `None` on a transport failure or no answer.
async fn try_get(http: &Http, url: &str) -> Option<StatusCode> {
    let req = http.try_send(Method::GET, url, &[], None);
    match tokio::time::timeout(Duration::from_secs(2), req).await {
        Ok(Ok(r)) => Some(r.status),
        _ => None,
    }
}

/// A `region-node serve` child on a config of its own (in [`NodeProcess::dir`]).
pub struct NodeProcess {
    /// The running child, `None` between [`NodeProcess::kill`] and [`NodeProcess::restart`].
    pub child: Option<tokio::process::Child>,
    /// Its listen port (kept across restarts).
    pub port: u16,
    /// Its region.
    pub region: RegionId,
    /// Its assertion key (the gateway signs with the same file).
    pub key: AssertionKey,
    /// Directory of `node.toml`, `assertion.key`, `credentials.key`.
    pub dir: tempfile::TempDir,
    config: PathBuf,
    log: String,
    env: Vec<(String, String)>,
    stdout: fn() -> Stdio,
}

impl NodeProcess {
    /// Spawns `region-node serve` for `db` as `region` on a free port, with `RUST_LOG=log`
    /// and `env` set, stdout from `stdout()`, stderr piped; does not wait for readiness.
    ///
    /// # Panics
    /// When the binary cannot be built or started.
    #[must_use]
    pub fn spawn(
        db: &RegionDb,
        region: &str,
        log: &str,
        stdout: fn() -> Stdio,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (config, key) =
            write_node_config(dir.path(), db, region, &format!("127.0.0.1:{port}"), 2);
        let mut node = Self {
            child: None,
            port,
            region: RegionId::new(region).unwrap(),
            key,
            dir,
            config,
            log: log.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            stdout,
        };
        node.child = Some(node.command().spawn().unwrap());
        node
    }

    /// [`NodeProcess::spawn`] with warnings logged to the test's output and `env` set, then
    /// waits until
    /// `/readyz` answers 200.
    ///
    /// # Panics
    /// When it does not become ready within 30 s.
    pub async fn start(db: &RegionDb, region: &str, env: &[(&str, &str)]) -> Self {
        let node = Self::spawn(db, region, "warn", Stdio::inherit, env);
        node.until_ready().await;
        node
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary("region-node"));
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", &self.log)
            .stdout((self.stdout)())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `127.0.0.1:<port>`.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The node's assertion key file (for the gateway's `[[regions]]`).
    #[must_use]
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("assertion.key")
    }

    /// A signer of this node's assertions.
    #[must_use]
    pub fn signer(&self) -> Signer {
        Signer::new(self.region.clone(), &self.key, 60)
    }

    /// The running child's pid.
    ///
    /// # Panics
    /// When it is not running.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .expect("the node is running")
    }

    /// Sends `sig` to the node.
    pub fn signal(&self, sig: Signal) {
        signal(self.pid(), sig);
    }

    /// `SIGSTOP`, and waits until every thread of the node is stopped. The stop is not
    /// immediate: the thread the kernel picks starts the group stop only when it next runs,
    /// and on a busy machine the node's other threads serve meanwhile.
    ///
    /// # Panics
    /// When it is not running or not stopped within 10 s.
    pub async fn pause(&self) {
        self.signal(Signal::SIGSTOP);
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        until("the node is stopped", Duration::from_secs(10), || {
            let tasks = tasks.clone();
            async move { all_stopped(&tasks).then_some(()) }
        })
        .await;
    }

    /// `SIGKILL`, and waits until the process is gone.
    ///
    /// # Panics
    /// When it is not running.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the node is running");
        child.kill().await.unwrap();
    }

    /// Starts the node again with the same config and port, and waits until it is ready.
    ///
    /// # Panics
    /// When it is still running or does not become ready.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running node");
        self.child = Some(self.command().spawn().unwrap());
        self.until_ready().await;
    }

    /// Waits for the process to exit (after a signal), at most `within`.
    ///
    /// # Panics
    /// When it is still running after `within`.
    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the node is running");
        tokio::time::timeout(within, child.wait())
            .await
            .unwrap_or_else(|_| panic!("node {} still running after {within:?}", self.region))
            .unwrap()
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self) -> bool {
        try_get(&Http::default(), &format!("{}/readyz", self.base())).await == Some(StatusCode::OK)
    }

    /// Waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When it does not within 30 s, or the process exited.
    pub async fn until_ready(&self) {
        until(
            &format!("node {} ready", self.region),
            Duration::from_secs(30),
            || async { self.ready().await.then_some(()) },
        )
        .await;
    }
}

/// Whether every thread under `/proc/<pid>/task` is in the stopped state (`T`).
fn all_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // `pid (comm) S …`: the state follows the last parenthesis.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T")
        })
    })
}

/// The `[[regions]]` entry of a region served by `upstreams` whose assertions are signed with
/// the key in `key_file` (kid `<region>-test`, as [`write_node_config`] writes).
#[must_use]
pub fn region_toml(region: &str, upstreams: &[SocketAddr], key_file: &Path) -> String {
    let ups: Vec<String> = upstreams
        .iter()
        .map(|a| format!("\"http://{a}\""))
        .collect();
    format!(
        "[[regions]]\nid = \"{region}\"\nupstreams = [{}]\n\
         assertion = {{ kid = \"{region}-test\", alg = \"HS256\", key_file = \"{}\" }}\n",
        ups.join(", "),
        key_file.display(),
    )
}

/// A `residency-gateway --config` child with a Postgres directory, the [`Idp`] as its only
/// issuer (a JWKS file), the admin API on its own port, and extra TOML sections.
pub struct GatewayProcess {
    /// The running child.
    pub child: Option<tokio::process::Child>,
    /// Public listener.
    pub public: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The identity provider it trusts.
    pub idp: Idp,
    /// Config directory (`gateway.toml`, `jwks.json`, `admin.token`).
    pub files: tempfile::TempDir,
    /// Its output, with [`Output::Capture`] (empty otherwise).
    pub logs: Logs,
    http: Http,
}

/// What a [`GatewayProcess`] is configured with.
pub struct GatewayOptions<'a> {
    /// `directory.url` (the reader role).
    pub directory_url: &'a str,
    /// `admin.directory_url` (the writer role).
    pub writer_url: &'a str,
    /// The `[[regions]]` entries ([`region_toml`]).
    pub regions: String,
    /// `[limits]` lines.
    pub limits: &'a str,
    /// Any other sections (`[rate_limit]`, …), appended as is.
    pub extra: &'a str,
    /// `[[issuers]]` source line; `None`: `jwks_file = "jwks.json"` with the Idp's keys.
    pub jwks: Option<&'a str>,
}

impl GatewayProcess {
    /// Writes the config, starts the gateway and waits until its admin `/readyz` answers 200.
    ///
    /// # Panics
    /// When it does not start or become ready within 30 s.
    pub async fn start(opts: &GatewayOptions<'_>) -> Self {
        Self::start_with(opts, &[], &[], Output::Inherit).await
    }

    /// [`GatewayProcess::start`] with extra command-line `args`, `env` set after
    /// `RUST_LOG=warn` (so it can override it), and its output sent to `output`.
    ///
    /// # Panics
    /// When it does not start or become ready within 30 s.
    pub async fn start_with(
        opts: &GatewayOptions<'_>,
        args: &[&str],
        env: &[(&str, &str)],
        output: Output,
    ) -> Self {
        let files = tempfile::tempdir().unwrap();
        let idp = Idp::generate();
        std::fs::write(files.path().join("jwks.json"), idp.jwks()).unwrap();
        std::fs::write(files.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        let (public, admin) = (
            SocketAddr::from(([127, 0, 0, 1], free_port())),
            SocketAddr::from(([127, 0, 0, 1], free_port())),
        );
        let config = format!(
            r#"[listen]
public = "{public}"
admin = "{admin}"

[[issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
{jwks}

[directory]
source = "postgres"
url = "{directory}"
max_stale = "10m"
negative_ttl = "1s"
timeout = "2s"

[admin]
token_file = "admin.token"
token_name = "test"
directory_url = "{writer}"

[health_check]
interval = "500ms"
timeout = "400ms"

[limits]
{limits}

{regions}
{extra}
"#,
            jwks = opts.jwks.unwrap_or("jwks_file = \"jwks.json\""),
            directory = opts.directory_url,
            writer = opts.writer_url,
            limits = opts.limits,
            regions = opts.regions,
            extra = opts.extra,
        );
        let path = files.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let stdio = || match output {
            Output::Inherit => Stdio::inherit(),
            Output::Capture => Stdio::piped(),
        };
        let mut child = tokio::process::Command::new(binary("residency-gateway"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(stdio())
            .stderr(stdio())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Logs::default();
        if let Some(out) = child.stdout.take() {
            logs.collect(out);
        }
        if let Some(err) = child.stderr.take() {
            logs.collect(err);
        }
        let gw = Self {
            child: Some(child),
            public,
            admin,
            idp,
            files,
            logs,
            http: Http::default(),
        };
        let url = format!("http://{admin}/readyz");
        until("the gateway is ready", Duration::from_secs(30), || async {
            (try_get(&gw.http, &url).await == Some(StatusCode::OK)).then_some(())
        })
        .await;
        gw
    }

    /// The running child's pid.
    ///
    /// # Panics
    /// When it is not running.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .expect("the gateway is running")
    }

    /// Whether the process is still running (it was not restarted behind the test's back:
    /// nobody restarts it).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }

    /// Waits for the process to exit (after a signal), at most `within`.
    ///
    /// # Panics
    /// When it is still running after `within`.
    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the gateway is running");
        tokio::time::timeout(within, child.wait())
            .await
            .unwrap_or_else(|_| panic!("gateway still running after {within:?}"))
            .unwrap()
    }

    /// An admin call with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.http
            .send(
                method,
                &format!("http://{}{path}", self.admin),
                &[("authorization", &auth)],
                body,
            )
            .await
    }

    /// Creates an active tenant (provisioned on its home node) through the admin API with a
    /// per-minute limit of `rate_limit_per_min`; returns its id.
    ///
    /// # Panics
    /// When the API does not answer 201.
    pub async fn create_tenant(&self, name: &str, region: &str, rate_limit_per_min: u32) -> String {
        let body = json!({
            "name": name, "region": region, "tier": "enterprise",
            "limits": { "rate_limit_per_min": rate_limit_per_min },
            "owner": { "subject": format!("owner-{name}"), "email": format!("owner@{name}.test") },
        });
        let r = self
            .admin(Method::POST, "/admin/v1/tenants", Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json["id"].as_str().expect("tenant id").to_owned()
    }

    /// Whether `region`'s upstreams are all out of rotation (`GET /admin/v1/regions`).
    pub async fn region_unavailable(&self, region: &str) -> bool {
        let r = self.admin(Method::GET, "/admin/v1/regions", None).await;
        r.json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == region)
            .is_some_and(|i| i["available_upstreams"] == 0)
    }

    /// `GET /v1/me` with a fresh JWT for `tenant`.
    ///
    /// # Panics
    /// On a transport failure.
    pub async fn me(&self, tenant: &str) -> Response {
        let token = self.idp.token(tenant, "user-1", "developer");
        self.http
            .send(
                Method::GET,
                &format!("http://{}/v1/me", self.public),
                &[("authorization", &format!("Bearer {token}"))],
                None,
            )
            .await
    }
}
