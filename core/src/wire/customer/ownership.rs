//! `/v1/ownership-transfers`: a customer's owner offers ownership to another member or to
//! an email; the recipient accepts or declines, the offerer may cancel.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an offer stands. An `open` offer past its `expires_at` is reported `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Waiting for the recipient.
    Open,
    /// The recipient became an owner; the offerer took the recipient's previous role.
    Accepted,
    /// The recipient said no.
    Declined,
    /// The offerer withdrew it.
    Cancelled,
    /// Not accepted within 72 hours of the offer.
    Expired,
}

impl TransferStatus {
    /// Its wire and database name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// The status named `s` (the database's names).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Open,
            Self::Accepted,
            Self::Declined,
            Self::Cancelled,
            Self::Expired,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// An ownership offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnershipTransfer {
    /// Its id.
    pub id: Uuid,
    /// The owner member who made the offer.
    pub from_member_id: Uuid,
    /// The member it is offered to (or `null` for an offer to an email).
    pub to_member_id: Option<Uuid>,
    /// The email it is offered to (or `null` for an offer to a member).
    pub to_email: Option<String>,
    /// Where it stands.
    pub status: TransferStatus,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it expires (72 hours after it was made).
    pub expires_at: DateTime<Utc>,
    /// When it was accepted, declined or cancelled.
    pub decided_at: Option<DateTime<Utc>>,
}

/// Body of `POST /v1/ownership-transfers`: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOwnershipTransfer {
    /// A member of this customer other than the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_member_id: Option<Uuid>,
    /// An email other than the caller's; the member with it (now or after joining) accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_email: Option<String>,
}
