//! Postgres plumbing shared by the scan and the posture checks: the scan error, describing a
//! database URL without its password, quoting identifiers and turning driver errors into
//! [`ScanError`]s. Imports nothing of the audit but the report types, so `scan` and `posture`
//! both build on it without importing each other.

use std::time::Duration;

use tokio_postgres::config::Host;

use crate::report::DatabaseInfo;

/// Why a region database could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The auditor URL does not parse.
    #[error("invalid auditor database url: {0}")]
    Url(String),
    /// Connecting or logging in failed.
    #[error("cannot connect to {host}: {message}")]
    Connect {
        /// `host:port/database`.
        host: String,
        /// The driver's or server's message.
        message: String,
    },
    /// A query failed after connecting.
    #[error("{what} failed: {message}")]
    Query {
        /// Which step.
        what: String,
        /// The server's message.
        message: String,
    },
    /// The scan took longer than allowed.
    #[error("scan did not finish within {0:?}")]
    Timeout(Duration),
}

impl ScanError {
    /// Whether the database was not reached at all (as opposed to failing midway).
    #[must_use]
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Url(_) | Self::Connect { .. })
    }
}

/// Describes where `url` points, without its password.
pub(crate) fn database_info(url: &str) -> Result<DatabaseInfo, ScanError> {
    let cfg = residency_pg::tls::settings(url).map_err(ScanError::Url)?;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let role = cfg.get_user().unwrap_or_default().to_owned();
    Ok(DatabaseInfo {
        host,
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        name: cfg.get_dbname().unwrap_or(&role).to_owned(),
        role,
        server_version: None,
    })
}

/// `host:port/database` of a Postgres URL, without credentials, for messages.
#[must_use]
pub fn describe_database(url: &str) -> String {
    database_info(url).map_or_else(
        |_| "an unparseable database url".to_owned(),
        |i| format!("{}:{}/{}", i.host, i.port, i.name),
    )
}

/// Quotes a Postgres identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's message when there is one, else the driver's.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        }
    }
}

/// A failed query of step `what`, with the server's or driver's message.
pub(crate) fn query_err(what: &str, e: &tokio_postgres::Error) -> ScanError {
    ScanError::Query {
        what: what.to_owned(),
        message: pg_message(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn database_info_has_no_password() {
        let i = database_info("postgres://aud:s3cret@db.eu.internal:6432/region_eu").unwrap();
        assert_eq!(
            (i.host.as_str(), i.port, i.name.as_str(), i.role.as_str()),
            ("db.eu.internal", 6432, "region_eu", "aud")
        );
        assert!(!format!("{i:?}").contains("s3cret"));
        assert!(database_info("not a url at all ::").is_err());
    }
}
