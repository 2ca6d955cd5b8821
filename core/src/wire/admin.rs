//! The gateway's admin API (`/admin/v1/…` on the admin listener): request bodies as the
//! gateway parses them and the CLI sends them, responses as the gateway builds them and the
//! CLI reads them.
//!
//! Request bodies refuse unknown fields; a PATCH tells an absent field from an explicit
//! `null` ([`super::nullable`]). Value rules (lengths, configured regions, quota bounds) are
//! the gateway's; the types carry the shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::provision::Owner;
use crate::{OrgId, TenantId, TenantStatus, Tier};

/// A keyset-paginated list: `next_cursor` is `null` on the last page, else the value of the
/// next request's `cursor` parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// The cursor of the next page, or `null`.
    pub next_cursor: Option<String>,
}

/// A complete (unpaginated) list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    /// Every item.
    pub items: Vec<T>,
}

// ---------------------------------------------------------------------------------------
// Organizations

/// `POST /admin/v1/organizations` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// 1-200 characters.
    pub name: String,
    /// A unique lowercase DNS name.
    pub domain: String,
    /// 1-32 characters of `[a-z0-9_-]` starting with a letter; `free` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// An organization (a SaaS partner owning tenants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    /// Id.
    pub id: OrgId,
    /// Name.
    pub name: String,
    /// Unique domain.
    pub domain: String,
    /// Plan.
    pub plan: String,
    /// The applicant who owns it (organizations created by an approved signup), or `null`.
    #[serde(default)]
    pub owner_email: Option<String>,
    /// Created by a `provisional` signup: reduced limits until a platform admin reviews it.
    #[serde(default)]
    pub provisional: bool,
    /// Creation time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

/// The role of an organization admin token: `member` reads, `admin` also manages the
/// organization's customers, keys and domains, `owner` also manages its tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    /// Read-only.
    Member,
    /// Manages customers, keys and domains.
    Admin,
    /// Also manages the organization's tokens.
    Owner,
}

impl OrgRole {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Parses the wire spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// `POST /admin/v1/organizations/{id}/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgToken {
    /// 1-200 characters.
    pub name: String,
    /// The token's role in the organization.
    pub role: OrgRole,
}

/// An organization admin token as listed: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrgToken {
    /// Id.
    pub id: Uuid,
    /// The organization.
    pub org_id: OrgId,
    /// Human name.
    pub name: String,
    /// Role.
    pub role: OrgRole,
    /// Public prefix (`rog_<prefix>_…`).
    pub prefix: String,
    /// Who created it (`admin:<name>` or `org:<org id>:token:<token id>`).
    pub created_by: String,
    /// Creation time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Revocation time, or `null`.
    #[serde(serialize_with = "super::rfc3339::option")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The answer to a token's creation: the token and, this once, its plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedOrgToken {
    /// The token as listed.
    #[serde(flatten)]
    pub token: OrgToken,
    /// The whole token `rog_<prefix>_<secret>`: shown only here, stored nowhere.
    pub secret: String,
}

// ---------------------------------------------------------------------------------------
// Signups

/// `POST /v1/signups` body (public listener, no credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitSignup {
    /// The applicant's work email; its domain becomes the organization's domain.
    pub email: String,
    /// Company name, 1-200 characters.
    pub company: String,
    /// Company website (`https://…` or a bare host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// What the company does and what it wants to integrate, up to 4000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A signup's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignupStatus {
    /// An organization was created on the Free plan with the applicant as owner.
    Approved,
    /// An organization was created with reduced limits until a platform admin reviews it.
    Provisional,
    /// Queued for a platform admin.
    ManualReview,
    /// Refused, with the reasons.
    Rejected,
}

impl SignupStatus {
    /// The wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Provisional => "provisional",
            Self::ManualReview => "manual_review",
            Self::Rejected => "rejected",
        }
    }

    /// Parses the wire spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(Self::Approved),
            "provisional" => Some(Self::Provisional),
            "manual_review" => Some(Self::ManualReview),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// What the classifier found out about an applicant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// Industry (`healthcare`, `finance`, …, or `unknown`).
    pub industry: String,
    /// Technologies named by the applicant.
    pub tech_stack: Vec<String>,
    /// What the applicant needs to integrate (`sso`, `webhooks`, …).
    pub integration_needs: Vec<String>,
}

