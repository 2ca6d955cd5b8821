//! Organization ownership transfers (migration 0007): offers, their decisions, and the
//! organization's append-only `org_events` trail. Each write is one transaction; accepting
//! closes the offer (checking its expiry in the same `UPDATE`, by the database's clock),
//! changes `organizations.owner_email` and appends the event together.

use residency_core::wire::org_ownership::{OrgOwnershipTransfer, TransferStatus};
use residency_core::OrgId;
use serde_json::json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

const COLUMNS: &str = "id, org_id, from_email, to_email, offered_by, created_at, expires_at, \
     decided_at, CASE WHEN status = 'open' AND expires_at <= now() THEN 'expired' \
     ELSE status END AS status";

fn transfer(r: &Row) -> OrgOwnershipTransfer {
    let status: String = r.get("status");
    OrgOwnershipTransfer {
        id: r.get("id"),
        org_id: OrgId::from_uuid(r.get("org_id")),
        from_email: r.get("from_email"),
        to_email: r.get("to_email"),
        offered_by: r.get("offered_by"),
        // The CHECK constraint restricts the column to the five statuses.
        status: TransferStatus::parse(&status).unwrap_or(TransferStatus::Expired),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        decided_at: r.get("decided_at"),
    }
}

/// What happens to an open offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnershipDecision {
    /// The recipient takes the organization.
    Accept,
    /// The recipient refuses.
    Decline,
    /// The offerer withdraws.
    Cancel,
}

impl OwnershipDecision {
    fn status(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Decline => "declined",
            Self::Cancel => "cancelled",
        }
    }

    fn event(self) -> &'static str {
        match self {
            Self::Accept => "ownership.accepted",
            Self::Decline => "ownership.declined",
            Self::Cancel => "ownership.cancelled",
        }
    }
}

/// The outcome of [`Store::decide_org_ownership`].
#[derive(Debug, Clone)]
pub enum OwnershipOutcome {
    /// Decided as asked.
    Done(OrgOwnershipTransfer),
    /// The offer was no longer open (its status says why: decided, or `expired`); nothing
    /// changed.
    NotOpen(OrgOwnershipTransfer),
}

impl Store {
    /// Offers `org`'s ownership to `to_email` (lowercased). An open offer past its expiry is
    /// closed as `expired` first.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when an offer is open, [`StoreError::NotFound`] for an
    /// unknown organization.
    pub async fn offer_org_ownership(
        &self,
        actor: &str,
        org: Uuid,
        to_email: &str,
    ) -> Result<OrgOwnershipTransfer, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "UPDATE org_ownership_transfers SET status = 'expired' \
             WHERE org_id = $1 AND status = 'open' AND expires_at <= now()",
            &[&org],
        )
        .await?;
        let id = Uuid::now_v7();
        let email = to_email.to_lowercase();
        let row = tx
            .query_opt(
                &format!(
                    "INSERT INTO org_ownership_transfers (id, org_id, from_email, to_email, offered_by) \
                     SELECT $1, id, owner_email, $3, $4 FROM organizations WHERE id = $2 \
                     RETURNING {COLUMNS}"
                ),
                &[&id, &org, &email, &actor],
            )
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(
                    "an ownership offer is already open; cancel it before making another".into(),
                ),
                other => other,
            })?
            .ok_or(StoreError::NotFound)?;
        tx.execute(
            "INSERT INTO org_events (org_id, actor, event, transfer_id, detail) \
             VALUES ($1, $2, 'ownership.offered', $3, $4)",
            &[&org, &actor, &id, &json!({ "to_email": email })],
        )
        .await?;
        tx.commit().await?;
        Ok(transfer(&row))
    }

    /// `org`'s ownership offers, newest first.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_ownership_transfers(
        &self,
        org: Uuid,
    ) -> Result<Vec<OrgOwnershipTransfer>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM org_ownership_transfers WHERE org_id = $1 \
                     ORDER BY id DESC LIMIT 500"
                ),
                &[&org],
            )
            .await?;
        Ok(rows.iter().map(transfer).collect())
    }

    /// The offer `id` of `org`.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_ownership_transfer(
        &self,
        org: Uuid,
        id: Uuid,
    ) -> Result<Option<OrgOwnershipTransfer>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM org_ownership_transfers WHERE org_id = $1 AND id = $2"
                ),
                &[&org, &id],
            )
            .await?;
        Ok(row.as_ref().map(transfer))
    }

    /// Decides the open offer `id` of `org` (the caller has checked who may). Accepting also
    /// makes the offer's email the organization's owner of record, in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown offer.
    pub async fn decide_org_ownership(
        &self,
        actor: &str,
        org: Uuid,
        id: Uuid,
        decision: OwnershipDecision,
    ) -> Result<OwnershipOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let closed = tx
            .query_opt(
                &format!(
                    "UPDATE org_ownership_transfers SET status = $3, decided_at = now(), decided_by = $4 \
                     WHERE org_id = $1 AND id = $2 AND status = 'open' AND expires_at > now() \
                     RETURNING {COLUMNS}"
                ),
                &[&org, &id, &decision.status(), &actor],
            )
            .await?;
        let Some(row) = closed else {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM org_ownership_transfers WHERE org_id = $1 AND id = $2"
                    ),
                    &[&org, &id],
                )
                .await?
                .ok_or(StoreError::NotFound)?;
            return Ok(OwnershipOutcome::NotOpen(transfer(&row)));
        };
        let t = transfer(&row);
        if decision == OwnershipDecision::Accept {
            tx.execute(
                "UPDATE organizations SET owner_email = $2 WHERE id = $1",
                &[&org, &t.to_email],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO org_events (org_id, actor, event, transfer_id, detail) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &org,
                &actor,
                &decision.event(),
                &id,
                &json!({ "from_email": t.from_email, "to_email": t.to_email }),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(OwnershipOutcome::Done(t))
    }

    /// `org`'s ownership events, oldest first: `(at, actor, event)`.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_events(
        &self,
        org: Uuid,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, String, String)>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT at, actor, event FROM org_events WHERE org_id = $1 ORDER BY id",
                &[&org],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
