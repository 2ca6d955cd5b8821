//! Signups (migration 0006): one row per application with its outcome and reasons, and an
//! append-only `signup_events` trail of every step (submission, review, promotion).
//!
//! An approved or provisional signup creates its organization in the same transaction as the
//! signup row; a domain taken meanwhile by another organization turns the outcome into
//! `rejected` (`ON CONFLICT DO NOTHING` on the unique domain), so no race creates two.

use residency_core::wire::admin::{Classification, Signup, SignupStatus};
use residency_core::OrgId;
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Store, StoreError};

pub use residency_core::wire::admin::Signup as SignupRecord;

const COLUMNS: &str = "id, email, domain, company, website, description, status, reasons, \
     classification, classifier, org_id, review_note, reviewed_by, created_at, updated_at";

/// A signup to record, its outcome already decided.
#[derive(Debug, Clone)]
pub struct NewSignup {
    /// The applicant's email.
    pub email: String,
    /// Its domain (lowercase).
    pub domain: String,
    /// Company name.
    pub company: String,
    /// Website, or empty.
    pub website: String,
    /// Description, or empty.
    pub description: String,
    /// Outcome.
    pub status: SignupStatus,
    /// Why.
    pub reasons: Vec<String>,
    /// The classifier's valid answer.
    pub classification: Option<Classification>,
    /// Which classifier answered.
    pub classifier: String,
}

