//! Serializes timestamps as `DateTime::to_rfc3339` (`2026-01-02T03:04:05.123456+00:00`): the
//! admin API's format since its first version. Reading uses `chrono`'s own `Deserialize`,
//! which accepts any RFC 3339 offset.

use chrono::{DateTime, Utc};
use serde::Serializer;

// serde's `serialize_with` passes the field by reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

// serde's `serialize_with` passes the field by reference.
#[allow(clippy::ref_option)]
pub(crate) fn option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}
