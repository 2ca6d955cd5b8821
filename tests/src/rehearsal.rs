//! The deployment rehearsal's stand-in for a container runtime (`tests/tests/deploy_rehearsal.rs`):
//! it runs a [`Workload`] (a command line, an environment and the files mounted into the
//! container) as a local process of this build's binaries, against one TLS-only Postgres
//! cluster ([`TlsPostgres`]). It changes only what a container runtime would otherwise
//! provide, always the same way:
//! - **paths**: each workload's files live under a directory of its own; every
//!   `/etc/residency/` in its command, environment and mounted TOML files points there;
//! - **listen ports**: every `"0.0.0.0:<port>"` in a mounted TOML file becomes
//!   `"127.0.0.1:<free port>"` (what publishing a container port does);
//! - **names**: `//<alias>:<port>` for a registered alias of a started workload becomes
//!   `//localhost:<its free port>` (what service DNS does); `@<host>/` for a registered
//!   Postgres host becomes `@localhost:<the cluster's port>/`;
//! - optionally `sslmode=disable` becomes `sslmode=verify-full&sslrootcert=<the cluster's CA>`
//!   (the cluster refuses clear text; compose's internal networks use it).
//!
//! One-shot workloads must exit 0; serving ones are up when every port they listen on
//! accepts (and the caller then probes what their manifests probe).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::tls_postgres::TlsPostgres;

/// How long a workload may take to listen, or a probe to pass.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One container's worth of process: what it runs, with what, and its mounted files.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// Its name (a compose service, a Kubernetes workload plus region).
    pub name: String,
    /// The command line (entry point and arguments), `argv[0]` found on `PATH`.
    pub argv: Vec<String>,
    /// The environment, as the runtime would set it (interpolated, secrets resolved).
    pub env: Vec<(String, String)>,
    /// Mounted files: (path in the container, content).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Runs workloads as local processes; kills the serving ones when dropped.