/// A signup as stored, with its outcome and reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Signup {
    /// Id.
    pub id: Uuid,
    /// The applicant's email.
    pub email: String,
    /// Its domain.
    pub domain: String,
    /// Company name.
    pub company: String,
    /// Website, or empty.
    pub website: String,
    /// Description, or empty.
    pub description: String,
    /// Outcome.
    pub status: SignupStatus,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
    /// The classifier's answer, when it gave a valid one.
    pub classification: Option<Classification>,
    /// Which classifier answered (`rules`, `llm`), or empty before classification.
    pub classifier: String,
    /// The organization it created, if any.
    pub org_id: Option<OrgId>,
    /// The reviewer's note.
    pub review_note: Option<String>,
    /// The reviewer.
    pub reviewed_by: Option<String>,
    /// Submission time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /admin/v1/signups/{id}/approve|reject` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewSignup {
    /// Why, 1-2000 characters; stored with the signup and its audit trail.
    pub note: String,
}

// ---------------------------------------------------------------------------------------
// Tenants

/// `limits` in a tenant create or update body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// Per-minute request quota overriding the tier's (1-1,000,000); absent leaves it as
    /// it is, `null` returns to the tier's default.
    #[serde(
        default,
        deserialize_with = "super::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_min: Option<Option<u32>>,
}

/// `POST /admin/v1/tenants` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1-200 characters.
    pub name: String,
    /// Home region: one of the gateway's configured regions.
    pub region: String,
    /// Commercial tier.
    pub tier: Tier,
    /// Owning organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    /// First owner member, created on the home node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Quota override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsPatch>,
}

/// The statuses an update may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettableStatus {
    /// Served.
    Active,
    /// Refused with 403.
    Suspended,
}

impl SettableStatus {
    /// Every status an update may set.
    pub const ALL: [Self; 2] = [Self::Active, Self::Suspended];

    /// The status as written in JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        TenantStatus::as_str(match self {
            Self::Active => TenantStatus::Active,
            Self::Suspended => TenantStatus::Suspended,
        })
    }
}

impl From<SettableStatus> for TenantStatus {
    fn from(s: SettableStatus) -> Self {
        match s {
            SettableStatus::Active => Self::Active,
            SettableStatus::Suspended => Self::Suspended,
        }
    }
}

/// `PATCH /admin/v1/tenants/{id}` body: at least one field. A `region` member is refused
/// with 409 (`tenant_move_required`): a region change is a tenant move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// `active` or `suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SettableStatus>,
    /// Quota override (`null` inside returns to the tier's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsPatch>,
}

/// `POST /admin/v1/tenants/{id}/provision` body (optional: an empty body is allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reprovision {
    /// First owner member, created on the home node if not there yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A tenant's quota override as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// The per-minute override, or `null` when the tier's default applies.
    pub rate_limit_per_min: Option<u32>,
}

/// The admin view of a tenant (customer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Owning organization.
    pub org_id: Option<OrgId>,
    /// Name.
    pub name: String,
    /// Home region: the only region its requests go to.
    pub region: String,
    /// Commercial tier.
    pub tier: Tier,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// The effective per-minute quota (the override, else the tier's).
    pub rate_limit_per_min: u32,
    /// The stored override.
    pub limits: Limits,
    /// Bumped on every update.
    pub version: i64,
    /// Creation time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last update.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// One change of a tenant, as recorded in the directory's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantHistoryEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// Who: `admin:<token name>`, a CLI user, `system:*`.
    pub actor: String,
    /// `created` or `updated`.
    pub change: String,
    /// Region after the change.
    pub region: String,
    /// Status after the change.
    pub status: String,
    /// Tier after the change.
    pub tier: String,
    /// Version after the change.
    pub version: i64,
    /// Changed fields: `{ field: { from, to } }`.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

// ---------------------------------------------------------------------------------------
// API keys

