//! `residency audit`: reads the regions and the directory from a local stack's `stack.json`
//! (default `.residency/stack.json`) or a deployment's `audit.toml`, runs
//! [`residency_audit::run_audit`], and prints the report as a table (default) or JSON, with an
//! optional HTML page. Progress goes to stderr, the report to stdout.
//!
//! Exit codes: 0 clean, 1 violations found, 2 could not run (bad input, directory or a region
//! database unreachable), always with the reason on stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use residency_audit::sources::{self, DirectorySpec, Loaded};
use residency_audit::{render, AuditInput, Outcome, Progress};
use residency_config::gateway::TenantEntry;
use residency_config::load::ProcessEnv;

/// Where the local stack writes its description (SPEC §4).
const DEFAULT_STACK: &str = ".residency/stack.json";

/// Arguments of `residency audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The local stack's stack.json (default: .residency/stack.json). Per region the auditor
    /// URL is `auditor_database_url`, else `database_url`.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    stack: Option<PathBuf>,
    /// A deployment's audit.toml: regions with auditor URLs, and the directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read the directory's tenants from this TOML directory file instead of the directory
    /// named by the stack or config.
    #[arg(long, value_name = "FILE")]
    directory_file: Option<PathBuf>,
    /// Print the report as JSON (schema version 1) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// The longest one region's scan may take (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = residency_config::duration::parse)]
    region_timeout: Duration,
}

/// Runs the audit and returns the exit code.
pub async fn run(args: AuditArgs) -> ExitCode {
    let input = match input(&args).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("residency audit: could not run: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = args.quiet;
    let progress = move |p: Progress<'_>| {
        if !quiet {
            print_progress(p);
        }
    };
    let report = residency_audit::run_audit(&input, &progress).await;
    let rendered = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("residency audit: could not run: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        render::text::render(&report)
    };
    println!("{rendered}");
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, render::html::render(&report)) {
            eprintln!(
                "residency audit: could not run: cannot write {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
        if !quiet {
            eprintln!("audit: wrote {}", path.display());
        }
    }
    let outcome = report.outcome();
    match &outcome {
        Outcome::Clean => {
            if !quiet {
                eprintln!("audit: clean");
            }
        }
        Outcome::Violations(n) => eprintln!("residency audit: {n} violation(s) found"),
        Outcome::Incomplete(failed) => {
            for (region, why) in failed {
                eprintln!("residency audit: could not run: region {region}: {why}");
            }
        }
    }
    ExitCode::from(outcome.exit_code())
}

async fn input(args: &AuditArgs) -> Result<AuditInput, String> {
    let loaded: Loaded = match (&args.config, &args.stack) {
        (Some(config), _) => {
            sources::load_audit_config(config, &ProcessEnv).map_err(|e| e.to_string())?
        }
        (None, Some(stack)) => sources::load_stack(stack).map_err(|e| e.to_string())?,
        (None, None) => {
            let stack = Path::new(DEFAULT_STACK);
            if !stack.exists() {
                return Err(format!(
                    "no {DEFAULT_STACK} here: start the local stack with `residency up`, or pass --stack FILE or --config audit.toml"
                ));
            }
            sources::load_stack(stack).map_err(|e| e.to_string())?
        }
    };
    for region in &loaded.owner_fallback {
        eprintln!(
            "audit: warning: region {region} has no auditor_database_url; auditing as the owner role of database_url, which FORCE RLS blinds"
        );
    }
    let directory = match &args.directory_file {
        Some(path) => DirectorySpec::File(path.clone()),
        None => loaded.directory.clone().ok_or_else(|| {
            "no directory: the file names none; pass --directory-file directory.toml".to_owned()
        })?,
    };
    let tenants = read_directory(&directory).await?;
    let mut input = AuditInput::new(loaded.regions, tenants);
    input.region_timeout = args.region_timeout;
    Ok(input)
}

async fn read_directory(spec: &DirectorySpec) -> Result<Vec<TenantEntry>, String> {
    match spec {
        DirectorySpec::File(path) => sources::load_directory_file(path).map_err(|e| e.to_string()),
        DirectorySpec::Postgres(url) => {
            let place = residency_audit::DatabaseInfo::describe(url);
            let store = residency_directory::Store::connect(url)
                .await
                .map_err(|e| format!("directory at {place}: {e}"))?;
            store
                .tenants()
                .await
                .map_err(|e| format!("cannot read the directory at {place}: {e}"))
        }
    }
}

fn print_progress(p: Progress<'_>) {
    match p {
        Progress::Connecting { region, database } => {
            eprintln!("audit: {region}: connecting to {database}");
        }
        Progress::TableCounted {
            region,
            table,
            rows,
            tenants,
            elapsed,
            done,
            of,
        } => eprintln!(
            "audit: {region}: [{done}/{of}] {table}: {rows} rows, {tenants} tenants ({} ms)",
            elapsed.as_millis()
        ),
        Progress::RegionDone { region, elapsed } => {
            eprintln!("audit: {region}: scanned in {} ms", elapsed.as_millis());
        }
        Progress::RegionFailed { region, error } => {
            eprintln!("audit: {region}: could not audit: {error}");
        }
    }
}
