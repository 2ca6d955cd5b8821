//! `region-node`: serve a region, apply its migrations, or bootstrap its database and roles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use residency_config::load::{deprecated_var, load, EnvSource, ProcessEnv};
use residency_config::node::NodeConfig;
use residency_http::logging::otlp::Otlp;
use residency_http::logging::LogFormat;
use residency_region_node::db::bootstrap::{self, Plan, RoleSpec};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator, as in the gateway: the request path allocates
/// and frees small buffers (rows, header maps, JSON) on every request, and glibc's malloc and
/// free were about 10 % of the node's CPU under the read benchmark (`perf`, `bench/node.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Residency Gateway region node.
#[derive(Parser)]
#[command(name = "region-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format: `text` (default) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = residency_http::logging::FORMAT_ENV,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the customer API for this region.
    Serve {
        /// Node config file (TOML); `RESIDENCY__SECTION__KEY` env vars override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Apply pending migrations as the owner role (`database.owner_url`).
    Migrate {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the region database and its owner, app and auditor roles (run as an admin).
    /// Names and passwords come from the config's `database.url`, `database.owner_url` and
    /// `database.auditor_role`.
    Bootstrap {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The Postgres administrator's URL (a role that may create databases and roles;
        /// default postgres://postgres@127.0.0.1:5432/postgres). The deprecated
        /// RESIDENCY_ADMIN_URL is still read when it holds a postgres:// URL.
        #[arg(long, env = "RESIDENCY_PG_ADMIN_URL", hide_env_values = true)]
        admin_url: Option<String>,
        /// Password for the auditor role.
        #[arg(long, env = "RESIDENCY_AUDITOR_PASSWORD", hide_env_values = true)]
        auditor_password: String,
    },
    /// Read a password on standard input and print its SCRAM-SHA-256 verifier, for scripts
    /// that create roles with psql (`ALTER ROLE … PASSWORD '<verifier>'`) without sending the
    /// plaintext to the server.
    ScramVerifier,
}

fn load_config(path: &std::path::Path) -> Result<NodeConfig, ExitCode> {
    load(path, &ProcessEnv).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(64)
    })
}

/// The default of `bootstrap --admin-url`.
const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `bootstrap`'s admin URL: the flag or `RESIDENCY_PG_ADMIN_URL`, else the deprecated
/// `RESIDENCY_ADMIN_URL` (with a warning) when it is a Postgres URL. That name also means the
/// gateway's admin API to the `residency` CLI, so an `http://` value is the CLI's and is
/// ignored here instead of being dialled as a database.
/// Returns the URL and the warning to print, if any.
fn pg_admin_url(flag: Option<String>, env: &dyn EnvSource) -> (String, Option<String>) {
    if let Some(url) = flag {
        return (url, None);
    }
    match deprecated_var(env, "RESIDENCY_ADMIN_URL", "RESIDENCY_PG_ADMIN_URL") {
        Some((url, warning))
            if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
        {
            (url, Some(warning))
        }
        Some(_) => (
            DEFAULT_PG_ADMIN_URL.to_owned(),
            Some(
                "ignoring RESIDENCY_ADMIN_URL: not a postgres:// URL (to the residency CLI it is \
                 the gateway's admin API); the Postgres administrator's URL is \
                 RESIDENCY_PG_ADMIN_URL"
                    .to_owned(),
            ),
        ),
        None => (DEFAULT_PG_ADMIN_URL.to_owned(), None),
    }
}

