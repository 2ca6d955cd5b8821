//! The directory's domain types: tenants, tiers, statuses, API keys and the file-backed
//! directory format. The CLI writes them and the gateway reads them.

use serde::{Deserialize, Serialize};

use crate::{RegionId, TenantId};

/// The start of every API key: `rk_<prefix>_<secret>`.
pub(crate) const API_KEY_SCHEME: &str = "rk_";

/// The file-backed directory: `[[tenants]]`, `[[api_keys]]` and `[[domains]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// Every tenant and its home region.
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
    /// API keys, stored as hashes only.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Custom domains (`[[domains]]`), each always active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<crate::domain::DomainEntry>,
}

/// One tenant (customer) in the directory.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant id.
    pub id: TenantId,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Home region: the only region its requests go to.
    pub region: RegionId,
    /// Commercial tier.
    pub tier: Tier,
    /// Lifecycle status; only `active` tenants are served.
    pub status: TenantStatus,
    /// Per-minute request quota overriding the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_min: Option<u32>,
}

/// The role an API key grants when it is created (or listed in a file directory) without one.
/// Keys always name a role: a node resolves a key's requests by it, since an API key's subject
/// is never a member.
pub const DEFAULT_API_KEY_ROLE: &str = "developer";

fn default_api_key_role() -> String {
    DEFAULT_API_KEY_ROLE.to_owned()
}

/// One API key in the directory: only its hash is stored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Key id, used as the subject of requests made with the key.
    pub id: String,
    /// The tenant the key belongs to.
    pub tenant: TenantId,
    /// The public part of the key (`rk_<prefix>_<secret>`), used to find the entry.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    /// Role granted to requests made with the key; [`DEFAULT_API_KEY_ROLE`] when absent.
    #[serde(default = "default_api_key_role")]
    pub role: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A revoked key is refused.
    #[serde(default)]
    pub revoked: bool,
}

/// Commercial tier of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// 100 requests per minute.
    Starter,
    /// 500 requests per minute.
    Growth,
    /// 1000 requests per minute; API keys allowed.
    Scale,
    /// Custom quota; API keys allowed.
    Enterprise,
}

impl Tier {
    /// Every tier, in price order: the values a command line or a form offers.
    pub const ALL: [Self; 4] = [Self::Starter, Self::Growth, Self::Scale, Self::Enterprise];

    /// The tier's default per-minute quota (enterprise defaults to the scale quota until a
    /// per-tenant override is set).
    #[must_use]
    pub const fn default_rate_per_min(self) -> u32 {
        match self {
            Self::Starter => 100,
            Self::Growth => 500,
            Self::Scale | Self::Enterprise => 1000,
        }
    }

    /// Whether tenants of this tier may use API keys.
    #[must_use]
    pub const fn allows_api_keys(self) -> bool {
        matches!(self, Self::Scale | Self::Enterprise)
    }

    /// The tier as written in config and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starter => "starter",
            Self::Growth => "growth",
            Self::Scale => "scale",
            Self::Enterprise => "enterprise",
        }
    }
}

/// Lifecycle status of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Being created on its home node; not served yet.
    Provisioning,
    /// Served.
    Active,
    /// Refused with 403.
    Suspended,
    /// Being moved to another region; not served meanwhile.
    Moving,
    /// Gone; treated as unknown.
    Deleted,
}

impl TenantStatus {
    /// Every status, in lifecycle order: the values a command line or a filter offers.
    pub const ALL: [Self; 5] = [
        Self::Provisioning,
        Self::Active,
        Self::Suspended,
        Self::Moving,
        Self::Deleted,
    ];

    /// The status as written in config and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Moving => "moving",
            Self::Deleted => "deleted",
        }
    }
}

/// Splits an API key `rk_<prefix>_<secret>` into its public prefix and its secret.
///
/// The prefix is 8-32 characters of `[a-z0-9]`; the secret is at least 32 characters of
/// `[A-Za-z0-9_-]`. Anything else is not an API key.
#[must_use]
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_SCHEME)?;
    let (prefix, secret) = rest.split_once('_')?;
    let prefix_ok = (8..=32).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let secret_ok = (32..=128).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (prefix_ok && secret_ok).then_some((prefix, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_file_roundtrips() {
        let text = r#"
    [[tenants]]
    id = "0190a5c4-0000-7000-8000-000000000001"
    name = "Acme"
    region = "eu"
    tier = "scale"
    status = "active"

    [[api_keys]]
    id = "key-1"
    tenant = "0190a5c4-0000-7000-8000-000000000001"
    prefix = "abcdefgh"
    hash = "00"
    role = "developer"
    "#;
        let d: DirectoryFile = toml::from_str(text).unwrap();
        assert_eq!(d.tenants[0].tier, Tier::Scale);
        assert_eq!(d.tenants[0].status, TenantStatus::Active);
        assert!(!d.api_keys[0].revoked);
        let again: DirectoryFile = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
        assert_eq!(again.tenants, d.tenants);
        assert_eq!(again.api_keys, d.api_keys);
        assert!(toml::from_str::<DirectoryFile>("[[tenants]]\nid = \"x\"\n").is_err());
    }

    /// `ALL` lists every variant (the match fails to compile when one is added) and
    /// `as_str` is the serde name, so a command line built from them offers exactly what the
    /// API accepts.
    #[test]
    fn all_lists_every_variant_by_its_wire_name() {
        for t in Tier::ALL {
            match t {
                Tier::Starter | Tier::Growth | Tier::Scale | Tier::Enterprise => {}
            }
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for s in TenantStatus::ALL {
            match s {
                TenantStatus::Provisioning
                | TenantStatus::Active
                | TenantStatus::Suspended
                | TenantStatus::Moving
                | TenantStatus::Deleted => {}
            }
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn api_key_format() {
        let secret = "A".repeat(32);
        let key = format!("rk_abcd1234_{secret}");
        assert_eq!(split_api_key(&key), Some(("abcd1234", secret.as_str())));
        // Secrets may contain '_' and '-'; the prefix ends at the first '_'.
        let key = format!("rk_abcd1234_{}_-x", "b".repeat(30));
        assert_eq!(split_api_key(&key).map(|p| p.0), Some("abcd1234"));
        for bad in [
            String::new(),
            format!("rk_short_{secret}"),
            format!("xx_abcd1234_{secret}"),
            "rk_abcd1234_tooshort".to_owned(),
            format!("rk_ABCD1234_{secret}"),
            format!("rk_abcd1234_{secret} "),
        ] {
            assert_eq!(split_api_key(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tiers() {
        assert_eq!(Tier::Starter.default_rate_per_min(), 100);
        assert_eq!(Tier::Growth.default_rate_per_min(), 500);
        assert!(!Tier::Growth.allows_api_keys());
        assert!(Tier::Enterprise.allows_api_keys());
    }
}
