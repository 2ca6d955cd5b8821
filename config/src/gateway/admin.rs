//! `[admin]`: the admin API's token, its directory writer role and the admin listener's
//! connection limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::limits::MIN_HEADER_BYTES;
use super::DirectorySource;
use crate::load::check_postgres_url;
use crate::secret::{ConnectionUrl, Secret};
use crate::Problem;

/// The shortest admin token accepted.
pub(crate) const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// `[admin]`: the admin API on `listen.admin`.
///
/// The bearer token comes from `token_file` (first line, trimmed) or `token` (meant for the
/// environment: `RESIDENCY__ADMIN__TOKEN`); with neither, `/admin/v1/...` answers 401 to
/// everyone. `/healthz`, `/readyz` and `/metrics` need no token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A file holding the admin token.
    pub token_file: Option<PathBuf>,
    /// The admin token itself (prefer the environment over a config file).
    pub token: Option<Secret<String>>,
    /// Name of the token, recorded as `admin:<name>` in the directory history.
    pub token_name: String,
    /// Time a region node has to answer a provisioning call.
    #[serde(with = "crate::duration::serde_str")]
    pub provision_timeout: Duration,
    /// The directory database as its **writer** role, through which the admin API writes
    /// (`RESIDENCY__ADMIN__DIRECTORY_URL`). Required when the admin API is enabled in front
    /// of a Postgres directory; it must name another role than `directory.url`, which the
    /// public path's cache reads as the reader role.
    pub directory_url: Option<Secret<ConnectionUrl>>,
    /// Concurrent connections to the admin listener; one more is closed as soon as it is
    /// accepted. The public listener's `[limits]` do not apply to the admin listener.
    pub max_connections: usize,
    /// Time a client of the admin listener has to send a complete HTTP/1 request head.
    #[serde(with = "crate::duration::serde_str")]
    pub header_read_timeout: Duration,
    /// Largest request header block on the admin listener; larger ones get 431.
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per admin connection.
    pub h2_max_concurrent_streams: u32,
    /// An admin connection with no request in flight for this long is closed gracefully.
    #[serde(with = "crate::duration::serde_str")]
    pub idle_timeout: Duration,
    /// An admin connection older than this (less up to 10 % jitter) is closed gracefully.
    #[serde(with = "crate::duration::serde_str")]
    pub max_connection_age: Duration,
    /// Tenant moves: rows per copy batch (1-10000), each batch one call to the target node.
    pub move_batch_rows: u32,
    /// Tenant moves: how long the source's rows are kept after the flip before the purge
    /// (`"0s"`: purge at once).
    #[serde(with = "crate::duration::serde_str")]
    pub move_purge_grace: Duration,
    /// Tenant moves: the lease a driving task holds on a move, renewed with every step; a
    /// move whose driver died can be resumed once it expired.
    #[serde(with = "crate::duration::serde_str")]
    pub move_lease: Duration,
    /// Test hook: stop every move after its copy, before verifying (`failed`, "held"), so a
    /// test can change a copied row before `resume` verifies. Never set in production.
    pub move_test_hold_before_verify: bool,
}

impl AdminConfig {
    /// Whether the admin API can be called at all: a token is configured (without one
    /// every `/admin/v1` call is refused).
    #[must_use]
    pub(crate) fn has_token(&self) -> bool {
        self.token_file.is_some() || self.token.is_some()
    }