fn signup(r: &Row) -> Signup {
    let status: String = r.get("status");
    let reasons: Value = r.get("reasons");
    let classification: Option<Value> = r.get("classification");
    Signup {
        id: r.get("id"),
        email: r.get("email"),
        domain: r.get("domain"),
        company: r.get("company"),
        website: r.get("website"),
        description: r.get("description"),
        // The CHECK constraint restricts the column to the four outcomes.
        status: SignupStatus::parse(&status).unwrap_or(SignupStatus::ManualReview),
        reasons: serde_json::from_value(reasons).unwrap_or_default(),
        classification: classification.and_then(|c| serde_json::from_value(c).ok()),
        classifier: r.get("classifier"),
        org_id: r.get::<_, Option<Uuid>>("org_id").map(OrgId::from_uuid),
        review_note: r.get("review_note"),
        reviewed_by: r.get("reviewed_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// Inserts the organization of an accepted signup; `None` when the domain is taken.
async fn insert_org(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    domain: &str,
    owner: &str,
    provisional: bool,
) -> Result<Option<Uuid>, StoreError> {
    let row = tx
        .query_opt(
            "INSERT INTO organizations (id, name, domain, plan, owner_email, provisional) \
             VALUES ($1, $2, $3, 'free', $4, $5) ON CONFLICT (domain) DO NOTHING RETURNING id",
            &[&Uuid::now_v7(), &name, &domain, &owner, &provisional],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn event(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    actor: &str,
    event: &str,
    status: SignupStatus,
    detail: &Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO signup_events (signup_id, actor, event, status, detail) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&id, &actor, &event, &status.as_str(), detail],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Whether an organization with this domain exists.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn org_domain_taken(&self, domain: &str) -> Result<bool, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM organizations WHERE domain = $1)",
                &[&domain],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Whether a signup with this domain waits for review (`manual_review` or
    /// `provisional`).
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn signup_pending_for(&self, domain: &str) -> Result<bool, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM signups WHERE domain = $1 \
                   AND status IN ('manual_review', 'provisional'))",
                &[&domain],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Records a signup and its `submitted` event; an `approved` or `provisional` one creates
    /// its organization (Free plan, the applicant as owner) in the same transaction.
    ///
    /// # Errors
    /// When the directory is unavailable or refuses a value.
    pub async fn create_signup(&self, actor: &str, s: &NewSignup) -> Result<Signup, StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT set_config('residency.actor', $1, true)", &[&actor])
            .await?;
        let mut status = s.status;
        let mut reasons = s.reasons.clone();
        let mut org = None;
        if matches!(status, SignupStatus::Approved | SignupStatus::Provisional) {
            org = insert_org(
                &tx,
                &s.company,
                &s.domain,
                &s.email,
                status == SignupStatus::Provisional,
            )
            .await?;
            if org.is_none() {
                status = SignupStatus::Rejected;
                reasons.push(format!(
                    "an organization with the domain {} already exists; ask its owner for access",
                    s.domain
                ));
            }
        }
        let id = Uuid::now_v7();
        let classification = s
            .classification
            .as_ref()
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO signups (id, email, domain, company, website, description, status, \
                       reasons, classification, classifier, org_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
                ),
                &[
                    &id,
                    &s.email,
                    &s.domain,
                    &s.company,
                    &s.website,
                    &s.description,
                    &status.as_str(),
                    &json!(reasons),
                    &classification,
                    &s.classifier,
                    &org,
                ],
            )
            .await?;
        event(
            &tx,
            id,
            actor,
            "submitted",
            status,
            &json!({ "reasons": reasons, "org_id": org }),
        )
        .await?;
        tx.commit().await?;
        Ok(signup(&row))
    }

    /// Signups, newest first by id, optionally only one status.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn list_signups(
        &self,
        status: Option<SignupStatus>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Signup>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM signups WHERE ($1::text IS NULL OR status = $1) \
                       AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
                ),
                &[&status.map(SignupStatus::as_str), &after, &limit],
            )
            .await?;
        Ok(rows.iter().map(signup).collect())
    }

    /// One signup.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn signup(&self, id: Uuid) -> Result<Option<Signup>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM signups WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(signup))
    }

    /// A signup's events, oldest first, as `{at, actor, event, status, detail}`.
    ///
    /// # Errors
    /// When the directory is unavailable.
    pub async fn signup_events(&self, id: Uuid) -> Result<Vec<Value>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT at, actor, event, status, detail FROM signup_events \
                 WHERE signup_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let at: chrono::DateTime<chrono::Utc> = r.get(0);
                json!({
                    "at": at.to_rfc3339(),
                    "actor": r.get::<_, String>(1),
                    "event": r.get::<_, String>(2),
                    "status": r.get::<_, String>(3),
                    "detail": r.get::<_, Value>(4),
                })
            })
            .collect())
    }

    /// A platform admin's decision on a signup waiting for review (`manual_review` or
    /// `provisional`): approving creates its organization (Free plan, the applicant as
    /// owner) or lifts a provisional one's reduced limits; rejecting records the note (a
    /// provisional organization stays, still provisional: the writer cannot delete). Returns
    /// `Ok(None)` when the signup is not waiting for review.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown signup; [`StoreError::Conflict`] when
    /// approving needs an organization whose domain is taken meanwhile.
    pub async fn review_signup(
        &self,
        actor: &str,
        id: Uuid,
        approve: bool,
        note: &str,
    ) -> Result<Option<Signup>, StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT set_config('residency.actor', $1, true)", &[&actor])
            .await?;
        let current = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM signups WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .map(|r| signup(&r))
            .ok_or(StoreError::NotFound)?;
        if !matches!(
            current.status,
            SignupStatus::ManualReview | SignupStatus::Provisional
        ) {
            return Ok(None);
        }
        let mut org = current.org_id.map(|o| o.as_uuid());
        let status = if approve {
            match org {
                Some(o) => {
                    tx.execute(
                        "UPDATE organizations SET provisional = false WHERE id = $1",
                        &[&o],
                    )
                    .await?;
                }
                None => {
                    org = Some(
                        insert_org(
                            &tx,
                            &current.company,
                            &current.domain,
                            &current.email,
                            false,
                        )
                        .await?
                        .ok_or_else(|| {
                            StoreError::Conflict(format!(
                                "an organization with the domain {} exists meanwhile",
                                current.domain
                            ))
                        })?,
                    );
                }
            }
            SignupStatus::Approved
        } else {
            SignupStatus::Rejected
        };
        let row = tx
            .query_one(
                &format!(
                    "UPDATE signups SET status = $2, org_id = $3, review_note = $4, \
                       reviewed_by = $5, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id, &status.as_str(), &org, &note, &actor],
            )
            .await?;
        event(
            &tx,
            id,
            actor,
            if approve { "approved" } else { "rejected" },
            status,
            &json!({ "note": note, "from": current.status.as_str(), "org_id": org }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(signup(&row)))
    }
}
