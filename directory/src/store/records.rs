//! The rows the directory store reads and writes: organizations, tenants, API keys, history,
//! and the inputs of the admin writes. Organizations, API keys and history rows are read
//! straight into the admin API's wire types; a tenant row converts into one.

use chrono::{DateTime, Utc};
use residency_core::wire::admin::{ApiKey, Limits, Organization, Tenant, TenantHistoryEntry};
use residency_core::{ApiKeyEntry, TenantEntry, TenantStatus, Tier};
use residency_core::{OrgId, RegionId, TenantId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

fn parse_enum<T: DeserializeOwned>(s: String) -> T {
    // The CHECK constraints restrict these columns to the enums' spellings.
    serde_json::from_value(Value::String(s)).expect("constrained column holds a valid value")
}

pub(super) fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => unreachable!("unit enums serialize to strings"),
    }
}

pub(super) fn organization(r: &Row) -> Organization {
    Organization {
        id: OrgId::from_uuid(r.get("id")),
        name: r.get("name"),
        domain: r.get("domain"),
        plan: r.get("plan"),
        owner_email: r.get("owner_email"),
        provisional: r.get("provisional"),
        created_at: r.get("created_at"),
    }
}

/// A tenant (customer) as stored; the admin API shows it as [`Tenant`] (`From`).
#[derive(Debug, Clone)]
pub struct TenantRecord {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub org_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// Home region.
    pub region: String,
    /// Tier.
    pub tier: Tier,
    /// Status.
    pub status: TenantStatus,
    /// Per-minute quota override.
    pub rate_limit_per_min: Option<u32>,
    /// Bumped on every update.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

pub(super) const TENANT_COLUMNS: &str =
    "id, org_id, name, region, tier, status, rate_limit_per_min, version, created_at, updated_at";

impl TenantRecord {
    pub(super) fn from_row(r: &Row) -> Self {
        Self {
            id: r.get("id"),
            org_id: r.get("org_id"),
            name: r.get("name"),
            region: r.get("region"),
            tier: parse_enum(r.get("tier")),
            status: parse_enum(r.get("status")),
            rate_limit_per_min: r
                .get::<_, Option<i32>>("rate_limit_per_min")
                .and_then(|n| u32::try_from(n).ok()),
            version: r.get("version"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }

    /// The routing view of this tenant, as the gateway's cache holds it.
    ///
    /// # Panics
    /// Never: the region column is constrained to valid region ids.
    #[must_use]
    pub fn entry(&self) -> TenantEntry {
        TenantEntry {
            id: TenantId::from_uuid(self.id),
            name: self.name.clone(),
            region: RegionId::new(&self.region).expect("constrained region id"),
            tier: self.tier,
            status: self.status,
            rate_limit_per_min: self.rate_limit_per_min,
        }
    }
}

impl From<&TenantRecord> for Tenant {
    fn from(t: &TenantRecord) -> Self {
        Self {
            id: TenantId::from_uuid(t.id),
            org_id: t.org_id.map(OrgId::from_uuid),
            name: t.name.clone(),
            region: t.region.clone(),
            tier: t.tier,
            status: t.status,
            rate_limit_per_min: t
                .rate_limit_per_min
                .unwrap_or_else(|| t.tier.default_rate_per_min()),
            limits: Limits {
                rate_limit_per_min: t.rate_limit_per_min,
            },
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// The columns [`api_key`] reads.
pub(super) const API_KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, role, created_at, expires_at, revoked_at";

/// An API key as listed (never the secret or its hash).
pub(super) fn api_key(r: &Row) -> ApiKey {
    ApiKey {
        id: r.get("id"),
        tenant_id: TenantId::from_uuid(r.get("tenant_id")),
        name: r.get("name"),
        prefix: r.get("prefix"),
        role: r.get("role"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
    }
}

pub(super) fn key_entry(r: &Row) -> ApiKeyEntry {
    ApiKeyEntry {
        id: r.get::<_, Uuid>("id").to_string(),
        tenant: TenantId::from_uuid(r.get("tenant_id")),
        prefix: r.get("prefix"),
        hash: r.get("hash"),
        role: r.get("role"),
        expires_at: r
            .get::<_, Option<DateTime<Utc>>>("expires_at")
            .map(|t| u64::try_from(t.timestamp()).unwrap_or(0)),
        revoked: r.get::<_, Option<DateTime<Utc>>>("revoked_at").is_some(),
    }
}

/// One history row.
pub(super) fn history_entry(r: &Row) -> TenantHistoryEntry {
    TenantHistoryEntry {
        id: r.get("id"),
        at: r.get("at"),
        actor: r.get("actor"),
        change: r.get("change"),
        region: r.get("region"),
        status: r.get("status"),
        tier: r.get("tier"),
        version: r.get("version"),
        detail: r.get("detail"),
    }
}

/// A tenant to create (status starts as `provisioning`).
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Organization, if any.
    pub org_id: Option<OrgId>,
    /// Name.
    pub name: String,
    /// Home region (the caller checks it is configured).
    pub region: RegionId,
    /// Tier.
    pub tier: Tier,
    /// Per-minute quota override.
    pub rate_limit_per_min: Option<u32>,
}

/// Fields an update may change (`None` = unchanged; `Some(None)` clears the override).
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// New name.
    pub name: Option<String>,
    /// New tier.
    pub tier: Option<Tier>,
    /// New status.
    pub status: Option<TenantStatus>,
    /// New quota override.
    pub rate_limit_per_min: Option<Option<u32>>,
}

/// Filters and keyset page for listing tenants.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// Only this region.
    pub region: Option<String>,
    /// Only this tier.
    pub tier: Option<Tier>,
    /// Only this status.
    pub status: Option<TenantStatus>,
    /// Only this organization.
    pub org_id: Option<OrgId>,
    /// Continue after this id.
    pub after: Option<Uuid>,
    /// Page size (rows returned at most).
    pub limit: i64,
}

/// The powers of the role a [`Store`] connects as ([`Store::role_powers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePowers {
    /// Superuser or `BYPASSRLS`.
    pub superuser: bool,
    /// Owns directory tables (the owner: may alter and drop them).
    pub owns_tables: bool,
    /// May insert or update tenants or API keys.
    pub writes: bool,
    /// May delete or truncate tenants or API keys.
    pub deletes: bool,
    /// The role's name.
    pub role: String,
}
