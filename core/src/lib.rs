//! The domain and wire contracts of Residency Gateway, shared by every binary.
//!
//! - [`RegionId`], [`TenantId`], [`OrgId`]: the identifiers that cross process boundaries, parsed once;
//! - [`headers`]: the header names the gateway and region nodes agree on;
//! - [`domain`]: custom domains (hostname rule, verification state, file entries);
//! - [`tenant`]: tiers, statuses, directory entries and the API-key format;
//! - [`assertion`]: the internal assertion the gateway mints and region nodes verify;
//! - [`wire`]: the typed request and response bodies of every contract, with their OpenAPI
//!   schemas ([`wire::customer`]: the customer API `/v1`; [`wire::admin`]: the admin API).
//!
//! It depends on no web framework, database or config format: both ends of every contract
//! use these types, so a field is renamed in one place.
#![deny(missing_docs)]

pub mod assertion;
pub mod domain;
pub mod headers;
mod ids;
mod tenant;
pub mod wire;

pub use ids::{IdError, OrgId, RegionId, TenantId};
pub use tenant::{
    split_api_key, ApiKeyEntry, DirectoryFile, TenantEntry, TenantStatus, Tier,
    DEFAULT_API_KEY_ROLE,
};
