//! `[claims]`: which JWT claims carry the subject, tenant and role.

use serde::Deserialize;

use crate::Problem;

/// `[claims]`: which JWT claims carry the subject, tenant and role.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The subject claim (default `sub`).
    pub subject: String,
    /// The tenant claim (default `tenant_id`); its value must be a UUID.
    pub tenant: String,
    /// The role claim (default `role`); optional in tokens.
    pub role: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".to_owned(),
            tenant: "tenant_id".to_owned(),
            role: "role".to_owned(),
        }
    }
}

impl ClaimNames {
    /// Every problem of `[claims]`.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (key, v) in [
            ("claims.subject", &self.subject),
            ("claims.tenant", &self.tenant),
            ("claims.role", &self.role),
        ] {
            if v.is_empty() {
                out.push(Problem::new(key, "must not be empty"));
            }
        }
        if self.tenant == self.subject || self.tenant == self.role {
            out.push(Problem::new(
                "claims.tenant",
                "must differ from claims.subject and claims.role",
            ));
        }
        out
    }
}