pub struct Runner {
    work: tempfile::TempDir,
    /// The cluster standing in for every Postgres server of the deployment.
    pub pg: TlsPostgres,
    bin_dir: PathBuf,
    /// `(workload, container port)` → host port on 127.0.0.1.
    ports: BTreeMap<(String, u16), u16>,
    /// `(alias, workload)`: `//<alias>:<port>` reaches that workload's `<port>`.
    aliases: Vec<(String, String)>,
    /// Postgres `host[:port]` names that mean the cluster.
    pg_hosts: Vec<String>,
    clear_to_tls: bool,
    children: Vec<(String, tokio::process::Child)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Runner {
    /// A runner with its cluster started and this build's binaries built.
    ///
    /// # Panics
    /// When the binaries do not build or the cluster does not start.
    #[must_use]
    pub fn new() -> Self {
        for b in ["residency", "region-node", "residency-gateway"] {
            let _ = crate::binary(b);
        }
        let bin_dir = crate::binary("residency").parent().unwrap().to_owned();
        Self {
            work: tempfile::tempdir().unwrap(),
            pg: TlsPostgres::start(),
            bin_dir,
            ports: BTreeMap::new(),
            aliases: Vec::new(),
            pg_hosts: Vec::new(),
            clear_to_tls: false,
            children: Vec::new(),
        }
    }

    /// A scratch directory that lives as long as the runner.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// `//<alias>:<port>` in later workloads' files reaches `workload`'s `<port>`.
    pub fn alias(&mut self, alias: &str, workload: &str) {
        self.aliases.push((alias.to_owned(), workload.to_owned()));
    }

    /// `@<host>/` in later workloads means the cluster.
    pub fn postgres_host(&mut self, host: &str) {
        self.pg_hosts.push(host.to_owned());
    }

    /// Rewrite `sslmode=disable` to verified TLS with the cluster's CA.
    pub fn clear_text_postgres_becomes_tls(&mut self) {
        self.clear_to_tls = true;
    }

    fn root(&self, name: &str) -> PathBuf {
        self.work.path().join("roots").join(name)
    }

    /// The path, Postgres and name rewrites of a text of workload `name`.
    fn rewrite(&self, name: &str, text: &str) -> String {
        let root = self.root(name);
        let mut t = text.replace(
            "/etc/residency/",
            &format!("{}/etc/residency/", root.display()),
        );
        for h in &self.pg_hosts {
            t = t.replace(&format!("@{h}/"), &format!("@localhost:{}/", self.pg.port));
        }
        if self.clear_to_tls {
            t = t.replace(
                "sslmode=disable",
                &format!(
                    "sslmode=verify-full&sslrootcert={}",
                    self.pg.ca_file.display()
                ),
            );
        }
        for (alias, target) in &self.aliases {
            for ((w, port), host) in &self.ports {
                if w == target {
                    t = t.replace(&format!("//{alias}:{port}"), &format!("//localhost:{host}"));
                }
            }
        }
        t
    }

    /// Writes `w`'s files under its root: TOML files get free listen ports, then the rewrites.
    fn materialize(&mut self, w: &Workload) {
        let root = self.root(&w.name);
        for (at, content) in &w.files {
            let to = root.join(at.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if to.extension().is_some_and(|e| e == "toml") {
                let mut text = String::from_utf8(content.clone()).unwrap();
                while let Some(i) = text.find("\"0.0.0.0:") {
                    let rest = &text[i + 9..];
                    let end = rest.find('"').unwrap();
                    let port: u16 = rest[..end].parse().unwrap();
                    let host = free_port();
                    self.ports.insert((w.name.clone(), port), host);
                    text = format!("{}\"127.0.0.1:{host}\"{}", &text[..i], &rest[end + 1..]);
                }
                std::fs::write(&to, self.rewrite(&w.name, &text)).unwrap();
            } else {
                std::fs::write(&to, content).unwrap();
            }
        }
    }

    fn command(&mut self, w: &Workload) -> tokio::process::Command {
        self.materialize(w);
        let argv: Vec<String> = w.argv.iter().map(|a| self.rewrite(&w.name, a)).collect();
        assert!(!argv.is_empty(), "{} has no command", w.name);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear().env(
            "PATH",
            format!(
                "{}:{}",
                self.bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        for (k, v) in &w.env {
            cmd.env(k, self.rewrite(&w.name, v));
        }
        let file = std::fs::File::create(self.log_path(&w.name)).unwrap();
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.work.path().join(format!("{name}.log"))
    }

    /// What workload `name` printed.
    #[must_use]
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Runs a one-shot workload to completion.
    ///
    /// # Panics
    /// When it does not exit 0 (with its output).
    pub async fn run(&mut self, w: &Workload) {
        let status = self.command(w).status().await.unwrap();
        assert!(
            status.success(),
            "{} exited {status}:\n{}",
            w.name,
            self.log(&w.name)
        );
    }

    /// Starts a serving workload and waits until every port it listens on accepts.
    ///
    /// # Panics
    /// When it listens on nothing, exits, or does not listen within [`DEADLINE`].
    pub async fn start(&mut self, w: &Workload) {
        let child = self.command(w).spawn().unwrap();
        self.children.push((w.name.clone(), child));
        let ports: Vec<u16> = self
            .ports
            .iter()
            .filter(|((s, _), _)| *s == w.name)
            .map(|(_, h)| *h)
            .collect();
        assert!(!ports.is_empty(), "{} listens on no 0.0.0.0 port", w.name);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        for port in ports {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                self.alive(&w.name);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} never listened on {port}:\n{}",
                    w.name,
                    self.log(&w.name)
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

    /// The host port of `workload`'s container `port`.
    ///
    /// # Panics
    /// When it does not listen there.
    #[must_use]
    pub fn host_port(&self, workload: &str, port: u16) -> u16 {
        *self
            .ports
            .get(&(workload.to_owned(), port))
            .unwrap_or_else(|| panic!("{workload} does not listen on {port}"))
    }
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `probe` until it returns `Ok` or [`DEADLINE`] passes.
///
/// # Panics
/// At the deadline, with `what` and the last error.
pub async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
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
