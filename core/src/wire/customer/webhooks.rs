//! `/v1/webhooks`: a tenant's webhook subscriptions, their delivery log, and the body every
//! delivery POSTs ([`WebhookEvent`]).
//!
//! A delivery carries `Residency-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, `Residency-Event: <type>` and `Residency-Delivery: <delivery id>`
//! ([`SIGNATURE_HEADER`], [`EVENT_HEADER`], [`DELIVERY_HEADER`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The signature header of a delivery.
pub const SIGNATURE_HEADER: &str = "residency-signature";
/// The event type header of a delivery.
pub const EVENT_HEADER: &str = "residency-event";
/// The delivery id header of a delivery (the same id on every retry: receivers deduplicate
/// by it).
pub const DELIVERY_HEADER: &str = "residency-delivery";
/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Every event type a subscription may name.
pub const EVENT_TYPES: [&str; 8] = [
    "workflow.run.finished",
    "member.added",
    "member.removed",
    "connection.created",
    "connection.deleted",
    "tenant.moved",
    "api_key.revoked",
    "ping",
];

/// A webhook subscription. Its signing secret is shown once, on create ([`CreatedWebhook`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: Uuid,
    /// The `https` URL deliveries are POSTed to.
    pub url: String,
    /// The event types it receives (`ping` is always delivered on request).
    pub events: Vec<String>,
    /// Free text.
    pub description: String,
    /// Disabled subscriptions get no new deliveries.
    pub enabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Answer of `POST /v1/webhooks`: the subscription and its signing secret, shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    /// The subscription.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret (`whsec_…`): the HMAC-SHA256 key of `Residency-Signature`. Stored
    /// encrypted, never shown again.
    pub secret: String,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// An `https` URL (≤ 2048 characters) whose host resolves to public addresses only.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types, at least one, from the catalogue.
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// Free text, at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
}

/// Body of `PATCH /v1/webhooks/{id}`: absent fields are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateWebhook {
    /// A new URL (checked like on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// A new set of event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// New free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Enable or disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// One delivery of one event to one subscription, with the outcome of its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    /// Its id (`Residency-Delivery`).
    pub id: Uuid,
    /// The subscription.
    pub webhook_id: Uuid,
    /// The event's id (the body's `id`).
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `delivered` (a 2xx), `failed` (given up
    /// without retrying: the webhook was disabled, answered 410 Gone, or its secret cannot be
    /// read) or `dead` (all `max_attempts` attempts failed).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's HTTP status, if an answer came.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed, client-safe.
    pub last_error: Option<String>,
    /// The last attempt's duration in milliseconds.
    pub last_duration_ms: Option<i32>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Every attempt so far, oldest first.
    pub attempt_log: Vec<WebhookAttempt>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The HTTP status, if an answer came.
    pub status_code: Option<i32>,
    /// Duration in milliseconds.
    pub duration_ms: i32,
    /// Why it failed, client-safe (`None` for a 2xx).
    pub error: Option<String>,
}

/// The JSON body of every delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    /// The event's id (the same on every retry and for every subscription).
    pub id: Uuid,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The customer.
    pub tenant_id: Uuid,
    /// The event's data.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