    /// Every problem of `[admin]` on its own (see also [`Self::validate_directory_url`]).
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match (&self.token_file, &self.token) {
            (Some(_), Some(_)) => out.push(Problem::new(
                "admin.token",
                "set at most one of admin.token_file and admin.token",
            )),
            (Some(f), None) => match std::fs::read_to_string(f) {
                Ok(text) if text.trim().len() >= MIN_ADMIN_TOKEN_BYTES => {}
                Ok(_) => out.push(Problem::new(
                    "admin.token_file",
                    format!("the token must be at least {MIN_ADMIN_TOKEN_BYTES} characters"),
                )),
                Err(e) => out.push(Problem::new(
                    "admin.token_file",
                    format!("cannot read {}: {e}", f.display()),
                )),
            },
            (None, Some(t)) if t.expose().trim().len() < MIN_ADMIN_TOKEN_BYTES => {
                out.push(Problem::new(
                    "admin.token",
                    format!("must be at least {MIN_ADMIN_TOKEN_BYTES} characters"),
                ));
            }
            _ => {}
        }
        let name_ok = (1..=64).contains(&self.token_name.len())
            && self
                .token_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            out.push(Problem::new(
                "admin.token_name",
                "must be 1-64 characters of a-z, 0-9, '-' and '_'",
            ));
        }
        if self.provision_timeout.is_zero() {
            out.push(Problem::new(
                "admin.provision_timeout",
                "must be greater than 0",
            ));
        }
        if !(1..=10_000).contains(&self.move_batch_rows) {
            out.push(Problem::new(
                "admin.move_batch_rows",
                "must be between 1 and 10000",
            ));
        }
        if self.move_lease < Duration::from_secs(1) {
            out.push(Problem::new("admin.move_lease", "must be at least 1s"));
        }
        out.extend(self.validate_listener());
        out
    }

    /// The admin listener's connection limits.
    fn validate_listener(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_connections == 0 {
            out.push(Problem::new(
                "admin.max_connections",
                "must be greater than 0",
            ));
        }
        for (key, d) in [
            ("admin.header_read_timeout", self.header_read_timeout),
            ("admin.idle_timeout", self.idle_timeout),
            ("admin.max_connection_age", self.max_connection_age),
        ] {
            if d.is_zero() {
                out.push(Problem::new(key, "must be greater than 0"));
            }
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            out.push(Problem::new(
                "admin.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and 1048576"),
            ));
        }
        if self.h2_max_concurrent_streams == 0 {
            out.push(Problem::new(
                "admin.h2_max_concurrent_streams",
                "must be greater than 0",
            ));
        }
        out
    }

    /// `admin.directory_url`: the writer of a Postgres directory, distinct from its reader
    /// (`directory.url`). Required when the admin API is enabled (an admin listener and a
    /// token) in front of a Postgres directory; refused with a file directory.
    pub(super) fn validate_directory_url(
        &self,
        directory: &DirectorySource,
        admin_listener: bool,
    ) -> Vec<Problem> {
        const KEY: &str = "admin.directory_url";
        let mut out = Vec::new();
        let admin_enabled = admin_listener && self.has_token();
        match (directory, &self.directory_url) {
            (DirectorySource::File { .. }, Some(_)) => out.push(Problem::new(
                KEY,
                "only used with [directory] source = \"postgres\"",
            )),
            (DirectorySource::Postgres { .. }, None) if admin_enabled => out.push(Problem::new(
                KEY,
                "required when the admin api is enabled with a postgres directory: the url of \
                 the directory's writer role (RESIDENCY__ADMIN__DIRECTORY_URL)",
            )),
            (
                DirectorySource::Postgres {
                    url: reader,
                    allow_insecure_transport,
                    ..
                },
                Some(writer),
            ) => {
                let Some(writer_user) = check_postgres_url(KEY, writer, &mut out) else {
                    return out;
                };
                crate::pg_url::check_transport(
                    KEY,
                    writer,
                    *allow_insecure_transport,
                    super::directory::ALLOW_INSECURE_KEY,
                    &mut out,
                );
                let reader_user = url::Url::parse(reader.expose())
                    .ok()
                    .map(|u| u.username().to_owned());
                if reader_user.as_deref() == Some(writer_user.as_str()) {
                    out.push(Problem::new(
                        KEY,
                        format!(
                            "must name another role than directory.url ({writer_user:?}): the \
                             cache reads as the reader role, the admin api writes as the writer"
                        ),
                    ));
                }
            }
            _ => {}
        }
        out
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            directory_url: None,
            token_file: None,
            token: None,
            token_name: "admin".to_owned(),
            provision_timeout: Duration::from_secs(10),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            h2_max_concurrent_streams: 200,
            idle_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(3600),
            move_batch_rows: 1000,
            move_purge_grace: Duration::ZERO,
            move_lease: Duration::from_secs(5),
            move_test_hold_before_verify: false,
        }
    }
}
