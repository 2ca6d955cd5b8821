//! Typed bodies of every contract between Residency processes and their clients, used by
//! both ends: the server parses requests into them and builds responses only from them, the
//! client builds requests from them and parses responses into them. Each derives
//! `utoipa::ToSchema`, so the OpenAPI documents are generated from the same types.
//!
//! - [`customer`]: the customer API `/v1` (one module per resource, `Page<T>`);
//! - [`admin`]: the gateway's admin API (organizations, tenants, history, API keys, regions,
//!   readiness) and its list envelopes;
//! - [`audit`]: the versioned audit report (`GET /admin/v1/audit`, `residency audit --json`);
//! - [`moves`]: tenant moves between regions (admin API bodies and the nodes' internal calls);
//! - [`org_audit`]: organization-wide audit search (admin answer, gateway → node fan-out);
//! - [`org_ownership`]: an organization's ownership transfer (admin API);
//! - [`provision`]: the gateway → home node internal calls (provisioning, role check);
//! - [`problem`]: the RFC 9457 problem body every service answers errors with.
//!
//! Timestamps are written as `chrono`'s `to_rfc3339()` (`…+00:00`), the format the admin API
//! has always answered with, and read in any RFC 3339 form.

pub mod admin;
pub mod audit;
pub mod customer;
pub mod moves;
pub mod org_audit;
pub mod org_ownership;
pub mod problem;
pub mod provision;
mod rfc3339;

pub use problem::ProblemDetails;

use serde::{Deserialize, Deserializer};

/// Distinguishes an absent field (`None`, with `#[serde(default)]`) from an explicit `null`
/// (`Some(None)`) in PATCH bodies: `#[serde(default, deserialize_with = "nullable")]`.
///
/// # Errors
/// When the value is neither null nor a `T`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
