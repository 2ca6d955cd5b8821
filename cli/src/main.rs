//! `residency`: the operator CLI. This file only parses arguments and dispatches: each
//! subcommand lives in its own module and returns the process exit code (`up`, `audit`,
//! `tenants`/`orgs`/`keys`/`domains` in `admin`, `directory`, `token`).

mod admin;
mod audit;
mod directory;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Residency Gateway operator CLI.
#[derive(Parser)]
#[command(name = "residency", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit data placement and isolation posture of every region database
    /// (exit 0 clean, 1 violations, 2 could not run).
    Audit(audit::AuditArgs),
    /// Start the whole local stack: databases, keys, region nodes, gateway, dev identity
    /// provider and demo data; writes <dir>/stack.json; Ctrl-C stops it.
    Up(up::UpArgs),
    /// Customers through the gateway's admin API: create, list, get, update, provision,
    /// history.
    Tenants(admin::TenantsArgs),
    /// Organizations through the gateway's admin API: create, list, and their admin tokens
    /// (`orgs tokens create|list|revoke`).
    Orgs(admin::OrgsArgs),
    /// Signups: submit one to the public listener; list, approve or reject them (the review
    /// queue, platform admin).
    Signups(admin::SignupsArgs),
    /// API keys of a customer (scale and enterprise tiers): create, list, revoke.
    Keys(admin::KeysArgs),
    /// Custom domains of a customer: add (with its certificate reference), list, verify,
    /// remove.
    Domains(admin::DomainsArgs),
    /// Set up the global directory database of a deployment: `bootstrap` (roles and
    /// database, as the server's administrator), then `migrate` (as its owner).
    Directory(directory::DirectoryArgs),
    /// Mint a development JWT for a tenant from the local stack's signing key.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("residency: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Audit(args) => audit::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Tenants(args) => admin::tenants(args).await,
            Command::Orgs(args) => admin::orgs(args).await,
            Command::Signups(args) => admin::signups(args).await,
            Command::Keys(args) => admin::keys(args).await,
            Command::Domains(args) => admin::domains(args).await,
            Command::Directory(args) => directory::run(args).await,
            Command::Token(args) => token::run(&args),
        }
    })
}
