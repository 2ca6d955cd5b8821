//! `residency`: the operator CLI. Its subcommands (`up`, `audit`, `tenants`, `keys`, `token`)
//! arrive with their issues; today it only reports what is built.

use clap::Parser;

/// Residency Gateway operator CLI.
#[derive(Parser)]
#[command(name = "residency", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!(
        "residency: no subcommands are built yet (up, audit, tenants, keys, token are planned; see README)"
    );
    std::process::exit(2);
}
