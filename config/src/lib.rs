//! Configuration of every Residency Gateway binary (domain and wire types live in `residency-core`).
//!
//! This crate owns:
//! - layered configuration loading (TOML file, then `RESIDENCY__SECTION__KEY` environment
//!   overrides) with errors that name the file and the key ([`load`]);
//! - the region node's configuration ([`node`]);
//! - [`Secret`], the one wrapper of every secret in a config (redacted `Debug`/`Display`);
//! - the transport of Postgres URLs ([`pg_url`]: libpq's `sslmode`, `sslrootcert`, `sslcert`,
//!   `sslkey`; clear text to a non-loopback host refused unless allowed);
//! - the internal assertion's keys ([`assertion`]): `[[assertion.keys]]` entries, checked and
//!   loaded into `residency_core::assertion::AssertionKey`s (the assertion itself is core's).
//!
//! It does not open sockets or databases; binaries do that after their config validated.
#![deny(missing_docs)]

pub mod assertion;
pub mod duration;
pub mod gateway;
pub mod load;
pub mod node;
pub mod pg_url;
mod secret;
pub mod tracing;

pub use secret::{ConnectionUrl, Redact, Secret};

/// `url` with any password replaced by `***`, for logs and error messages (the one redaction
/// used by every config type and tool that prints a connection URL).
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password only fails on URLs without a host, which cannot carry one.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}
pub use load::{ConfigError, EnvSource, Problem};
