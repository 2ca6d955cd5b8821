//! `/v1/ownership-transfers`: a customer's owner hands ownership to someone else.
//!
//! - `POST /v1/ownership-transfers {"to_member_id"|"to_email"}`: only a member whose own
//!   member record holds the `owner` role offers (a role claim alone is not a member, so it
//!   cannot be the offer's sender); never to itself, never to an existing owner; one open
//!   offer per customer (409), an expired one is closed first.
//! - `GET /v1/ownership-transfers`: newest first; members with `members.read` see every
//!   offer, anyone else only the offers from or to themselves.
//! - `POST …/{id}/accept` and `…/decline`: only the recipient (the member the offer names,
//!   or the member whose email it names, also one who joined after the offer). Accepting
//!   checks the expiry in the same `UPDATE` that closes the offer (the database's clock, 410
//!   when it has passed), then, in the same transaction, makes the recipient `owner` and
//!   gives the offerer the recipient's previous role; `ownership.accepted` and
//!   `ownership.relinquished` are recorded for the two sides.
//! - `DELETE …/{id}`: only the offerer withdraws an open offer.
//!
//! Another customer's offer id answers 404 like a missing one (Row-Level Security hides it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{
    CreateOwnershipTransfer, OwnershipTransfer, Page as PageOf, TransferStatus,
};
use serde_json::json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::extract::{parse_id, Body, P, Q};
use super::page::{Page, PageQuery};
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;

const WHAT: &str = "ownership_transfer";

/// The columns of an offer, with an open offer past its expiry reported `expired`.
const COLUMNS: &str = "id, from_member_id, to_member_id, to_email, created_at, expires_at, \
     decided_at, CASE WHEN status = 'open' AND expires_at <= now() THEN 'expired' \
     ELSE status END AS status";

fn render(r: &Row) -> Result<OwnershipTransfer, ApiError> {
    let status: String = r.get("status");
    Ok(OwnershipTransfer {
        id: r.get("id"),
        from_member_id: r.get("from_member_id"),
        to_member_id: r.get("to_member_id"),
        to_email: r.get("to_email"),
        status: TransferStatus::parse(&status).ok_or_else(|| {
            ApiError::Unexpected(anyhow::anyhow!("ownership_transfers.status {status}"))
        })?,
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        decided_at: r.get("decided_at"),
    })
}

/// The caller's own member record.
struct Me {
    id: Uuid,
    email: String,
    role: String,
    role_id: Uuid,
}

async fn me(tx: &Tx<'_>) -> Result<Option<Me>, ApiError> {
    let row = tx
        .query_opt(
            "SELECT m.id, m.email, m.role_id, r.name AS role FROM members m \
             JOIN roles r ON r.tenant_id = m.tenant_id AND r.id = m.role_id WHERE m.subject = $1",
            &[&tx.caller().subject],
        )
        .await?;
    Ok(row.map(|r| Me {
        id: r.get("id"),
        email: r.get("email"),
        role: r.get("role"),
        role_id: r.get("role_id"),
    }))
}

async fn load(tx: &Tx<'_>, id: Uuid, lock: bool) -> Result<OwnershipTransfer, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ownership_transfers WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(ApiError::NotFound(WHAT))?;
    render(&row)
}

fn is_recipient(offer: &OwnershipTransfer, me: &Me) -> bool {
    offer.to_member_id == Some(me.id)
        || offer
            .to_email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&me.email))
}

/// The refusal for an offer that is no longer open.
fn not_open(offer: &OwnershipTransfer) -> ApiError {
    match offer.status {
        TransferStatus::Expired => ApiError::Expired(format!(
            "the ownership offer expired at {}; the owner can make a new one",
            offer.expires_at.to_rfc3339()
        )),
        s => ApiError::Conflict(format!("the ownership offer is already {}", s.as_str())),
    }
}

