//! Custom domains in the directory: registration, verification state, removal (a state, not a
//! `DELETE`), and the reads behind the gateway's domain table and the admin API. The rows are
//! read straight into the admin API's [`Domain`]; the history trigger records every change on
//! the tenant's history.

use residency_core::domain::DomainState;
use residency_core::wire::admin::Domain;
use residency_core::TenantId;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

const COLUMNS: &str =
    "hostname, tenant_id, cert_ref, state, reason, verified_at, version, created_at, updated_at";

/// The outcome of checking a domain's certificate: the state to store and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainVerdict {
    /// `pending`, `active` or `failed`.
    pub state: DomainState,
    /// Empty when active; else what is missing or wrong.
    pub reason: String,
}

fn domain(r: &Row) -> Domain {
    let state: String = r.get("state");
    Domain {
        hostname: r.get("hostname"),
        tenant_id: TenantId::from_uuid(r.get("tenant_id")),
        cert_ref: r.get("cert_ref"),
        // The CHECK constraint restricts the column to the enum's spellings.
        state: serde_json::from_value(Value::String(state))
            .expect("constrained column holds a valid state"),
        reason: r.get("reason"),
        verified_at: r.get("verified_at"),
        version: r.get("version"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// At most this many characters of a reason are stored (the column's limit).
fn clip(reason: &str) -> String {
    reason.chars().take(500).collect()
}

impl Store {
    /// Every domain that is not removed (for a gateway's full load).
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn domains(&self) -> Result<Vec<Domain>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM domains WHERE state <> 'removed' ORDER BY hostname"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(domain).collect())
    }

    /// One domain by hostname, whatever its state.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn domain(&self, hostname: &str) -> Result<Option<Domain>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM domains WHERE hostname = $1"),
                &[&hostname],
            )
            .await?;
        Ok(row.as_ref().map(domain))
    }

    /// A tenant's domains that are not removed, by hostname.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_domains(&self, tenant: Uuid) -> Result<Vec<Domain>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM domains WHERE tenant_id = $1 AND state <> 'removed' \
                     ORDER BY hostname"
                ),
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(domain).collect())
    }

    /// Registers `hostname` for `tenant` in the state `verdict` gives it. A removed hostname
    /// is registered again (by any tenant); a live one is a conflict, whoever holds it.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the hostname is registered (to this or another tenant:
    /// the message does not say which); [`StoreError::NotFound`] for an unknown tenant;
    /// [`StoreError::Invalid`] for a hostname or `cert_ref` the schema refuses.
    pub async fn add_domain(
        &self,
        actor: &str,
        tenant: Uuid,
        hostname: &str,
        cert_ref: &str,
        verdict: &DomainVerdict,
    ) -> Result<Domain, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "INSERT INTO domains AS d (hostname, tenant_id, cert_ref, state, reason, verified_at) \
                     SELECT $1, id, $3, $4, $5, CASE WHEN $4 = 'active' THEN now() END \
                       FROM tenants WHERE id = $2 AND status <> 'deleted' \
                     ON CONFLICT (hostname) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, \
                        cert_ref = EXCLUDED.cert_ref, state = EXCLUDED.state, \
                        reason = EXCLUDED.reason, verified_at = EXCLUDED.verified_at, \
                        created_at = now() \
                     WHERE d.state = 'removed' \
                     RETURNING {COLUMNS}"
                ),
                &[
                    &hostname,
                    &tenant,
                    &cert_ref,
                    &verdict.state.as_str(),
                    &clip(&verdict.reason),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Invalid { .. } => StoreError::Invalid {
                    field: "hostname",
                    detail: "the directory refused the hostname or cert_ref".into(),
                },
                other => other,
            })?;
        if let Some(row) = rows.first() {
            return Ok(domain(row));
        }
        // Nothing inserted: either the tenant does not exist or the hostname is live.
        match self.tenant(tenant).await? {
            Some(t) if t.status != residency_core::TenantStatus::Deleted => Err(
                StoreError::Conflict("this hostname is already registered".into()),
            ),
            _ => Err(StoreError::NotFound),
        }
    }

    /// Stores the outcome of a verification of `tenant`'s live domain `hostname`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant has no such live domain.
    pub async fn set_domain_state(
        &self,
        actor: &str,
        tenant: Uuid,
        hostname: &str,
        verdict: &DomainVerdict,
    ) -> Result<Domain, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "UPDATE domains SET state = $3, reason = $4, \
                       verified_at = CASE WHEN $3 = 'active' THEN now() ELSE verified_at END \
                     WHERE tenant_id = $1 AND hostname = $2 AND state <> 'removed' \
                     RETURNING {COLUMNS}"
                ),
                &[
                    &tenant,
                    &hostname,
                    &verdict.state.as_str(),
                    &clip(&verdict.reason),
                ],
            )
            .await?;
        rows.first().map(domain).ok_or(StoreError::NotFound)
    }

    /// Removes `tenant`'s domain `hostname` (its state becomes `removed`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant has no such live domain.
    pub async fn remove_domain(
        &self,
        actor: &str,
        tenant: Uuid,
        hostname: &str,
    ) -> Result<Domain, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "UPDATE domains SET state = 'removed', reason = '' \
                     WHERE tenant_id = $1 AND hostname = $2 AND state <> 'removed' \
                     RETURNING {COLUMNS}"
                ),
                &[&tenant, &hostname],
            )
            .await?;
        rows.first().map(domain).ok_or(StoreError::NotFound)
    }
}
