//! `residency orgs ownership offer|list|accept|decline|cancel <org> …`: an organization's
//! ownership transfer (`/admin/v1/organizations/{id}/ownership-transfers`). Accepting and
//! declining need the recipient's own identity-provider JWT as the admin token (one whose
//! `email` claim is the offer's); organization tokens and the platform token are refused.

use clap::Subcommand;
use http::Method;
use residency_core::wire::admin::List;
use residency_core::wire::org_ownership::{CreateOrgOwnershipTransfer, OrgOwnershipTransfer};

use super::api::{AdminApi, CliError};
use super::{seg, shown, Output, NO_BODY};

const FIELDS: &[&str] = &[
    "id",
    "status",
    "from_email",
    "to_email",
    "offered_by",
    "created_at",
    "expires_at",
    "decided_at",
];

/// `residency orgs ownership …`
#[derive(Subcommand, Debug)]
pub(super) enum OwnershipCmd {
    /// Offer the organization's ownership to an email (the organization's owner); open for
    /// 72 hours.
    Offer {
        /// Organization id.
        org: String,
        /// The new owner's email.
        #[arg(long)]
        to_email: String,
    },
    /// The organization's ownership offers, newest first.
    List {
        /// Organization id.
        org: String,
    },
    /// Accept an offer (the recipient, with their own JWT as the admin token).
    Accept {
        /// Organization id.
        org: String,
        /// Offer id.
        transfer_id: String,
    },
    /// Decline an offer (the recipient, with their own JWT as the admin token).
    Decline {
        /// Organization id.
        org: String,
        /// Offer id.
        transfer_id: String,
    },
    /// Withdraw an open offer (the organization's owner).
    Cancel {
        /// Organization id.
        org: String,
        /// Offer id.
        transfer_id: String,
    },
}

/// Runs `residency orgs ownership …`.
pub(super) async fn run(api: &AdminApi, cmd: &OwnershipCmd) -> Result<Output, CliError> {
    let base = |org: &str| format!("/admin/v1/organizations/{}/ownership-transfers", seg(org));
    match cmd {
        OwnershipCmd::Offer { org, to_email } => {
            let body = CreateOrgOwnershipTransfer {
                to_email: to_email.clone(),
            };
            let t: OrgOwnershipTransfer = api.call(Method::POST, &base(org), Some(&body)).await?;
            Ok(Output::Object(shown(&t), FIELDS))
        }
        OwnershipCmd::List { org } => {
            let list: List<OrgOwnershipTransfer> =
                api.call(Method::GET, &base(org), NO_BODY).await?;
            Ok(Output::Table(shown(&list), FIELDS))
        }
        OwnershipCmd::Accept { org, transfer_id } | OwnershipCmd::Decline { org, transfer_id } => {
            let verb = if matches!(cmd, OwnershipCmd::Accept { .. }) {
                "accept"
            } else {
                "decline"
            };
            let path = format!("{}/{}/{verb}", base(org), seg(transfer_id));
            let t: OrgOwnershipTransfer = api.call(Method::POST, &path, NO_BODY).await?;
            Ok(Output::Object(shown(&t), FIELDS))
        }
        OwnershipCmd::Cancel { org, transfer_id } => {
            let path = format!("{}/{}", base(org), seg(transfer_id));
            let _: Option<serde::de::IgnoredAny> = api.call(Method::DELETE, &path, NO_BODY).await?;
            Ok(Output::Text(
                serde_json::json!({ "id": transfer_id, "status": "cancelled" }),
                format!("offer {transfer_id} withdrawn\n"),
            ))
        }
    }
}
