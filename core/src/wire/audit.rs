//! The audit report: what `residency audit --json` prints and `GET /admin/v1/audit` answers.
//! `residency_audit` builds it (and re-exports this module as `residency_audit::report`); the
//! gateway's admin API and the CLI carry it.
//!
//! These types are the versioned wire schema ([`SCHEMA_VERSION`]), documented field by field in
//! `docs/audit.md`. Adding an optional field is compatible; renaming, removing or changing the
//! meaning of one needs a new version. Rendering to text and HTML lives in
//! `residency_audit::render`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::RegionId;

/// The version of the report schema, the `version` field of every report.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole audit: every violation found and a summary per region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// Always [`SCHEMA_VERSION`].
    pub version: u32,
    /// True only when every region was audited and nothing was found.
    pub clean: bool,
    /// Every violation, placement first, ordered by region, kind, table, tenant.
    pub violations: Vec<Violation>,
    /// One summary per configured region, in input order.
    pub regions: Vec<RegionReport>,
}

/// How an audit ended, and the process exit code for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every region audited, no violation: exit 0.
    Clean,
    /// Every region audited, violations found: exit 1.
    Violations(usize),
    /// At least one region could not be audited: exit 2. Holds `(region, reason)`.
    Incomplete(Vec<(RegionId, String)>),
}

impl Outcome {
    /// 0 clean, 1 violations, 2 could not run.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Violations(_) => 1,
            Self::Incomplete(_) => 2,
        }
    }
}

impl Report {
    /// Builds a report; `clean` is derived, never passed in.
    #[must_use]
    pub fn new(violations: Vec<Violation>, regions: Vec<RegionReport>) -> Self {
        let clean =
            violations.is_empty() && regions.iter().all(|r| r.status == RegionStatus::Audited);
        Self {
            version: SCHEMA_VERSION,
            clean,
            violations,
            regions,
        }
    }

    /// The outcome: incomplete wins over violations, because a region that could not be read
    /// may hide more of them.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        let failed: Vec<(RegionId, String)> = self
            .regions
            .iter()
            .filter(|r| r.status != RegionStatus::Audited)
            .map(|r| {
                let why = r.error.clone().unwrap_or_else(|| r.status.to_string());
                (r.id.clone(), why)
            })
            .collect();
        if !failed.is_empty() {
            Outcome::Incomplete(failed)
        } else if self.violations.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Violations(self.violations.len())
        }
    }
}

/// What kind of problem a violation is. Serialized in `snake_case`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    // Placement.
    /// Rows of a tenant whose directory home is another region.
    MisplacedRows,
    /// Rows of a tenant the directory does not know.
    OrphanRows,
    /// An active or suspended directory tenant without its `tenants` row in its home region.
    MissingHomeRecord,
    /// An active or suspended directory tenant whose home region is not among the audited ones.
    HomeRegionNotAudited,
    // Row-Level Security on customer tables.
    /// A table with `tenant_id` has Row-Level Security disabled.
    RlsDisabled,
    /// A table with `tenant_id` has RLS enabled but not forced (its owner bypasses it).
    RlsNotForced,
    /// A table with `tenant_id` has no policy restricting rows on `app.tenant_id`.
    NoTenantPolicy,
    /// A permissive policy lets the app role see rows without checking `app.tenant_id`.
    PermissivePolicyBypass,
    // The application role.
    /// The configured app role does not exist in the region database.
    AppRoleMissing,
    /// The app role is a superuser.
    AppRoleSuperuser,
    /// The app role has `BYPASSRLS`.
    AppRoleBypassrls,
    /// The app role owns a relation.
    AppRoleOwnsTable,
    /// The app role is a member of a role that owns a relation (it can act as the owner).
    AppRoleMemberOfOwner,
    /// The app role holds `TRUNCATE` or `REFERENCES` on a table.
    AppRolePrivilege,
    /// The app role may create objects in a schema.
    AppRoleCanCreate,
    // Other objects.
    /// A view runs with its owner's rights (no `security_invoker`), bypassing RLS.
    ViewNotSecurityInvoker,
    /// A `SECURITY DEFINER` function without a pinned `search_path`.
    DefinerWithoutSearchPath,
    // The audit's own reach.
    /// The auditing role cannot read `tenant_id` of a customer table: its rows cannot be counted.
    UnauditableTable,
    /// RLS hides rows of a customer table from the auditing role: counts would be incomplete.
    AuditorBlind,
    /// The auditing role can read customer columns other than `tenant_id`.
    AuditorOverprivileged,
}

