//! Wire contracts: the typed bodies each end of an API serializes and parses, with their
//! OpenAPI schemas (`utoipa::ToSchema`), so a field is named in one place.

pub mod customer;

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