/// `POST /admin/v1/tenants/{id}/api-keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1-200 characters.
    pub name: String,
    /// Role granted to requests made with the key (a system or custom role of the tenant);
    /// absent means [`crate::DEFAULT_API_KEY_ROLE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry (RFC 3339), in the future.
    #[serde(
        default,
        serialize_with = "super::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as listed: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// Id (the subject of requests made with the key).
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Human name.
    pub name: String,
    /// Public prefix (`rk_<prefix>_…`).
    pub prefix: String,
    /// Role granted to requests made with the key.
    pub role: String,
    /// Creation time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Expiry, or `null`.
    #[serde(serialize_with = "super::rfc3339::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, or `null`.
    #[serde(serialize_with = "super::rfc3339::option")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The answer to an API key's creation: the key and, this once, its plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key as listed.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The whole key `rk_<prefix>_<secret>`: shown only here, stored nowhere.
    pub api_key: String,
}

// ---------------------------------------------------------------------------------------
// Custom domains

/// `POST /admin/v1/tenants/{id}/domains` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    /// The customer's hostname: a DNS name of at least two labels, no wildcard, no IP
    /// address, no trailing dot (lowercased); unique across all customers.
    pub hostname: String,
    /// The certificate's directory under the gateway's `tls.domains_dir` (holding `tls.crt`
    /// and `tls.key`, e.g. a mounted cert-manager Secret); the hostname when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ref: Option<String>,
}

/// A customer's custom domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Domain {
    /// The hostname (lowercase).
    pub hostname: String,
    /// The customer whose hostname it is.
    pub tenant_id: TenantId,
    /// The certificate's directory under `tls.domains_dir`.
    pub cert_ref: String,
    /// `pending` (no certificate yet), `active` (served), `failed` (see `reason`), `removed`.
    pub state: crate::domain::DomainState,
    /// Why the last verification did not make it active (empty when active).
    pub reason: String,
    /// When a verification last found the certificate good, or `null`.
    #[serde(serialize_with = "super::rfc3339::option")]
    pub verified_at: Option<DateTime<Utc>>,
    /// Bumped on every change.
    pub version: i64,
    /// Registration time.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Regions and readiness

/// `GET /admin/v1/regions` item: a configured region and its upstreams' health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Region {
    /// Region id.
    pub id: String,
    /// Human name.
    pub display_name: String,
    /// Where the data lives.
    pub location: String,
    /// Upstreams picked for requests right now.
    pub available_upstreams: usize,
    /// Every upstream.
    pub upstreams: Vec<Upstream>,
}

/// One upstream (region node) of a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Upstream {
    /// Base URL.
    pub url: String,
    /// Picked for requests right now.
    pub available: bool,
    /// Passing its active checks.
    pub healthy: bool,
    /// Milliseconds left of a passive ejection.
    pub ejected_for_ms: u64,
    /// Times taken out of rotation since start.
    pub ejections: u64,
    /// The last active check, if one ran.
    pub last_check: Option<HealthCheck>,
}

/// An active `/readyz` check of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    /// When (RFC 3339).
    pub at: Option<String>,
    /// Whether it answered 2xx in time.
    pub ok: bool,
    /// `200`, `503`, `timeout`, `connect error`...
    pub detail: String,
}

/// `GET /readyz` on the admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Configuration loaded and the directory can answer.
    pub ready: bool,
    /// Always `loaded` when the gateway answers.
    pub config: String,
    /// The directory cache.
    pub directory: DirectoryHealth,
}

