//! Database access for the region node.
//!
//! - [`pool`]: the bb8 pool of application-role connections;
//! - [`tenant_tx`]: the only way handlers reach the database — one pooled connection, one
//!   transaction, `app.tenant_id` and `app.role` set transaction-locally first;
//! - [`migrate`]: embedded, versioned migrations applied by the owner role;
//! - [`bootstrap`]: creation of the region database and its three roles by an admin
//!   (re-exported from `residency-pg`).

pub mod migrate;
pub mod pool;
pub mod tenant_tx;

pub use residency_pg::bootstrap;
