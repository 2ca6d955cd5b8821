//! Directory phase: tenant → home region, tier and status; API keys by prefix.
//!
//! Built here: the file-backed directory ([`residency_config::gateway::DirectoryFile`]), loaded
//! once at start into an immutable in-memory snapshot, so a lookup is one hash-map probe with
//! no lock and no I/O. Not built yet: the Postgres directory with `LISTEN/NOTIFY` invalidation,
//! serve-stale and reload; the config refuses `source = "postgres"` until it is.
//!
//! Refusals do not reveal more than needed: an unknown or deleted tenant is a plain 404 that
//! says nothing about other regions.

use std::collections::HashMap;
use std::path::Path;

use http::StatusCode;
use residency_config::gateway::{DirectoryFile, TenantStatus, Tier};
use residency_config::{ConfigError, Problem, RegionId, TenantId};

/// What the gateway knows about one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The home region: the only region its requests go to.
    pub region: RegionId,
    /// Commercial tier.
    pub tier: Tier,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Per-minute quota (override or tier default).
    pub rate_limit_per_min: u32,
}

/// One API key, as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// Owning tenant.
    pub tenant: TenantId,
    /// SHA-256 of the whole key.
    pub hash: [u8; 32],
    /// Role granted.
    pub role: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Revoked keys are refused.
    pub revoked: bool,
}

/// Why a tenant cannot be served.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// Not in the directory (or deleted).
    #[error("unknown tenant")]
    UnknownTenant,
    /// Suspended by an admin.
    #[error("tenant suspended")]
    Suspended,
    /// Being provisioned or moved.
    #[error("tenant not available")]
    Unavailable,
}

impl DirectoryError {
    /// The response status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownTenant => StatusCode::NOT_FOUND,
            Self::Suspended => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A bounded label.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownTenant => "unknown_tenant",
            Self::Suspended => "tenant_suspended",
            Self::Unavailable => "tenant_unavailable",
        }
    }

    /// The client-safe explanation.
    #[must_use]
    pub fn client_detail(&self) -> &'static str {
        match self {
            Self::UnknownTenant => "no such customer",
            Self::Suspended => "the customer account is suspended",
            Self::Unavailable => "the customer account is being provisioned or moved; retry later",
        }
    }

    /// `Retry-After` seconds, when retrying makes sense.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Unavailable).then_some(5)
    }
}

/// An immutable directory snapshot.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: HashMap<TenantId, TenantRecord>,
    api_keys: HashMap<String, ApiKeyRecord>,
}

