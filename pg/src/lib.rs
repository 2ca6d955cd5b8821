//! Postgres plumbing shared by the region nodes, the directory and the operator CLI:
//!
//! - [`bootstrap`]: an administrator creates a database and its owner, app and auditor roles;
//! - [`migrate`]: the owner applies embedded, versioned, checksummed migrations;
//! - [`pool`]: the check-out test of the connection pools (a closed connection is replaced);
//! - [`tls`]: every Postgres connection of the project, over rustls as its URL asks
//!   (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
//!
//! DDL cannot take bind parameters, so both modules interpolate identifiers only after
//! [`residency_config::node::is_simple_identifier`] accepted them, and never anything else.

pub mod bootstrap;
pub mod migrate;
pub mod pool;
pub mod tls;

pub use tls::Target;
