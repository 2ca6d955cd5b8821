//! Organization admin tokens (migration 0006): `rog_<prefix>_<secret>`, stored as the public
//! prefix and the hex SHA-256 of the whole token, like API keys. The gateway looks a token up
//! by prefix on every admin request ([`Store::org_token_by_prefix`]); nothing caches it, so a
//! revocation is effective at once on every gateway.

use residency_core::wire::admin::{OrgRole, OrgToken};
use residency_core::OrgId;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

const COLUMNS: &str = "id, org_id, name, role, prefix, created_by, created_at, revoked_at";

/// What the admin API needs to authenticate an organization token.
#[derive(Debug, Clone)]
pub struct OrgTokenEntry {
    /// Id.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// Role.
    pub role: OrgRole,
    /// Hex SHA-256 of the whole token.
    pub hash: String,
    /// Whether it is revoked.
    pub revoked: bool,
}

fn token(r: &Row) -> OrgToken {
    let role: String = r.get("role");
    OrgToken {
        id: r.get("id"),
        org_id: OrgId::from_uuid(r.get("org_id")),
        name: r.get("name"),
        // The CHECK constraint restricts the column to the three roles.
        role: OrgRole::parse(&role).unwrap_or(OrgRole::Member),
        prefix: r.get("prefix"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        revoked_at: r.get("revoked_at"),
    }
}

impl Store {
    /// Creates a token of `org` with `role`; returns it and its plaintext (shown once).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown organization.
    pub async fn create_org_token(
        &self,
        actor: &str,
        org: Uuid,
        name: &str,
        role: OrgRole,
    ) -> Result<(OrgToken, String), StoreError> {
        let key = crate::keys::generate_with(crate::keys::ORG_TOKEN_KIND)?;
        let rows = self
            .write(
                actor,
                &format!(
                    "INSERT INTO org_tokens (id, org_id, name, role, prefix, hash, created_by) \
                     SELECT $1, id, $3, $4, $5, $6, $7 FROM organizations WHERE id = $2 \
                     RETURNING {COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &org,
                    &name,
                    &role.as_str(),
                    &key.prefix,
                    &key.hash,
                    &actor,
                ],
            )
            .await?;
        let record = rows.first().map(token).ok_or(StoreError::NotFound)?;
        Ok((record, key.plaintext))
    }

    /// An organization's tokens, without secrets, by id.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_org_tokens(&self, org: Uuid) -> Result<Vec<OrgToken>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                &format!("SELECT {COLUMNS} FROM org_tokens WHERE org_id = $1 ORDER BY id"),
                &[&org],
            )
            .await?;
        Ok(rows.iter().map(token).collect())
    }

    /// One token of `org`.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_token(&self, org: Uuid, id: Uuid) -> Result<Option<OrgToken>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM org_tokens WHERE org_id = $1 AND id = $2"),
                &[&org, &id],
            )
            .await?;
        Ok(row.as_ref().map(token))
    }

    /// Revokes a token of `org` (idempotent).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the organization has no such token.
    pub async fn revoke_org_token(
        &self,
        actor: &str,
        org: Uuid,
        id: Uuid,
    ) -> Result<OrgToken, StoreError> {
        let rows = self
            .write(
                actor,
                &format!(
                    "UPDATE org_tokens SET revoked_at = coalesce(revoked_at, now()), \
                       revoked_by = coalesce(revoked_by, $3) \
                     WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
                ),
                &[&org, &id, &actor],
            )
            .await?;
        rows.first().map(token).ok_or(StoreError::NotFound)
    }

    /// The token with this public prefix, for authentication.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_token_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<OrgTokenEntry>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT id, org_id, role, hash, revoked_at IS NOT NULL AS revoked \
                 FROM org_tokens WHERE prefix = $1",
                &[&prefix],
            )
            .await?;
        Ok(row.map(|r| {
            let role: String = r.get("role");
            OrgTokenEntry {
                id: r.get("id"),
                org_id: r.get("org_id"),
                role: OrgRole::parse(&role).unwrap_or(OrgRole::Member),
                hash: r.get("hash"),
                revoked: r.get("revoked"),
            }
        }))
    }
}
