//! `residency directory bootstrap` and `residency directory migrate`: the one-shot set-up of
//! the global directory database for a deployment (the compose service `directory-init`, the
//! Kubernetes Job `directory-init`), with the same Rust code `residency up` uses
//! ([`residency_directory::bootstrap`], [`residency_directory::migrate`] under its advisory
//! lock). Both are idempotent: a second run changes nothing but the role passwords.
//!
//! Every credential comes from the environment or a file, never from argv (which other users
//! of the machine can read), and is never printed: the URLs are named by their variable only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use residency_directory::{DirectoryRoles, RolePlan};
use residency_pg::bootstrap::RoleSpec;

#[derive(Args)]
pub(crate) struct DirectoryArgs {
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Create (or bring up to date) the directory database and its owner, reader and writer
    /// roles, as the server's administrator. Names come from the owner URL (user, database).
    Bootstrap(BootstrapArgs),
    /// Apply the directory's pending migrations as its owner (advisory lock held; re-run is a
    /// no-op).
    Migrate(MigrateArgs),
}

/// The owner's connection and the two roles the migrations grant to.
#[derive(Args)]
struct OwnerArgs {
    /// The owner's URL, with its password and the directory database as path (prefer the
    /// env: argv is visible to other users of the machine).
    #[arg(long, env = "RESIDENCY_DIRECTORY_OWNER_URL", hide_env_values = true)]
    owner_url: String,
    /// The reader role (the gateway's cache); default: the owner's name with `_reader` in
    /// place of `_owner`.
    #[arg(long, env = "DIRECTORY_READER_ROLE")]
    reader_role: Option<String>,
    /// The writer role (the admin API); default: the owner's name with `_writer`.
    #[arg(long, env = "DIRECTORY_WRITER_ROLE")]
    writer_role: Option<String>,
}

impl OwnerArgs {
    fn owner_url(&self) -> anyhow::Result<url::Url> {
        // The parse error never quotes the URL (it holds a password).
        url::Url::parse(&self.owner_url)
            .map_err(|e| anyhow::anyhow!("RESIDENCY_DIRECTORY_OWNER_URL is not a URL: {e}"))
    }

    fn roles(&self, owner: &str) -> DirectoryRoles {
        let default = DirectoryRoles::beside_owner(owner);
        DirectoryRoles {
            reader: self.reader_role.clone().unwrap_or(default.reader),
            writer: self.writer_role.clone().unwrap_or(default.writer),
        }
    }
}

#[derive(Args)]
struct BootstrapArgs {
    #[command(flatten)]
    owner: OwnerArgs,
    /// The server administrator's URL (any database, `postgres` usually; prefer the env).
    #[arg(long, env = "RESIDENCY_DIRECTORY_ADMIN_URL", hide_env_values = true)]
    admin_url: String,
    /// File holding the reader's password (else the env DIRECTORY_READER_PASSWORD).
    #[arg(long)]
    reader_password_file: Option<PathBuf>,
    /// File holding the writer's password (else the env DIRECTORY_WRITER_PASSWORD).
    #[arg(long)]
    writer_password_file: Option<PathBuf>,
}

#[derive(Args)]
struct MigrateArgs {
    #[command(flatten)]
    owner: OwnerArgs,
}

/// Runs `residency directory …`: exit 0, 64 for a missing or malformed setting (URL,
/// password, role names), 1 when the bootstrap or migration failed (the message names a
/// refused login or an unknown database as such).
pub(crate) async fn run(args: DirectoryArgs) -> ExitCode {
    let result = match args.command {
        DirectoryCommand::Bootstrap(a) => bootstrap(a).await,
        DirectoryCommand::Migrate(a) => migrate(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("residency directory: {e:#}");
            if e.is::<ConfigError>() {
                ExitCode::from(crate::exit::CONFIG)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A setting that is missing or malformed (exit 64, [`crate::exit`]), as opposed to a
/// bootstrap or migration that failed (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConfigError(String);

fn config(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ConfigError(format!("{e:#}")))
}

/// A password from `file` (one line, trailing newline dropped) or else the env `var`.
fn password(file: Option<&PathBuf>, var: &str) -> anyhow::Result<String> {
    let value = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?,
        None => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("set {var} or pass its --*-password-file"))?,
    };
    Ok(value.trim_end_matches(['\n', '\r']).to_owned())
}

/// The decoded user and password of `url`, and its database (the path).
fn credentials(url: &url::Url) -> anyhow::Result<(String, String, String)> {
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| anyhow::anyhow!("the owner URL is not valid UTF-8"))
    };
    let user = decode(url.username())?;
    let pass = decode(url.password().unwrap_or(""))?;
    let db = decode(url.path().trim_start_matches('/'))?;
    anyhow::ensure!(!user.is_empty(), "the owner URL names no user");
    anyhow::ensure!(!db.is_empty(), "the owner URL names no database");
    Ok((user, pass, db))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn bootstrap(a: BootstrapArgs) -> anyhow::Result<()> {
    let owner_url = a.owner.owner_url().map_err(config)?;
    let (owner, owner_password, database) = credentials(&owner_url).map_err(config)?;
    let roles = a.owner.roles(&owner);
    if roles.reader == owner || roles.writer == owner || roles.reader == roles.writer {
        return Err(config(anyhow::anyhow!(
            "owner, reader and writer must be three roles"
        )));
    }
    let plan = RolePlan {
        owner: RoleSpec {
            name: owner,
            password: owner_password,
        },
        reader: RoleSpec {
            name: roles.reader.clone(),
            password: password(a.reader_password_file.as_ref(), "DIRECTORY_READER_PASSWORD")
                .map_err(config)?,
        },
        writer: RoleSpec {
            name: roles.writer.clone(),
            password: password(a.writer_password_file.as_ref(), "DIRECTORY_WRITER_PASSWORD")
                .map_err(config)?,
        },
    };
    residency_directory::bootstrap(&a.admin_url, &database, &plan).await?;
    println!(
        "directory database {database} ready: owner {}, reader {}, writer {}",
        plan.owner.name, roles.reader, roles.writer
    );
    Ok(())
}

async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let owner_url = a.owner.owner_url().map_err(config)?;
    let (owner, _, _) = credentials(&owner_url).map_err(config)?;
    let roles = a.owner.roles(&owner);
    let applied = residency_directory::migrate(owner_url.as_str(), &roles).await?;
    let names = residency_directory::MIGRATIONS
        .iter()
        .filter(|m| applied.contains(&m.version));
    for m in names {
        println!("applied directory migration {}", m.name);
    }
    println!(
        "directory schema up to date ({} migration(s) applied now)",
        applied.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_decoded_from_the_owner_url() {
        let u =
            url::Url::parse("postgres://dir%5Fowner:pa%73s@h:5432/dir_db?sslmode=disable").unwrap();
        assert_eq!(
            credentials(&u).unwrap(),
            ("dir_owner".into(), "pass".into(), "dir_db".into())
        );
        let no_db = url::Url::parse("postgres://o:p@h:5432").unwrap();
        assert!(credentials(&no_db).is_err());
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
    }

    #[test]
    fn password_files_drop_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "abcDEF1234567890\n").unwrap();
        assert_eq!(password(Some(&f), "UNUSED").unwrap(), "abcDEF1234567890");
        let missing = dir.path().join("none");
        let err = password(Some(&missing), "UNUSED").unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
