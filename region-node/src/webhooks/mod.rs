//! Customer webhooks: events recorded in the writer's transaction ([`emit`]), delivered by
//! this region's node from its job queue ([`deliver`], job kind [`KIND`]).
//!
//! An event exists exactly when the write that caused it commits: [`emit`] inserts one
//! `webhook_deliveries` row per enabled subscription that names the event type and queues its
//! `webhook_delivery` job (`crate::jobs::enqueue`), both in the caller's tenant transaction.
//! Deliveries therefore leave only from the region that holds the customer's rows — its home —
//! and a tenant move carries pending deliveries (and their jobs) with it.
//!
//! What a delivery may reach is [`target`]'s business (SSRF rules at create/update and at
//! every attempt on the address actually connected to).

pub(crate) mod deliver;
mod send;
pub(crate) mod target;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::Utc;
use residency_core::wire::customer::{WebhookEvent, SECRET_PREFIX};
use serde_json::Value;
use uuid::Uuid;

use crate::db::tenant_tx::Tx;
use crate::error::ApiError;

/// The job kind of a delivery; the job's subject is the delivery's id.
pub(crate) const KIND: &str = "webhook_delivery";

/// The event types (their wire names are `residency_core::wire::customer::EVENT_TYPES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    /// A workflow run ended, `succeeded` or `failed` (the workflow worker, in the transaction
    /// that ends it) or `cancelled` (`POST /v1/executions/{id}/cancel`).
    WorkflowRunFinished,
    /// A member was added.
    MemberAdded,
    /// A member was removed.
    MemberRemoved,
    /// A connection was created.
    ConnectionCreated,
    /// A connection was deleted.
    ConnectionDeleted,
    /// The customer arrived in this region (recorded by the move's target node).
    TenantMoved,
    /// An API key of the customer was revoked (reported by the gateway's admin API).
    ApiKeyRevoked,
    /// A test event, on request (`POST /v1/webhooks/{id}/ping`).
    Ping,
}

impl EventType {
    /// The wire name.
    #[must_use]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::WorkflowRunFinished => "workflow.run.finished",
            Self::MemberAdded => "member.added",
            Self::MemberRemoved => "member.removed",
            Self::ConnectionCreated => "connection.created",
            Self::ConnectionDeleted => "connection.deleted",
            Self::TenantMoved => "tenant.moved",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::Ping => "ping",
        }
    }
}

/// Records `event` with `data` for every enabled subscription of the transaction's tenant
/// that names it: one delivery row and one queued job each, in `tx`, so nothing is delivered
/// for a write that rolls back. Returns the number of deliveries queued.
///
/// # Errors
/// Database errors (the caller's write fails with them).
pub(crate) async fn emit(tx: &Tx<'_>, event: EventType, data: Value) -> Result<usize, ApiError> {
    let subs: Vec<Uuid> = tx
        .query(
            "SELECT id FROM webhook_subscriptions WHERE enabled AND $1 = ANY (events) ORDER BY id",
            &[&event.as_str()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if subs.is_empty() {
        return Ok(0);
    }
    let payload = body(tx, event, data)?;
    for sub in &subs {
        queue(tx, *sub, event, &payload).await?;
    }
    Ok(subs.len())
}

/// The delivery body of a new event of the transaction's tenant.
pub(crate) fn body(tx: &Tx<'_>, event: EventType, data: Value) -> Result<WebhookEvent, ApiError> {
    Ok(WebhookEvent {
        id: Uuid::now_v7(),
        event_type: event.as_str().to_owned(),
        created_at: Utc::now(),
        tenant_id: tx.tenant(),
        data,
    })
}

/// Inserts one pending delivery of `payload` to subscription `sub` and queues its job.
/// Returns the delivery's id.
///
/// # Errors
/// Database errors.
pub(crate) async fn queue(
    tx: &Tx<'_>,
    sub: Uuid,
    event: EventType,
    payload: &WebhookEvent,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let json = serde_json::to_value(payload).map_err(|e| ApiError::Unexpected(e.into()))?;
    tx.execute(
        "INSERT INTO webhook_deliveries \
         (tenant_id, id, subscription_id, event_id, event_type, payload, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now())",
        &[&tx.tenant(), &id, &sub, &payload.id, &event.as_str(), &json],
    )
    .await?;
    crate::jobs::enqueue(tx, KIND, id, None).await?;
    Ok(id)
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
///
/// # Errors
/// When the system RNG fails.
pub(crate) fn new_secret() -> Result<String, ApiError> {
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("system rng failed")))?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(raw)))
}
