//! An organization's ownership transfer (`/admin/v1/organizations/{id}/ownership-transfers`).
//!
//! The owner of an organization is a person: the organization's owner of record
//! (`organizations.owner_email`). Its `owner` (an owner token, an owner JWT, or the platform
//! admin) offers the ownership to an email; the person with that email accepts (or declines)
//! with an identity-provider JWT of the organization (any `org_role`) whose `email` claim is
//! the offer's. Organization tokens are credentials, not people, and the platform admin is
//! not the recipient either: both get 403 on accept and decline. Accepting changes the owner
//! of record in the transaction that closes the offer; from then on that person's JWTs are
//! `owner` and any other JWT claiming `owner` is `admin` ([`super::principal::org_jwt`]).
//! Offers expire 72 hours after they are made (checked in the closing `UPDATE`; 409
//! `offer_expired`); one open offer per organization (409); the directory keeps the
//! append-only `org_events` trail.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use residency_core::wire::admin::List;
use residency_core::wire::org_ownership::{
    CreateOrgOwnershipTransfer, OrgOwnershipTransfer, TransferStatus,
};
use residency_core::OrgId;
use residency_directory::{OwnershipDecision, OwnershipOutcome};

use super::orgs::visible_org;
use super::{parse_uuid, AdminError, AdminState, Body, Principal};

type Result<T> = std::result::Result<T, AdminError>;

/// `POST /admin/v1/organizations/{id}/ownership-transfers`.
#[utoipa::path(post, path = "/admin/v1/organizations/{id}/ownership-transfers", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id")),
    request_body = CreateOrgOwnershipTransfer,
    responses(
        (status = 201, description = "Offered; open for 72 hours", body = OrgOwnershipTransfer),
        (status = 409, response = super::openapi::Conflict),
        super::openapi::BodyRefusals,
    ))]
pub(crate) async fn offer(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<CreateOrgOwnershipTransfer>,
) -> Result<Response> {
    let org = visible_org(&p, &id)?;
    let to = b.to_email.trim();
    if !(3..=320).contains(&to.len()) || to.find('@').is_none_or(|at| at == 0) {
        return Err(AdminError::invalid("to_email", "must be an email address"));
    }
    let store = st.store()?;
    let record = store
        .org(OrgId::from_uuid(org))
        .await?
        .ok_or(AdminError::NotFound("organization"))?;
    let mine = match &p {
        Principal::Org { email, .. } => email.as_deref(),
        Principal::Platform { .. } => None,
    };
    if [record.owner_email.as_deref(), mine]
        .into_iter()
        .flatten()
        .any(|e| e.eq_ignore_ascii_case(to))
    {
        return Err(AdminError::invalid(
            "to_email",
            "is already the organization's owner (or yours)",
        ));
    }
    let t = store.offer_org_ownership(&p.actor(), org, to).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// `GET /admin/v1/organizations/{id}/ownership-transfers`: newest first (at most 500).
#[utoipa::path(get, path = "/admin/v1/organizations/{id}/ownership-transfers", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization's ownership offers", body = List<OrgOwnershipTransfer>),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn list(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<List<OrgOwnershipTransfer>>> {
    let org = visible_org(&p, &id)?;
    let items = st.store()?.org_ownership_transfers(org).await?;
    Ok(Json(List { items }))
}

/// `POST /admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept`.
#[utoipa::path(post, path = "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/accept", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id"),
           ("transfer_id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 200, description = "Accepted: the caller is the organization's owner of record", body = OrgOwnershipTransfer),
        (status = 409, response = super::openapi::Conflict),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn accept(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, transfer)): Path<(String, String)>,
) -> Result<Json<OrgOwnershipTransfer>> {
    decide_as_recipient(&st, &p, &id, &transfer, OwnershipDecision::Accept).await
}

/// `POST /admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline`.
#[utoipa::path(post, path = "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}/decline", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id"),
           ("transfer_id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 200, description = "Declined", body = OrgOwnershipTransfer),
        (status = 409, response = super::openapi::Conflict),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn decline(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, transfer)): Path<(String, String)>,
) -> Result<Json<OrgOwnershipTransfer>> {
    decide_as_recipient(&st, &p, &id, &transfer, OwnershipDecision::Decline).await
}

/// `DELETE /admin/v1/organizations/{id}/ownership-transfers/{transfer_id}`: the
/// organization's owner withdraws an open offer.
#[utoipa::path(delete, path = "/admin/v1/organizations/{id}/ownership-transfers/{transfer_id}", tag = "organizations",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Organization id"),
           ("transfer_id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 409, response = super::openapi::Conflict),
        super::openapi::ByIdRefusals,
    ))]
pub(crate) async fn cancel(
    State(st): State<Arc<AdminState>>,
    Extension(p): Extension<Principal>,
    Path((id, transfer)): Path<(String, String)>,
) -> Result<StatusCode> {
    let org = visible_org(&p, &id)?;
    let transfer = parse_uuid(&transfer, "transfer_id")?;
    decide(&st, &p, org, transfer, OwnershipDecision::Cancel).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept or decline: only the person the offer names, by a JWT's `email` claim.
async fn decide_as_recipient(
    st: &AdminState,
    p: &Principal,
    id: &str,
    transfer: &str,
    decision: OwnershipDecision,
) -> Result<Json<OrgOwnershipTransfer>> {
    let org = visible_org(p, id)?;
    let transfer = parse_uuid(transfer, "transfer_id")?;
    let offer = st
        .store()?
        .org_ownership_transfer(org, transfer)
        .await?
        .ok_or(AdminError::NotFound("ownership transfer"))?;
    let recipient = matches!(p, Principal::Org { email: Some(e), .. }
        if e.eq_ignore_ascii_case(&offer.to_email));
    if !recipient {
        return Err(AdminError::Forbidden {
            kind: "ownership_recipient_required",
            detail: "only the recipient, with an identity-provider token of this organization \
                     carrying the offer's email, can accept or decline it"
                .into(),
        });
    }
    decide(st, p, org, transfer, decision).await.map(Json)
}

async fn decide(
    st: &AdminState,
    p: &Principal,
    org: uuid::Uuid,
    transfer: uuid::Uuid,
    decision: OwnershipDecision,
) -> Result<OrgOwnershipTransfer> {
    let outcome = st
        .store()?
        .decide_org_ownership(&p.actor(), org, transfer, decision)
        .await
        .map_err(|e| match AdminError::from(e) {
            AdminError::NotFound(_) => AdminError::NotFound("ownership transfer"),
            other => other,
        })?;
    match outcome {
        OwnershipOutcome::Done(t) => Ok(t),
        OwnershipOutcome::NotOpen(t) if t.status == TransferStatus::Expired => {
            Err(AdminError::Conflict {
                kind: "offer_expired",
                detail: format!(
                    "the ownership offer expired at {}; the owner can make a new one",
                    t.expires_at.to_rfc3339()
                ),
                field: None,
            })
        }
        OwnershipOutcome::NotOpen(t) => Err(AdminError::Conflict {
            kind: "offer_closed",
            detail: format!("the ownership offer is already {}", t.status.as_str()),
            field: None,
        }),
    }
}
