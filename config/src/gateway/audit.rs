//! `[audit]` of the gateway config: what `GET /admin/v1/audit` needs beyond the regions the
//! gateway already knows, namely each region database's read-only **auditor** role and the
//! name of its application role (whose privileges the posture checks inspect).
//!
//! ```toml
//! [audit]
//! timeout = "60s"                   # one region's scan; default 60s, at most 1h
//! [audit.regions.eu]                # RESIDENCY__AUDIT__REGIONS__EU__DATABASE_URL overrides
//! database_url = "postgres://eu_auditor:…@db.eu.internal:5432/region_eu"
//! app_role = "eu_app"
//! ```
//!
//! Every configured region needs an entry (a partial audit could not say "clean"), and no
//! entry may name a region the gateway does not route to. The URL must be the auditor role:
//! a URL whose user is the app role is refused, so the admin process never holds
//! application credentials by mistake.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::RegionEntry;
use crate::node::is_simple_identifier;
use crate::secret::{ConnectionUrl, Secret};
use crate::Problem;
use residency_core::RegionId;

/// The default time one region's audit scan may take.
pub(crate) const DEFAULT_AUDIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `audit.timeout` accepted.
pub(crate) const MAX_AUDIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// `[audit]`: the region databases `GET /admin/v1/audit` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Per region id: its auditor connection and app role.
    pub regions: BTreeMap<RegionId, AuditRegion>,
    /// The longest one region's scan may take; past it the region is reported `failed`.
    #[serde(default = "default_audit_timeout", with = "crate::duration::serde_str")]
    pub timeout: Duration,
    /// Allow `sslmode=disable` to a region database that is not on a loopback host; without
    /// it such a config is refused at start.
    #[serde(default)]
    pub allow_insecure_transport: bool,
}

/// `[audit.regions.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRegion {
    /// The region database as its read-only auditor role (`SELECT (tenant_id)` and the
    /// catalog only). `Debug` masks the password.
    pub database_url: Secret<ConnectionUrl>,
    /// The region's application role, whose privileges the posture checks inspect.
    pub app_role: String,
}

fn default_audit_timeout() -> Duration {
    DEFAULT_AUDIT_TIMEOUT
}

impl AuditSection {
    /// Every problem of `[audit]`, given the configured regions.
    pub(super) fn validate(&self, regions: &[RegionEntry]) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.timeout.is_zero() || self.timeout > MAX_AUDIT_TIMEOUT {
            out.push(Problem::new(
                "audit.timeout",
                "must be greater than 0 and at most 1h",
            ));
        }
        for r in regions {
            if !self.regions.contains_key(&r.id) {
                out.push(Problem::new(
                    format!("audit.regions.{}", r.id),
                    "missing: every configured region needs its auditor database_url and app_role",
                ));
            }
        }
        for (id, entry) in &self.regions {
            let key = format!("audit.regions.{id}");
            if !regions.iter().any(|r| &r.id == id) {
                out.push(Problem::new(
                    key.clone(),
                    format!("region {id} is not configured in [[regions]]"),
                ));
            }
            if !is_simple_identifier(&entry.app_role) {
                out.push(Problem::new(
                    format!("{key}.app_role"),
                    "must match [a-z_][a-z0-9_]{0,62}",
                ));
            }
            crate::pg_url::check_transport(
                &format!("{key}.database_url"),
                &entry.database_url,
                self.allow_insecure_transport,
                "audit.allow_insecure_transport",
                &mut out,
            );
            match url::Url::parse(entry.database_url.expose()) {
                Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                    if u.username().is_empty() {
                        out.push(Problem::new(
                            format!("{key}.database_url"),
                            "must name the auditor role as its user",
                        ));
                    } else if u.username() == entry.app_role {
                        out.push(Problem::new(
                            format!("{key}.database_url"),
                            "names the app role; use the read-only auditor role",
                        ));
                    }
                }
                Ok(_) => out.push(Problem::new(
                    format!("{key}.database_url"),
                    "must be a postgres:// url",
                )),
                // The parser's message does not echo the input, so no password leaks.
                Err(e) => out.push(Problem::new(
                    format!("{key}.database_url"),
                    format!("not a url: {e}"),
                )),
            }
        }
        out
    }
}