/// The directory cache's state in [`Readiness`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryHealth {
    /// `file` or `postgres`.
    pub source: String,
    /// Loaded at least once.
    pub loaded: bool,
    /// Not stale.
    pub fresh: bool,
    /// Seconds since the last successful read when stale.
    pub stale_seconds: Option<f64>,
    /// Answering requests (not past `max_stale`).
    pub serving: bool,
    /// Tenants in the cache.
    pub tenants_cached: usize,
    /// API keys in the cache.
    pub api_keys_cached: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_tell_absent_from_null_and_refuse_unknown_fields() {
        let p = |v| serde_json::from_value::<UpdateTenant>(v).unwrap();
        assert_eq!(p(json!({"name": "x"})).limits, None);
        let cleared = p(json!({"limits": {"rate_limit_per_min": null}}));
        assert_eq!(cleared.limits.unwrap().rate_limit_per_min, Some(None));
        assert_eq!(
            serde_json::to_value(&cleared).unwrap(),
            json!({"limits": {"rate_limit_per_min": null}})
        );
        assert!(serde_json::from_value::<UpdateTenant>(json!({"region": "eu"})).is_err());
        assert!(serde_json::from_value::<UpdateTenant>(json!({"status": "moving"})).is_err());
    }

    #[test]
    fn timestamps_keep_the_rfc3339_offset_form() {
        let t: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let key = CreatedApiKey {
            key: ApiKey {
                id: Uuid::nil(),
                tenant_id: TenantId::from_uuid(Uuid::nil()),
                name: "k".into(),
                prefix: "abcdefgh".into(),
                role: "developer".into(),
                created_at: t,
                expires_at: None,
                revoked_at: Some(t),
            },
            api_key: "rk_x".into(),
        };
        let v = serde_json::to_value(&key).unwrap();
        assert_eq!(v["created_at"], "2026-01-02T03:04:05.123456+00:00");
        assert_eq!(v["expires_at"], serde_json::Value::Null);
        assert_eq!(v["api_key"], "rk_x");
        assert_eq!(serde_json::from_value::<CreatedApiKey>(v).unwrap(), key);
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn domains_keep_their_field_names_and_refuse_unknown_fields() {
        let t: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let d = Domain {
            hostname: "api.acme.example".into(),
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            cert_ref: "acme-tls".into(),
            state: crate::domain::DomainState::Active,
            reason: String::new(),
            verified_at: Some(t),
            version: 1,
            created_at: t,
            updated_at: t,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            keys(&v),
            [
                "cert_ref",
                "created_at",
                "hostname",
                "reason",
                "state",
                "tenant_id",
                "updated_at",
                "verified_at",
                "version"
            ]
        );
        assert_eq!(v["state"], "active");
        assert_eq!(v["verified_at"], "2026-01-02T03:04:05+00:00");
        assert!(serde_json::from_str::<AddDomain>(r#"{"hostname":"a.b","tenant":"x"}"#).is_err());
        let add: AddDomain = serde_json::from_str(r#"{"hostname":"a.b"}"#).unwrap();
        assert_eq!(add.cert_ref, None);
    }

    #[test]
    fn responses_keep_the_admin_api_field_names() {
        let t: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let tenant = Tenant {
            id: TenantId::from_uuid(Uuid::nil()),
            org_id: None,
            name: "acme".into(),
            region: "eu".into(),
            tier: Tier::Scale,
            status: TenantStatus::Active,
            rate_limit_per_min: 1000,
            limits: Limits {
                rate_limit_per_min: None,
            },
            version: 1,
            created_at: t,
            updated_at: t,
        };
        let v = serde_json::to_value(&tenant).unwrap();
        assert_eq!(
            keys(&v),
            [
                "created_at",
                "id",
                "limits",
                "name",
                "org_id",
                "rate_limit_per_min",
                "region",
                "status",
                "tier",
                "updated_at",
                "version"
            ]
        );
        assert_eq!(v["limits"], json!({"rate_limit_per_min": null}));
        assert_eq!(v["tier"], "scale");
        assert_eq!(v["updated_at"], "2026-01-02T03:04:05+00:00");
        let org = Organization {
            id: OrgId::from_uuid(Uuid::nil()),
            name: "p".into(),
            domain: "p.example".into(),
            plan: "free".into(),
            owner_email: None,
            provisional: false,
            created_at: t,
        };
        assert_eq!(
            keys(&serde_json::to_value(&org).unwrap()),
            [
                "created_at",
                "domain",
                "id",
                "name",
                "owner_email",
                "plan",
                "provisional"
            ]
        );
        let page = Page {
            items: vec![org],
            next_cursor: None,
        };
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(keys(&v), ["items", "next_cursor"]);
        assert!(v["next_cursor"].is_null());
    }
}
