//! Identifiers that cross process boundaries, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// A region id must be 1–32 characters of `[a-z0-9-]`, starting with a letter.
    #[error("region id must be 1-32 characters of a-z, 0-9 and '-', starting with a letter")]
    Region,
    /// A tenant id must be a UUID.
    #[error("tenant id must be a uuid")]
    Tenant,
    /// An organization id must be a UUID.
    #[error("organization id must be a uuid")]
    Org,
}

/// A residency region id such as `eu` or `eu-de`.
///
/// Regions are data, not code: any id that passes validation can be configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(String);

impl RegionId {
    /// Parses and validates a region id.
    ///
    /// # Errors
    /// [`IdError::Region`] when the id is empty, too long, or has characters outside `[a-z0-9-]`.
    pub fn new(id: &str) -> Result<Self, IdError> {
        let bytes = id.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 32
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(IdError::Region)
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, so region ids line up in tables.
        f.pad(&self.0)
    }
}

impl FromStr for RegionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for RegionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RegionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A customer (tenant) id. Only ever taken from a verified credential or assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Wraps a UUID.
    #[must_use]
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::Tenant)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// An organization (SaaS partner) id: the owner of tenants in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(Uuid);

impl OrgId {
    /// Wraps a UUID.
    #[must_use]
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrgId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::Org)
    }
}

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for OrgId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A UUID string in the OpenAPI documents, the wire form of [`TenantId`] and [`OrgId`].
fn uuid_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

impl utoipa::PartialSchema for TenantId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        uuid_schema()
    }
}

impl utoipa::ToSchema for TenantId {}

impl utoipa::PartialSchema for OrgId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        uuid_schema()
    }
}

impl utoipa::ToSchema for OrgId {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn region_ids() {
        for ok in ["us", "eu", "apac", "eu-de", "sa1"] {
            assert_eq!(RegionId::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "EU", "1eu", "eu_de", "eu de", &"a".repeat(33)] {
            assert_eq!(RegionId::new(bad), Err(IdError::Region), "{bad:?}");
        }
    }

    #[test]
    fn region_ids_pad_in_tables() {
        assert_eq!(format!("[{:<6}]", RegionId::new("eu").unwrap()), "[eu    ]");
    }

    #[test]
    fn tenant_ids() {
        let id = Uuid::new_v4();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap().as_uuid(), id);
        assert_eq!("not-a-uuid".parse::<TenantId>(), Err(IdError::Tenant));
    }

    #[test]
    fn org_ids_are_uuids_on_the_wire() {
        let id = Uuid::new_v4();
        let org: OrgId = serde_json::from_value(serde_json::json!(id.to_string())).unwrap();
        assert_eq!(org.as_uuid(), id);
        assert_eq!(
            serde_json::to_value(org).unwrap(),
            serde_json::json!(id.to_string())
        );
        assert_eq!("not-a-uuid".parse::<OrgId>(), Err(IdError::Org));
        assert!(serde_json::from_value::<OrgId>(serde_json::json!("x")).is_err());
    }

    proptest! {
        #[test]
        fn region_id_parser_never_panics_and_roundtrips(s in "\\PC{0,40}") {
            if let Ok(id) = RegionId::new(&s) {
                prop_assert_eq!(id.as_str(), s.as_str());
                prop_assert!(id.as_str().len() <= 32);
            }
        }
    }
}
