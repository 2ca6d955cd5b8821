//! `residency up`: the whole local deployment from one command.
//!
//! In order: check flags, ports, binaries and Postgres (fail fast, before touching anything);
//! create or reuse the dev material ([`material`]) and the databases with their roles and
//! migrations ([`databases`]); write and validate the config files ([`configs`]); serve the dev
//! identity provider ([`idp`]); start the region nodes and wait for them; seed the demo data
//! ([`seed`]); start the gateway and wait for it; write `stack.json` ([`stack_json`]); print
//! endpoints and examples ([`banner`]); then supervise until Ctrl-C/SIGTERM (a child that
//! dies is restarted with backoff; the others keep serving) and stop every child
//! ([`supervise`]).
//!
//! Exit codes ([`crate::exit`]): 0 stopped on request; 1 failed (a child exited during the
//! start, a step failed); 2 invalid command line; 64 invalid flag value, or the database of
//! `--pg` does not exist; 69 Postgres unreachable; 71 a port is in use; 72 the `region-node` or
//! `residency-gateway` binary is missing; 75 another `up` is running on the same directory;
//! 77 Postgres rejected the login of `--pg` (wrong password, unknown role, `pg_hba.conf`).

mod banner;
mod configs;
mod databases;
mod http;
mod idp;
mod material;
mod sandbox;
mod seed;
mod stack_json;
mod state;
mod supervise;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use residency_core::RegionId;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use configs::Ports;
use databases::Names;
use supervise::Supervisor;