/// `POST /v1/ownership-transfers`.
#[utoipa::path(
    post,
    path = "/v1/ownership-transfers",
    operation_id = "offerOwnership",
    tag = "ownership",
    summary = "Offer ownership to a member or an email (owner only)",
    request_body = CreateOwnershipTransfer,
    responses(
        (status = 201, description = "Offered; open for 72 hours", body = OwnershipTransfer),
        (status = 409, description = "An offer is already open"),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateOwnershipTransfer>,
) -> Result<(StatusCode, Json<OwnershipTransfer>), ApiError> {
    match (&body.to_member_id, &body.to_email) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid(
                "to_member_id",
                "give exactly one of to_member_id and to_email",
            ))
        }
        (None, Some(e)) if !(3..=320).contains(&e.len()) || !e.contains('@') => {
            return Err(ApiError::invalid("to_email", "must be an email address"))
        }
        _ => {}
    }
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                let me = me(tx).await?.filter(|m| m.role == "owner").ok_or_else(|| {
                    ApiError::Forbidden("only an owner member can offer ownership".into())
                })?;
                if let Some(to) = body.to_member_id {
                    let role: String = tx
                        .query_opt(
                            "SELECT r.name FROM members m JOIN roles r \
                             ON r.tenant_id = m.tenant_id AND r.id = m.role_id WHERE m.id = $1",
                            &[&to],
                        )
                        .await?
                        .ok_or_else(|| ApiError::invalid("to_member_id", "no such member"))?
                        .get(0);
                    if to == me.id {
                        return Err(ApiError::invalid(
                            "to_member_id",
                            "you cannot offer ownership to yourself",
                        ));
                    }
                    if role == "owner" {
                        return Err(ApiError::invalid("to_member_id", "is already an owner"));
                    }
                }
                if let Some(e) = &body.to_email {
                    if e.eq_ignore_ascii_case(&me.email) {
                        return Err(ApiError::invalid(
                            "to_email",
                            "you cannot offer ownership to yourself",
                        ));
                    }
                    let owner_already: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM members m JOIN roles r \
                             ON r.tenant_id = m.tenant_id AND r.id = m.role_id \
                             WHERE lower(m.email) = lower($1) AND r.name = 'owner')",
                            &[e],
                        )
                        .await?
                        .get(0);
                    if owner_already {
                        return Err(ApiError::invalid("to_email", "is already an owner"));
                    }
                }
                // An open offer past its expiry no longer blocks a new one.
                tx.execute(
                    "UPDATE ownership_transfers SET status = 'expired' \
                     WHERE status = 'open' AND expires_at <= now()",
                    &[],
                )
                .await?;
                let open = tx
                    .query_opt(
                        "SELECT id FROM ownership_transfers WHERE status = 'open'",
                        &[],
                    )
                    .await?;
                if open.is_some() {
                    return Err(ApiError::Conflict(
                        "an ownership offer is already open; cancel it before making another"
                            .into(),
                    ));
                }
                let id = Uuid::now_v7();
                let email = body.to_email.map(|e| e.to_lowercase());
                tx.execute(
                    "INSERT INTO ownership_transfers (tenant_id, id, from_member_id, to_member_id, to_email) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&tx.tenant(), &id, &me.id, &body.to_member_id, &email],
                )
                .await?;
                tx.audit(
                    "ownership.offered",
                    WHAT,
                    &id.to_string(),
                    json!({ "to_member_id": body.to_member_id, "to_email": email }),
                )
                .await?;
                load(tx, id, false).await
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /v1/ownership-transfers`.
#[utoipa::path(
    get,
    path = "/v1/ownership-transfers",
    operation_id = "listOwnershipTransfers",
    tag = "ownership",
    summary = "Ownership offers, newest first",
    params(PageQuery),
    responses((status = 200, description = "One page", body = PageOf<OwnershipTransfer>))
)]
pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> Result<Json<PageOf<OwnershipTransfer>>, ApiError> {
    let page = Page::from_query(&q)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                let after = page.after_uuid()?;
                // Without `members.read`, a caller sees only its own offers (as sender or
                // recipient); a caller who is not a member sees none.
                let (mine, email): (Option<Uuid>, Option<String>) =
                    if tx.require(Permission::MembersRead).is_ok() {
                        (None, None)
                    } else {
                        match me(tx).await? {
                            Some(m) => (Some(m.id), Some(m.email)),
                            None => (Some(Uuid::nil()), Some(String::new())),
                        }
                    };
                let sql = format!(
                    "SELECT {COLUMNS} FROM ownership_transfers \
                     WHERE ($1::uuid IS NULL OR id < $1) \
                       AND ($2::uuid IS NULL OR from_member_id = $2 OR to_member_id = $2 \
                            OR lower(to_email) = lower($3)) \
                     ORDER BY id DESC LIMIT $4"
                );
                let rows = tx
                    .query(&sql, &[&after, &mine, &email, &page.fetch()])
                    .await?;
                let mut items = rows.iter().map(render).collect::<Result<Vec<_>, _>>()?;
                let next_cursor = page.cut(&mut items, |t| t.id.to_string());
                Ok(PageOf { items, next_cursor })
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /v1/ownership-transfers/{id}/accept`.
#[utoipa::path(
    post,
    path = "/v1/ownership-transfers/{id}/accept",
    operation_id = "acceptOwnership",
    tag = "ownership",
    summary = "Accept an ownership offer (the recipient only): the roles swap",
    params(("id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 200, description = "Accepted: the caller is an owner", body = OwnershipTransfer),
        (status = 409, description = "The offer is no longer open"),
        (status = 410, description = "The offer expired"),
    )
)]
pub(super) async fn accept(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<Json<OwnershipTransfer>, ApiError> {
    let id = parse_id(&id, WHAT)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                let (offer, me) = recipient(tx, id).await?;
                close_open(tx, id, "accepted").await?;
                let offerer: String = tx
                    .query_one(
                        "SELECT r.name FROM members m JOIN roles r \
                         ON r.tenant_id = m.tenant_id AND r.id = m.role_id WHERE m.id = $1",
                        &[&offer.from_member_id],
                    )
                    .await?
                    .get(0);
                if offerer != "owner" {
                    return Err(ApiError::Conflict(
                        "the member who made the offer is no longer an owner".into(),
                    ));
                }
                tx.execute(
                    "UPDATE members SET role_id = (SELECT id FROM roles WHERE name = 'owner'), \
                     updated_at = now() WHERE id = $1",
                    &[&me.id],
                )
                .await?;
                tx.execute(
                    "UPDATE members SET role_id = $2, updated_at = now() WHERE id = $1",
                    &[&offer.from_member_id, &me.role_id],
                )
                .await?;
                let detail = json!({ "transfer_id": id, "previous_role": me.role });
                tx.audit("ownership.accepted", "member", &me.id.to_string(), detail)
                    .await?;
                let detail = json!({ "transfer_id": id, "new_role": me.role });
                let from = offer.from_member_id.to_string();
                tx.audit("ownership.relinquished", "member", &from, detail)
                    .await?;
                load(tx, id, false).await
            })
        })
        .await?;
    Ok(Json(out))
}