impl ViolationKind {
    /// Every kind, placement first, in report order.
    pub const ALL: [Self; 20] = [
        Self::MisplacedRows,
        Self::OrphanRows,
        Self::MissingHomeRecord,
        Self::HomeRegionNotAudited,
        Self::RlsDisabled,
        Self::RlsNotForced,
        Self::NoTenantPolicy,
        Self::PermissivePolicyBypass,
        Self::AppRoleMissing,
        Self::AppRoleSuperuser,
        Self::AppRoleBypassrls,
        Self::AppRoleOwnsTable,
        Self::AppRoleMemberOfOwner,
        Self::AppRolePrivilege,
        Self::AppRoleCanCreate,
        Self::ViewNotSecurityInvoker,
        Self::DefinerWithoutSearchPath,
        Self::UnauditableTable,
        Self::AuditorBlind,
        Self::AuditorOverprivileged,
    ];

    /// The `snake_case` name used in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MisplacedRows => "misplaced_rows",
            Self::OrphanRows => "orphan_rows",
            Self::MissingHomeRecord => "missing_home_record",
            Self::HomeRegionNotAudited => "home_region_not_audited",
            Self::RlsDisabled => "rls_disabled",
            Self::RlsNotForced => "rls_not_forced",
            Self::NoTenantPolicy => "no_tenant_policy",
            Self::PermissivePolicyBypass => "permissive_policy_bypass",
            Self::AppRoleMissing => "app_role_missing",
            Self::AppRoleSuperuser => "app_role_superuser",
            Self::AppRoleBypassrls => "app_role_bypassrls",
            Self::AppRoleOwnsTable => "app_role_owns_table",
            Self::AppRoleMemberOfOwner => "app_role_member_of_owner",
            Self::AppRolePrivilege => "app_role_privilege",
            Self::AppRoleCanCreate => "app_role_can_create",
            Self::ViewNotSecurityInvoker => "view_not_security_invoker",
            Self::DefinerWithoutSearchPath => "definer_without_search_path",
            Self::UnauditableTable => "unauditable_table",
            Self::AuditorBlind => "auditor_blind",
            Self::AuditorOverprivileged => "auditor_overprivileged",
        }
    }

    /// Whether the kind is about where rows are (as opposed to isolation posture).
    #[must_use]
    pub fn is_placement(self) -> bool {
        matches!(
            self,
            Self::MisplacedRows
                | Self::OrphanRows
                | Self::MissingHomeRecord
                | Self::HomeRegionNotAudited
        )
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    /// What is wrong.
    pub kind: ViolationKind,
    /// The region database where it was found.
    #[schema(value_type = String)]
    pub region: RegionId,
    /// The tenant concerned (placement violations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The table, view or function concerned (`schema.name` outside `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The database role concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A sentence for people.
    pub detail: String,
}

/// Whether a region could be audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegionStatus {
    /// Scanned completely.
    Audited,
    /// The database could not be reached or refused the auditor's login.
    Unreachable,
    /// Connected, but a query failed or the scan timed out.
    Failed,
}

impl fmt::Display for RegionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audited => "audited",
            Self::Unreachable => "unreachable",
            Self::Failed => "failed",
        })
    }
}

/// Where a region database is, as the audit saw it. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseInfo {
    /// Host name, address or socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// The role the audit connected as.
    pub role: String,
    /// `server_version` reported by Postgres (absent when unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
}

/// Routing evidence from the gateway, when it was reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoutingEvidence {
    /// Requests the gateway answered for this region since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_total: Option<u64>,
    /// Requests the region's nodes refused because they were addressed to another region
    /// (421), since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misroutes_refused: Option<u64>,
    /// How many of the region's upstreams answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams_reachable: Option<usize>,
    /// Where the figures come from, and what could not be read.
    #[serde(default)]
    pub source: String,
}

/// The audit of one region database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegionReport {
    /// Region id.
    #[schema(value_type = String)]
    pub id: RegionId,
    /// Human name.
    pub display_name: String,
    /// Where the data physically lives.
    pub location: String,
    /// The region's node URLs (the only places the gateway routes its tenants to).
    pub upstreams: Vec<String>,
    /// The database audited.
    pub database: DatabaseInfo,
    /// The application role whose privileges were checked.
    pub app_role: String,
    /// Whether the region was audited.
    pub status: RegionStatus,
    /// Why not, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Customer tables (with a `tenant_id` column) found and counted.
    pub tables_scanned: usize,
    /// Rows over every customer table.
    pub rows_total: u64,
    /// Per table: rows and distinct tenants.
    pub tables: Vec<TableSummary>,
    /// Per tenant found in this database: rows per table.
    pub tenants: Vec<TenantPlacement>,
    /// Posture checks and their results.
    pub posture: PostureSummary,
    /// Gateway routing figures for the region, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingEvidence>,
    /// Time the scan took, in milliseconds.
    pub duration_ms: u64,
}