/// The default Postgres admin URL.
pub(crate) const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Arguments of `residency up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Postgres admin URL (a role that may create databases and roles; default
    /// postgres://postgres@127.0.0.1:5432/postgres). The deprecated RESIDENCY_PG is still read.
    #[arg(
        long = "pg",
        value_name = "URL",
        env = "RESIDENCY_PG_ADMIN_URL",
        hide_env_values = true
    )]
    pg_flag: Option<String>,
    /// `--pg`, else the deprecated `RESIDENCY_PG`, else [`DEFAULT_PG`]: set by [`run`].
    #[arg(skip)]
    pg: String,
    /// Prefix of every database and role name, so several stacks share one Postgres.
    #[arg(long, default_value = "residency")]
    prefix: String,
    /// First port: gateway B, admin B+1, identity provider B+2, nodes B+3… (default: gateway
    /// 8443, admin 8480, identity provider 8400, nodes 8541…).
    #[arg(long, value_name = "B")]
    base_port: Option<u16>,
    /// Directory for keys, certificates, configs, logs and stack.json.
    #[arg(long, default_value = ".residency")]
    dir: PathBuf,
    /// Region ids, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "us,eu,apac")]
    regions: Vec<RegionId>,
    /// Drop this stack's databases and roles and delete --dir first.
    #[arg(long)]
    fresh: bool,
    /// Drop this stack's databases and roles, delete --dir, and exit.
    #[arg(long, conflicts_with = "fresh")]
    teardown: bool,
    /// Directory holding the `region-node` and `residency-gateway` binaries (default: the
    /// directory of this executable).
    #[arg(long, env = "RESIDENCY_BIN_DIR", value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// How long each process may take to become ready.
    #[arg(long, default_value = "60s", value_parser = residency_config::duration::parse)]
    ready_timeout: Duration,
    /// Log format of the region nodes and the gateway (`text` or `json`), passed to each as
    /// `--log-format`; their lines are printed labelled (`[eu] …`) and kept unlabelled in
    /// `<dir>/logs/<label>.log`, one JSON object per line with `json`.
    #[arg(
        long,
        env = residency_http::logging::FORMAT_ENV,
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: residency_http::logging::LogFormat,
}

/// Why `up` stopped; each maps to one exit code and one message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpError {
    /// A flag value is invalid.
    #[error("{0}")]
    Usage(String),
    /// Postgres did not answer.
    #[error("cannot reach Postgres at {0}: {1}")]
    PostgresUnreachable(String, String),
    /// Postgres answered and refused the connection: the login or the database name.
    #[error("Postgres at {at} refused the connection: {reason}")]
    PostgresRefused {
        /// The URL without its password.
        at: String,
        /// [`residency_pg::tls::reason`].
        reason: String,
        /// Which refusal.
        refusal: residency_pg::tls::Refusal,
    },
    /// A port is taken.
    #[error("port {port} ({what}) is in use: {error}")]
    PortInUse {
        /// The port.
        port: u16,
        /// What the stack wanted it for.
        what: String,
        /// The bind error.
        error: String,
    },
    /// A binary is missing.
    #[error("{0}")]
    MissingBinary(String),
    /// Another `up` owns the directory.
    #[error("another `residency up` (pid {0}) is running with this --dir; stop it first")]
    AlreadyRunning(u32),
    /// A child process failed.
    #[error("{0}")]
    ChildFailed(String),
    /// Anything else.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl UpError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => crate::exit::CONFIG,
            Self::PostgresRefused { refusal, .. } if refusal.is_login() => crate::exit::NOPERM,
            Self::PostgresRefused { .. } => crate::exit::CONFIG,
            Self::PostgresUnreachable(..) => crate::exit::UNAVAILABLE,
            Self::PortInUse { .. } => 71,
            Self::MissingBinary(_) => 72,
            Self::AlreadyRunning(_) => 75,
            Self::ChildFailed(_) | Self::Failed(_) => 1,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::PostgresUnreachable(..) => Some(
                "start Postgres, then run this again:\n\
                 \x20 - Debian/Ubuntu:  sudo service postgresql start   (or: sudo pg_ctlcluster 15 main start)\n\
                 \x20 - macOS (brew):   brew services start postgresql\n\
                 \x20 - Docker:         docker run -d --name residency-pg -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16\n\
                 or point --pg (or RESIDENCY_PG_ADMIN_URL) at a server where this role may create databases and roles"
                    .to_owned(),
            ),
            Self::PostgresRefused { refusal, .. } if refusal.is_login() => Some(
                "Postgres is running but refused this login: fix the user name and password of \
                 --pg (or RESIDENCY_PG_ADMIN_URL), or allow the role in the server's pg_hba.conf"
                    .to_owned(),
            ),
            Self::PostgresRefused { .. } => Some(
                "Postgres is running but has no such database: name an existing one in --pg \
                 (postgres usually)"
                    .to_owned(),
            ),
            Self::PortInUse { .. } => Some(
                "stop what listens there, or move the whole stack with --base-port (e.g. --base-port 18000)"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// Runs `residency up` and returns the process exit code.
pub(crate) async fn run(mut args: UpArgs) -> ExitCode {
    args.pg = match args.pg_flag.take() {
        Some(url) => url,
        None => match residency_config::load::deprecated_var(
            &residency_config::load::ProcessEnv,
            "RESIDENCY_PG",
            "RESIDENCY_PG_ADMIN_URL",
        ) {
            Some((url, warning)) => {
                eprintln!("residency up: {warning}");
                url
            }
            None => DEFAULT_PG.to_owned(),
        },
    };
    // Handlers first: from here on SIGTERM and Ctrl-C are ours to handle, never a default
    // death that would leave children behind.
    let stop = CancellationToken::new();
    if let Err(e) = listen_for_signals(stop.clone()) {
        eprintln!("residency up: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    match up(args, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("residency up: {e}");
            if let Some(h) = e.hint() {
                eprintln!("{h}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn listen_for_signals(stop: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        println!("\nstopping the stack …");
        stop.cancel();
    });
    Ok(())
}

fn binaries(args: &UpArgs) -> Result<(PathBuf, PathBuf), UpError> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default(),
    };
    let find = |name: &str| {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(UpError::MissingBinary(format!(
                "{name} not found in {}; build every binary first with `cargo build --release` \
                 (then run target/release/residency up), or point --bin-dir at them",
                dir.display()
            )))
        }
    };
    Ok((find("region-node")?, find("residency-gateway")?))
}

fn absolute(dir: &Path) -> Result<PathBuf, UpError> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| UpError::Failed(e.into()))?;
    Ok(cwd.join(dir))
}

async fn up(args: UpArgs, stop: CancellationToken) -> Result<(), UpError> {
    let regions = dedup(&args.regions)?;
    let names = Names::new(&args.prefix, &regions)?;
    let ports = Ports::new(args.base_port, regions.len())?;
    let dir = absolute(&args.dir)?;
    if args.teardown {
        databases::check_admin(&args.pg).await?;
        supervise::reap_stale(&dir).await?;
        databases::teardown(&args.pg, &names, &regions).await?;
        remove_dir(&dir)?;
        println!(
            "removed the databases and roles of prefix {} and {}",
            args.prefix,
            dir.display()
        );
        return Ok(());
    }
    let (node_bin, gateway_bin) = binaries(&args)?;
    supervise::reap_stale(&dir).await?;
    ports.check_free(&regions)?;
    databases::check_admin(&args.pg).await?;
    if args.fresh {
        println!(
            "--fresh: dropping the databases and roles of prefix {} and deleting {}",
            args.prefix,
            dir.display()
        );
        databases::teardown(&args.pg, &names, &regions).await?;
        remove_dir(&dir)?;
    }
    println!("residency up: preparing {} …", dir.display());
    material::private_dir(&dir)?;
    // A stack.json from an earlier run describes processes that are not running: remove it
    // so that whoever waits for the file sees only this run's.
    let _ = std::fs::remove_file(dir.join("stack.json"));
    let m = material::ensure(&dir, &regions)?;
    let mut st = state::State::load(&dir)?;
    let urls = databases::ensure(&args.pg, &names, &regions, &mut st).await?;
    let files = configs::write(&m, &regions, &ports, &urls, &configs::issuer(&ports))?;

    let idp_listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.idp))
        .await
        .map_err(|e| UpError::PortInUse {
            port: ports.idp,
            what: "dev identity provider".into(),
            error: e.to_string(),
        })?;
    let pem = std::fs::read(dir.join(material::JWT_KEY)).map_err(anyhow::Error::from)?;
    let issuer = idp::TokenIssuer::new(
        &pem,
        &m.jwt_kid,
        &configs::issuer(&ports),
        configs::AUDIENCE,
    )?;
    let idp_stop = CancellationToken::new();
    idp::serve(idp_listener, Arc::new(issuer), idp_stop.clone());

    // The connector sandbox every node's workflows call (no real Slack or HubSpot here).
    let sandbox_listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.sandbox))
        .await
        .map_err(|e| UpError::PortInUse {
            port: ports.sandbox,
            what: "connector sandbox".into(),
            error: e.to_string(),
        })?;
    sandbox::serve(sandbox_listener, idp_stop.clone());

    let mut sup = Supervisor::new(&dir)?;
    let started = tokio::select! {
        r = start(&mut sup, &args, &regions, &ports, &urls, &m, &files, &mut st, (&node_bin, &gateway_bin)) => Some(r),
        () = stop.cancelled() => None,
    };
    let outcome = match started {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(tenants)) => {
            let bytes = stack_json::render(&m, &ports, &urls, &tenants)?;
            stack_json::write(&dir, &bytes)?;
            banner::print(&dir, &ports, &regions, &tenants);
            sup.supervise(&stop).await;
            Ok(())
        }
    };
    let clean = sup.stop_all().await;
    idp_stop.cancel();
    match outcome {
        Ok(()) if clean => {
            println!("stack stopped; data kept (run `residency up` again to resume, --fresh to start over)");
            Ok(())
        }
        Ok(()) => Err(UpError::ChildFailed(
            "a process did not stop cleanly".into(),
        )),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn start(
    sup: &mut Supervisor,
    args: &UpArgs,
    regions: &[RegionId],
    ports: &Ports,
    urls: &databases::Urls,
    m: &material::Material,
    files: &configs::ConfigFiles,
    st: &mut state::State,
    (node_bin, gateway_bin): (&Path, &Path),
) -> Result<Vec<seed::DemoTenant>, UpError> {
    let http = http::Http::new(&m.dir)?;
    println!("starting {} region nodes …", regions.len());
    for (r, cfg) in regions.iter().zip(&files.nodes) {
        sup.spawn(
            r.as_str(),
            node_bin,
            &[
                "serve",
                "--config",
                &cfg.to_string_lossy(),
                "--log-format",
                args.log_format.as_str(),
            ],
        )?;
    }
    let mut targets = Vec::new();
    for (r, port) in regions.iter().zip(&ports.nodes) {
        let url = configs::node_url(*port);
        sup.wait_ready(
            r.as_str(),
            &format!("{url}/readyz"),
            args.ready_timeout,
            &http,
        )
        .await?;
        targets.push(seed::NodeTarget::new(m, r, url)?);
    }
    println!("seeding the demo organization …");
    let store = residency_directory::Store::connect(&urls.directory_writer).await?;
    let tenants = seed::seed(&store, &targets, &http, st).await?;
    println!("  {} demo customers ready", tenants.len());
    println!("starting the gateway …");
    sup.spawn(
        "gateway",
        gateway_bin,
        &[
            "--config",
            &files.gateway.to_string_lossy(),
            "--log-format",
            args.log_format.as_str(),
        ],
    )?;
    sup.wait_ready(
        "gateway",
        &format!("{}/readyz", stack_json::admin_url(ports)),
        args.ready_timeout,
        &http,
    )
    .await?;
    Ok(tenants)
}

fn dedup(regions: &[RegionId]) -> Result<Vec<RegionId>, UpError> {
    let mut out: Vec<RegionId> = Vec::new();
    for r in regions {
        if out.contains(r) {
            return Err(UpError::Usage(format!("--regions: {r} is listed twice")));
        }
        out.push(r.clone());
    }
    if out.is_empty() {
        return Err(UpError::Usage(
            "--regions: at least one region is required".into(),
        ));
    }
    Ok(out)
}

fn remove_dir(dir: &Path) -> Result<(), UpError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpError::Failed(anyhow::anyhow!(
            "cannot delete {}: {e}",
            dir.display()
        ))),
    }
}