impl Directory {
    /// Loads a directory file; every tenant's region must be one of `regions`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and each bad entry.
    pub fn load(path: &Path, regions: &[RegionId]) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![Problem::new("", format!("cannot read file: {e}"))]))?;
        let file: DirectoryFile =
            residency_config::load::from_str(&text, &Vec::new()).map_err(|p| fail(vec![p]))?;
        Self::from_file(file, regions).map_err(fail)
    }

    /// Builds a snapshot from parsed entries.
    ///
    /// # Errors
    /// Every problem found, each naming its entry.
    pub fn from_file(file: DirectoryFile, regions: &[RegionId]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut tenants = HashMap::with_capacity(file.tenants.len());
        for (i, t) in file.tenants.into_iter().enumerate() {
            if !regions.contains(&t.region) {
                problems.push(Problem::new(
                    format!("tenants[{i}].region"),
                    format!("region {} is not configured in the gateway", t.region),
                ));
            }
            let record = TenantRecord {
                region: t.region,
                tier: t.tier,
                status: t.status,
                rate_limit_per_min: t
                    .rate_limit_per_min
                    .unwrap_or_else(|| t.tier.default_rate_per_min()),
            };
            if tenants.insert(t.id, record).is_some() {
                problems.push(Problem::new(
                    format!("tenants[{i}].id"),
                    format!("tenant {} is listed twice", t.id),
                ));
            }
        }
        let mut api_keys = HashMap::with_capacity(file.api_keys.len());
        for (i, k) in file.api_keys.into_iter().enumerate() {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&k.hash, &mut hash).is_err() {
                problems.push(Problem::new(
                    format!("api_keys[{i}].hash"),
                    "must be 64 hex characters (sha-256)",
                ));
            }
            match tenants.get(&k.tenant) {
                None => problems.push(Problem::new(
                    format!("api_keys[{i}].tenant"),
                    format!("tenant {} is not in the directory", k.tenant),
                )),
                Some(t) if !t.tier.allows_api_keys() => problems.push(Problem::new(
                    format!("api_keys[{i}].tenant"),
                    format!("tier {} does not allow api keys", t.tier.as_str()),
                )),
                Some(_) => {}
            }
            let record = ApiKeyRecord {
                id: k.id,
                tenant: k.tenant,
                hash,
                role: k.role,
                expires_at: k.expires_at,
                revoked: k.revoked,
            };
            if api_keys.insert(k.prefix.clone(), record).is_some() {
                problems.push(Problem::new(
                    format!("api_keys[{i}].prefix"),
                    format!("prefix {} is listed twice", k.prefix),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self { tenants, api_keys })
        } else {
            Err(problems)
        }
    }

    /// The record of a tenant that may be served now.
    ///
    /// # Errors
    /// [`DirectoryError`] when the tenant is unknown, deleted, suspended or in transition.
    pub fn resolve(&self, tenant: TenantId) -> Result<&TenantRecord, DirectoryError> {
        let record = self
            .tenants
            .get(&tenant)
            .ok_or(DirectoryError::UnknownTenant)?;
        match record.status {
            TenantStatus::Active => Ok(record),
            TenantStatus::Suspended => Err(DirectoryError::Suspended),
            TenantStatus::Provisioning | TenantStatus::Moving => Err(DirectoryError::Unavailable),
            TenantStatus::Deleted => Err(DirectoryError::UnknownTenant),
        }
    }

    /// The API key with public `prefix`.
    #[must_use]
    pub fn api_key(&self, prefix: &str) -> Option<&ApiKeyRecord> {
        self.api_keys.get(prefix)
    }

    /// Number of tenants.
    #[must_use]
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{api_key, AuthError};
    use residency_config::gateway::{ApiKeyEntry, TenantEntry};

    const T1: &str = "0190a5c4-0000-7000-8000-000000000001";
    const T2: &str = "0190a5c4-0000-7000-8000-000000000002";

    fn tenant(id: &str, region: &str, tier: Tier, status: TenantStatus) -> TenantEntry {
        TenantEntry {
            id: id.parse().unwrap(),
            name: String::new(),
            region: RegionId::new(region).unwrap(),
            tier,
            status,
            rate_limit_per_min: None,
        }
    }

    fn regions() -> Vec<RegionId> {
        vec![RegionId::new("eu").unwrap(), RegionId::new("us").unwrap()]
    }

    #[test]
    fn statuses_map_to_refusals() {
        let mut file = DirectoryFile::default();
        for (i, status) in [
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Provisioning,
            TenantStatus::Moving,
            TenantStatus::Deleted,
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("0190a5c4-0000-7000-8000-00000000001{i}");
            file.tenants.push(tenant(&id, "eu", Tier::Growth, status));
        }
        let d = Directory::from_file(file, &regions()).unwrap();
        let get = |i: u8| {
            d.resolve(
                format!("0190a5c4-0000-7000-8000-00000000001{i}")
                    .parse()
                    .unwrap(),
            )
        };
        assert_eq!(get(0).unwrap().rate_limit_per_min, 500);
        assert_eq!(get(1), Err(DirectoryError::Suspended));
        assert_eq!(get(2), Err(DirectoryError::Unavailable));
        assert_eq!(get(3), Err(DirectoryError::Unavailable));
        assert_eq!(get(4), Err(DirectoryError::UnknownTenant));
        assert_eq!(
            d.resolve(T2.parse().unwrap()),
            Err(DirectoryError::UnknownTenant)
        );
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let mut file = DirectoryFile::default();
        file.tenants
            .push(tenant(T1, "apac", Tier::Starter, TenantStatus::Active));
        file.tenants
            .push(tenant(T1, "eu", Tier::Starter, TenantStatus::Active));
        file.api_keys.push(ApiKeyEntry {
            id: "k".into(),
            tenant: T1.parse().unwrap(),
            prefix: "abcdefgh".into(),
            hash: "xyz".into(),
            role: String::new(),
            expires_at: None,
            revoked: false,
        });
        let keys: Vec<_> = Directory::from_file(file, &regions())
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "tenants[0].region",
                "tenants[1].id",
                "api_keys[0].hash",
                "api_keys[0].tenant"
            ]
        );
    }

    #[test]
    fn api_keys_verify_by_hash_and_refuse_revoked_or_expired() {
        let good = format!("rk_abcdefgh_{}", "s".repeat(40));
        let revoked = format!("rk_revoked1_{}", "r".repeat(40));
        let expired = format!("rk_expired1_{}", "e".repeat(40));
        let entry = |id: &str, key: &str, prefix: &str| ApiKeyEntry {
            id: id.into(),
            tenant: T1.parse().unwrap(),
            prefix: prefix.into(),
            hash: api_key::hash_hex(key),
            role: "developer".into(),
            expires_at: None,
            revoked: false,
        };
        let mut file = DirectoryFile::default();
        file.tenants
            .push(tenant(T1, "eu", Tier::Scale, TenantStatus::Active));
        file.api_keys.push(entry("k1", &good, "abcdefgh"));
        file.api_keys.push(ApiKeyEntry {
            revoked: true,
            ..entry("k2", &revoked, "revoked1")
        });
        file.api_keys.push(ApiKeyEntry {
            expires_at: Some(100),
            ..entry("k3", &expired, "expired1")
        });
        let d = Directory::from_file(file, &regions()).unwrap();
        let ctx = api_key::verify(&good, &d, 1000).unwrap();
        assert_eq!(ctx.tenant, T1.parse().unwrap());
        assert_eq!(ctx.subject, "apikey:k1");
        assert_eq!(ctx.role, "developer");
        // Same prefix, different secret.
        let forged = format!("rk_abcdefgh_{}", "t".repeat(40));
        assert_eq!(
            api_key::verify(&forged, &d, 1000),
            Err(AuthError::InvalidApiKey)
        );
        assert_eq!(
            api_key::verify(&revoked, &d, 1000),
            Err(AuthError::ApiKeyRevoked)
        );
        assert_eq!(
            api_key::verify(&expired, &d, 1000),
            Err(AuthError::ApiKeyRevoked)
        );
        assert_eq!(
            api_key::verify("rk_nope", &d, 1000),
            Err(AuthError::InvalidApiKey)
        );
    }

    #[test]
    fn api_keys_need_a_tier_that_allows_them() {
        let mut file = DirectoryFile::default();
        file.tenants
            .push(tenant(T1, "eu", Tier::Starter, TenantStatus::Active));
        file.api_keys.push(ApiKeyEntry {
            id: "k".into(),
            tenant: T1.parse().unwrap(),
            prefix: "abcdefgh".into(),
            hash: "0".repeat(64),
            role: String::new(),
            expires_at: None,
            revoked: false,
        });
        let problems = Directory::from_file(file, &regions()).unwrap_err();
        assert_eq!(problems[0].key, "api_keys[0].tenant");
    }
}