fn role_from_url(url: &str) -> anyhow::Result<(RoleSpec, String)> {
    let u = url::Url::parse(url)?;
    let spec = RoleSpec {
        name: u.username().to_owned(),
        password: u.password().unwrap_or_default().to_owned(),
    };
    Ok((spec, u.path().trim_start_matches('/').to_owned()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging once its config is read (`[tracing]` may add the span
    // exporter); a config problem goes to standard error either way.
    if !matches!(cli.command, Command::Serve { .. }) {
        residency_http::logging::init(cli.log_format);
    }
    let mut _otlp_guard = None;
    let result = match cli.command {
        Command::ScramVerifier => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("region-node: reading the password: {e}");
                return ExitCode::from(64);
            }
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("region-node: no password on standard input");
                return ExitCode::from(64);
            }
            println!("{}", bootstrap::scram_verifier(password));
            Ok(())
        }
        Command::Serve { config } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let otlp = cfg.tracing.otlp("region-node").map(|t| Otlp {
                endpoint: t.endpoint,
                service_name: t.service_name,
                sample_ratio: t.sample_ratio,
                // The gateway (behind mTLS and the assertion) decided whether to record.
                follow_parent: true,
            });
            match residency_http::logging::init_with_otlp(cli.log_format, otlp.as_ref()) {
                Ok(g) => _otlp_guard = g,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(64);
                }
            }
            // Start-up checks (the database role among them) before binding: a node that
            // must not serve never listens.
            let listen = cfg.node.listen;
            let cfg_health = cfg.node.health;
            let prepared = match residency_region_node::prepare(cfg).await {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("region-node: refusing to start: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "{}: node.listen: cannot bind {listen}: {e}",
                        config.display(),
                    );
                    return ExitCode::from(69);
                }
            };
            let health = match cfg_health {
                None => None,
                Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        eprintln!("{}: node.health: cannot bind {addr}: {e}", config.display(),);
                        return ExitCode::from(69);
                    }
                },
            };
            let token = CancellationToken::new();
            if let Err(e) = residency_http::shutdown::watch(token.clone()) {
                eprintln!("cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
            prepared.serve_with_health(listener, health, token).await
        }
        Command::Migrate { config } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            async {
                let owner = cfg
                    .database
                    .owner_url
                    .as_ref()
                    .map(|u| u.expose().as_str())
                    .context("database.owner_url is required for migrate")?;
                let roles = residency_region_node::grant_roles(&cfg)?;
                let applied = residency_region_node::db::migrate::migrate(owner, &roles).await?;
                println!("applied migrations: {applied:?}");
                Ok(())
            }
            .await
        }
        Command::Bootstrap {
            config,
            admin_url,
            auditor_password,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let (admin_url, warning) = pg_admin_url(admin_url, &ProcessEnv);
            if let Some(w) = warning {
                eprintln!("region-node: {w}");
            }
            async {
                let (app, database) = role_from_url(cfg.database.url.expose())?;
                let (owner, _) = role_from_url(
                    cfg.database
                        .owner_url
                        .as_ref()
                        .map(|u| u.expose().as_str())
                        .context("database.owner_url is required")?,
                )?;
                let auditor = RoleSpec {
                    name: cfg
                        .database
                        .auditor_role
                        .clone()
                        .context("database.auditor_role is required")?,
                    password: auditor_password,
                };
                bootstrap::bootstrap(
                    &admin_url,
                    &Plan {
                        database,
                        owner,
                        app,
                        auditor,
                    },
                )
                .await?;
                println!("bootstrapped");
                Ok(())
            }
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("region-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_old_admin_url_name_is_read_only_as_a_postgres_url_and_with_a_warning() {
        let flag = "postgres://flag@db/postgres".to_owned();
        let old = env(&[("RESIDENCY_ADMIN_URL", "postgres://old@db/postgres")]);
        assert_eq!(pg_admin_url(Some(flag.clone()), &old), (flag, None));
        let (url, warning) = pg_admin_url(None, &old);
        assert_eq!(url, "postgres://old@db/postgres");
        assert!(warning.unwrap().contains("RESIDENCY_PG_ADMIN_URL"));
        // The CLI's meaning of the old name: the gateway's admin API, never dialled here.
        let cli = env(&[("RESIDENCY_ADMIN_URL", "http://127.0.0.1:9090")]);
        let (url, warning) = pg_admin_url(None, &cli);
        assert_eq!(url, DEFAULT_PG_ADMIN_URL);
        assert!(warning.unwrap().starts_with("ignoring RESIDENCY_ADMIN_URL"));
        assert_eq!(
            pg_admin_url(None, &env(&[])),
            (DEFAULT_PG_ADMIN_URL.to_owned(), None)
        );
    }
}
