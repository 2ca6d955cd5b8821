//! Shared configuration and wire contracts for every Residency Gateway binary.
//!
//! This crate owns:
//! - the typed identifiers that cross process boundaries ([`RegionId`], [`TenantId`]);
//! - the header names the gateway and region nodes agree on ([`headers`]);
//! - layered configuration loading (TOML file, then `RESIDENCY__SECTION__KEY` environment
//!   overrides) with errors that name the file and the key ([`load`]);
//! - the region node's configuration ([`node`]);
//! - the internal assertion that the gateway mints and region nodes verify ([`assertion`]):
//!   one implementation used by both sides, so the two can never drift apart.
//!
//! It does not open sockets or databases; binaries do that after their config validated.
#![deny(missing_docs)]

pub mod assertion;
pub mod duration;
pub mod gateway;
pub mod headers;
mod ids;
pub mod load;
pub mod node;

pub use ids::{IdError, RegionId, TenantId};
pub use load::{ConfigError, EnvSource, Problem};