/// One customer table of a region database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableSummary {
    /// Table name (`schema.name` outside `public`).
    pub table: String,
    /// Rows counted (0 when not counted).
    pub rows: u64,
    /// Distinct tenants with rows.
    pub tenants: usize,
    /// Whether the auditing role could count it completely.
    pub counted: bool,
    /// RLS enabled.
    pub rls_enabled: bool,
    /// RLS forced (applies to the owner too).
    pub rls_forced: bool,
}

/// Rows of one tenant in one region database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPlacement {
    /// The tenant id as stored (normally a UUID).
    pub tenant_id: String,
    /// Name from the directory, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Home region from the directory; absent for tenants unknown to the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub home_region: Option<RegionId>,
    /// Directory status, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Whether this region is the tenant's home.
    pub at_home: bool,
    /// Rows over all tables.
    pub rows: u64,
    /// Rows per table (tables without rows are left out).
    pub tables: BTreeMap<String, u64>,
}

/// The posture checks of one region database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostureSummary {
    /// Checks without failures.
    pub passed: usize,
    /// Checks with at least one failure.
    pub failed: usize,
    /// Every check run.
    pub checks: Vec<PostureCheck>,
}

/// One posture check over a set of objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostureCheck {
    /// Stable name, e.g. `rls_forced`.
    pub name: String,
    /// What it checks, for people.
    pub description: String,
    /// Objects checked (tables, views, functions, roles).
    pub checked: usize,
    /// Objects failing it; each has a violation.
    pub failures: usize,
}

impl PostureSummary {
    /// Records a check's result.
    pub fn record(&mut self, name: &str, description: &str, checked: usize, failures: usize) {
        if failures == 0 {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.checks.push(PostureCheck {
            name: name.to_owned(),
            description: description.to_owned(),
            checked,
            failures,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(status: RegionStatus) -> RegionReport {
        RegionReport {
            id: RegionId::new("eu").expect("valid id"),
            display_name: String::new(),
            location: String::new(),
            upstreams: vec![],
            database: DatabaseInfo {
                host: "h".into(),
                port: 5432,
                name: "d".into(),
                role: "r".into(),
                server_version: None,
            },
            app_role: "a".into(),
            status,
            error: (status != RegionStatus::Audited).then(|| "connection refused".into()),
            tables_scanned: 0,
            rows_total: 0,
            tables: vec![],
            tenants: vec![],
            posture: PostureSummary::default(),
            routing: None,
            duration_ms: 0,
        }
    }

    fn violation() -> Violation {
        Violation {
            kind: ViolationKind::OrphanRows,
            region: RegionId::new("eu").expect("valid id"),
            tenant_id: Some("t".into()),
            table: None,
            role: None,
            detail: "d".into(),
        }
    }

    #[test]
    fn outcome_and_exit_codes() {
        let clean = Report::new(vec![], vec![region(RegionStatus::Audited)]);
        assert!(clean.clean);
        assert_eq!(clean.outcome().exit_code(), 0);
        let dirty = Report::new(vec![violation()], vec![region(RegionStatus::Audited)]);
        assert!(!dirty.clean);
        assert_eq!(dirty.outcome().exit_code(), 1);
        let partial = Report::new(vec![violation()], vec![region(RegionStatus::Unreachable)]);
        assert!(!partial.clean);
        assert_eq!(
            partial.outcome(),
            Outcome::Incomplete(vec![(
                RegionId::new("eu").expect("valid id"),
                "connection refused".into()
            )])
        );
        assert_eq!(partial.outcome().exit_code(), 2);
    }

    #[test]
    fn json_uses_snake_case_and_omits_absent_fields() {
        let v = serde_json::to_value(violation()).expect("serializable");
        assert_eq!(
            v,
            serde_json::json!({"kind": "orphan_rows", "region": "eu", "tenant_id": "t", "detail": "d"})
        );
        for k in ViolationKind::ALL {
            assert_eq!(serde_json::to_value(k).expect("serializable"), k.as_str());
        }
        let mut sorted = ViolationKind::ALL;
        sorted.sort();
        assert_eq!(
            sorted,
            ViolationKind::ALL,
            "ALL lists every kind in declaration order"
        );
    }
}