/// The offer `id`, locked, and the caller's member record, when the caller is its recipient.
async fn recipient(tx: &Tx<'_>, id: Uuid) -> Result<(OwnershipTransfer, Me), ApiError> {
    let offer = load(tx, id, true).await?;
    let me = me(tx)
        .await?
        .filter(|m| is_recipient(&offer, m))
        .ok_or_else(|| {
            ApiError::Forbidden("only the recipient of the offer can accept or decline it".into())
        })?;
    Ok((offer, me))
}

/// `POST /v1/ownership-transfers/{id}/decline`.
#[utoipa::path(
    post,
    path = "/v1/ownership-transfers/{id}/decline",
    operation_id = "declineOwnership",
    tag = "ownership",
    summary = "Decline an ownership offer (the recipient only)",
    params(("id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 200, description = "Declined", body = OwnershipTransfer),
        (status = 409, description = "The offer is no longer open"),
        (status = 410, description = "The offer expired"),
    )
)]
pub(super) async fn decline(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<Json<OwnershipTransfer>, ApiError> {
    let id = parse_id(&id, WHAT)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                recipient(tx, id).await?;
                close(tx, id, "declined", "ownership.declined").await
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/ownership-transfers/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/ownership-transfers/{id}",
    operation_id = "cancelOwnershipTransfer",
    tag = "ownership",
    summary = "Withdraw an open ownership offer (the offerer only)",
    params(("id" = Uuid, Path, description = "Offer id")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 409, description = "The offer is no longer open"),
        (status = 410, description = "The offer expired"),
    )
)]
pub(super) async fn cancel(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, WHAT)?;
    st.db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                let offer = load(tx, id, true).await?;
                if me(tx).await?.map(|m| m.id) != Some(offer.from_member_id) {
                    return Err(ApiError::Forbidden(
                        "only the member who made the offer can withdraw it".into(),
                    ));
                }
                close(tx, id, "cancelled", "ownership.cancelled").await
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes the open, unexpired offer `id` as `status`, with the audit event `action`.
async fn close(
    tx: &Tx<'_>,
    id: Uuid,
    status: &str,
    action: &str,
) -> Result<OwnershipTransfer, ApiError> {
    close_open(tx, id, status).await?;
    tx.audit(action, WHAT, &id.to_string(), json!({})).await?;
    load(tx, id, false).await
}

/// Closes the open offer `id` with `status`. The expiry is decided here, by the database's
/// clock, in the statement that closes the offer: an expired or decided offer is refused
/// ([`not_open`]) and nothing changes.
async fn close_open(tx: &Tx<'_>, id: Uuid, status: &str) -> Result<(), ApiError> {
    let closed = tx
        .execute(
            "UPDATE ownership_transfers SET status = $2, decided_at = now(), decided_by = $3 \
             WHERE id = $1 AND status = 'open' AND expires_at > now()",
            &[&id, &status, &tx.caller().subject],
        )
        .await?;
    if closed == 1 {
        Ok(())
    } else {
        Err(not_open(&load(tx, id, false).await?))
    }
}
