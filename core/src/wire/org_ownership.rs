//! An organization's ownership transfer (admin API,
//! `/admin/v1/organizations/{id}/ownership-transfers`): the organization's owner offers it
//! to an email; the person with that email accepts with an identity-provider JWT of the
//! organization carrying that `email`; the organization's owner of record
//! (`Organization::owner_email`) changes in the same transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::customer::TransferStatus;
use crate::OrgId;

/// `POST /admin/v1/organizations/{id}/ownership-transfers` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgOwnershipTransfer {
    /// The email of the new owner (not the current owner's).
    pub to_email: String,
}

/// An organization ownership offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrgOwnershipTransfer {
    /// Its id.
    pub id: Uuid,
    /// The organization.
    pub org_id: OrgId,
    /// The owner of record when the offer was made (`null` when there was none).
    pub from_email: Option<String>,
    /// The email it is offered to.
    pub to_email: String,
    /// The credential that made the offer (`org:<org>:jwt:<subject>`, `org:<org>:token:<id>`,
    /// `admin:<name>`).
    pub offered_by: String,
    /// Where it stands (an open offer past `expires_at` is `expired`).
    pub status: TransferStatus,
    /// When it was made.
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it expires (72 hours after it was made).
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    /// When it was accepted, declined or cancelled.
    #[serde(serialize_with = "super::rfc3339::option")]
    pub decided_at: Option<DateTime<Utc>>,
}
