//! `residency`: the operator CLI. This file only parses arguments and dispatches: each
//! subcommand lives in its own module and returns the process exit code (`up`, `audit`,
//! `tenants`/`orgs`/`keys`/`domains`/`regions` in `admin`, `directory`, `token`; the exit
//! codes in [`exit`], the typed values in [`values`]). `completions` and `man` are generated
//! here from the same clap definition, so they cannot drift from it.

mod admin;
mod audit;
mod directory;
mod exit;
mod token;
mod up;
mod values;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The top-level examples (`-h`), and with the exit codes (`--help`, the man page).
macro_rules! examples {
    () => {
        "\
Examples:
  residency up                                  # the whole local stack; Ctrl-C stops it
  residency regions                             # regions and their upstreams' health
  residency tenants create --name Acme --region eu --tier scale
  residency tenants list --region eu --json
  residency keys create <tenant-id> --name ci
  TOKEN=$(residency token --tenant <tenant-id>)
  residency audit --html audit.html             # placement and isolation, exit 1 on violations
  residency completions bash > /etc/bash_completion.d/residency
  residency man --dir /usr/local/share/man/man1"
    };
}

/// Every exit code ([`exit`]), for `--help` and the man page.
macro_rules! exit_codes {
    () => {
        "\
Exit codes (every command; after sysexits):
  0   done (audit: clean)
  1   refused or failed: the admin API answered with a problem, audit found violations,
      a move did not end done, a step of up failed
  2   invalid command line (a value outside the possible values); audit: could not run
  64  configuration error: a missing or malformed setting (admin URL or token, stack.json,
      signing key, directory URL or password, an up flag value), a --pg database that does
      not exist
  69  a service is unreachable: the gateway's admin API, Postgres
  71  up: a port is in use
  72  up: the region-node or residency-gateway binary is missing
  75  up: another up runs on this --dir
  76  the gateway answered something this CLI does not understand (another version)
  77  Postgres rejected the login (wrong password, unknown role, pg_hba.conf)"
    };
}

const EXAMPLES: &str = concat!(
    examples!(),
    "\n\nExit codes: 0 done, 1 refused/failed, 2 invalid command line, 64 configuration \
     error, 69 unreachable, 77 Postgres rejected the login (--help lists every code)."
);

/// Residency Gateway operator CLI.
#[derive(Parser)]
#[command(
    name = "residency",
    version,
    about,
    after_help = EXAMPLES,
    after_long_help = concat!(examples!(), "\n\n", exit_codes!())
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const UP_EXAMPLES: &str = "\
Examples:
  residency up                                  # Postgres at postgres://postgres@127.0.0.1:5432/postgres
  residency up --pg postgres://admin:secret@db.local:5432/postgres --regions eu,us
  RESIDENCY_PG_ADMIN_URL=postgres://... residency up --base-port 18000
  residency up --fresh                          # drop this stack's databases and start over
  residency up --teardown                       # drop them and exit";

const AUDIT_EXAMPLES: &str = "\
Examples:
  residency audit                               # the local stack's .residency/stack.json
  residency audit --config audit.toml --json > report.json
  residency audit --html audit.html --quiet";

const TOKEN_EXAMPLES: &str = "\
Examples:
  TOKEN=$(residency token --tenant <tenant-id>)
  residency token --tenant <tenant-id> --role viewer --ttl 15m
  curl -H \"authorization: Bearer $TOKEN\" https://127.0.0.1:8443/v1/me";

#[derive(Subcommand)]
enum Command {
    /// Audit data placement and isolation posture of every region database
    /// (exit 0 clean, 1 violations, 2 could not run).
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(audit::AuditArgs),
    /// Start the whole local stack: databases, keys, region nodes, gateway, dev identity
    /// provider and demo data; writes <dir>/stack.json; Ctrl-C stops it.
    #[command(after_help = UP_EXAMPLES)]
    Up(up::UpArgs),
    /// Customers through the gateway's admin API: create, list, get, update, provision,
    /// history, move.
    #[command(after_help = admin::TENANTS_EXAMPLES)]
    Tenants(admin::TenantsArgs),
    /// Organizations through the gateway's admin API: create, list, and their admin tokens
    /// (`orgs tokens create|list|revoke`).
    Orgs(admin::OrgsArgs),
    /// Signups: submit one to the public listener; list, approve or reject them (the review
    /// queue, platform admin).
    Signups(admin::SignupsArgs),
    /// API keys of a customer (scale and enterprise tiers): create, list, revoke.
    #[command(after_help = admin::KEYS_EXAMPLES)]
    Keys(admin::KeysArgs),
    /// Custom domains of a customer: add (with its certificate reference), list, verify,
    /// remove.
    #[command(after_help = admin::DOMAINS_EXAMPLES)]
    Domains(admin::DomainsArgs),
    /// The gateway's regions with each upstream's health and last check.
    #[command(after_help = admin::REGIONS_EXAMPLES)]
    Regions(admin::RegionsArgs),
    /// Set up the global directory database of a deployment: `bootstrap` (roles and
    /// database, as the server's administrator), then `migrate` (as its owner).
    Directory(directory::DirectoryArgs),
    /// Mint a development JWT for a tenant from the local stack's signing key.
    #[command(after_help = TOKEN_EXAMPLES)]
    Token(token::TokenArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = "\
Examples:
  residency completions bash > ~/.local/share/bash-completion/completions/residency
  residency completions zsh > \"${fpath[1]}/_residency\"
  residency completions fish > ~/.config/fish/completions/residency.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page residency(1) to stdout, or write it and one page per subcommand
    /// (residency-tenants-create.1, …) into a directory.
    #[command(after_help = "\
Examples:
  residency man | man -l -
  residency man --dir /usr/local/share/man/man1")]
    Man {
        /// Write residency.1 and every subcommand's page here instead of printing
        /// residency.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "residency",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return man(dir.as_deref()),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("residency: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match command {
            Command::Audit(args) => audit::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Tenants(args) => admin::tenants(args).await,
            Command::Orgs(args) => admin::orgs(args).await,
            Command::Signups(args) => admin::signups(args).await,
            Command::Keys(args) => admin::keys(args).await,
            Command::Domains(args) => admin::domains(args).await,
            Command::Regions(args) => admin::regions(args).await,
            Command::Directory(args) => directory::run(args).await,
            Command::Token(args) => token::run(&args),
            Command::Completions { .. } | Command::Man { .. } => ExitCode::SUCCESS,
        }
    })
}

/// `residency man [--dir DIR]`: residency(1) on stdout, or clap_mangen's pages in DIR
/// (residency.1 and one per subcommand, named as git does: residency-tenants-create.1).
fn man(dir: Option<&Path>) -> ExitCode {
    let result = match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .and_then(|()| std::io::stdout().write_all(&page))
        }
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let place = dir.map_or("stdout".to_owned(), |d| d.display().to_string());
            eprintln!("residency man: cannot write to {place}: {e}");
            ExitCode::from(1)
        }
    }
}
