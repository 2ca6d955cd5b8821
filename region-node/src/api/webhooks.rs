//! `/v1/webhooks`: a tenant's webhook subscriptions, their delivery log and test pings.
//!
//! Writes need `webhooks.manage`, reads `webhooks.read`; every write leaves an audit event.
//! The target URL is checked before anything is stored ([`crate::webhooks::target::check`]:
//! `https`, no credentials, every resolved address public unless `[webhooks]
//! allow_private_targets`), 422 naming `url`. The signing secret is generated here, returned
//! once in the 201 answer, and stored sealed with the region's credentials key bound to
//! (tenant, subscription); no later answer and no log line carries it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use residency_core::wire::customer::{
    CreateWebhook, CreatedWebhook, Page as PageOf, UpdateWebhook, Webhook, WebhookAttempt,
    WebhookDelivery, EVENT_TYPES,
};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{parse_id, Body, P, Q};
use super::openapi::standard::{Op, PathKey, Standard};
use super::page::{Page, PageQuery};
use super::resource::Resource;
use super::resource::{Key, Order};
use super::text_field;
use crate::db::tenant_tx::{Caller, Tx};
use crate::error::ApiError;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::webhooks::{self, target, EventType};

const COLUMNS: &str = "id, url, events, description, enabled, created_at, updated_at";
pub(crate) const WEBHOOK: Resource<Webhook> = Resource {
    what: "webhook",
    table: "webhook_subscriptions",
    key: Key::Id,
    columns: COLUMNS,
    joins: "",
    order: Order::Asc,
    read: Permission::WebhooksRead,
    render,
};

fn render(r: &Row) -> Result<Webhook, ApiError> {
    Ok(Webhook {
        id: r.get("id"),
        url: r.get("url"),
        events: r.get("events"),
        description: r.get("description"),
        enabled: r.get("enabled"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Its standard operations in the customer API document.
pub(crate) const DOC: Standard = Standard {
    tag: "webhooks",
    path: "/v1/webhooks",
    noun: "webhook",
    schema: "Webhook",
    key: PathKey::Id,
    ops: &[
        Op::List(|| PageQuery::into_params(|| None)),
        Op::Get,
        Op::Delete(None),
    ],
};

const DELIVERY_COLUMNS: &str = "id, subscription_id, event_id, event_type, status, attempts, \
    last_status_code, last_error, last_duration_ms, next_attempt_at, attempt_log, created_at, updated_at";

fn render_delivery(r: &Row) -> Result<WebhookDelivery, ApiError> {
    let log: serde_json::Value = r.get("attempt_log");
    let attempt_log: Vec<WebhookAttempt> = serde_json::from_value(log).map_err(|e| {
        ApiError::Unexpected(anyhow::anyhow!("webhook_deliveries.attempt_log: {e}"))
    })?;
    Ok(WebhookDelivery {
        id: r.get("id"),
        webhook_id: r.get("subscription_id"),
        event_id: r.get("event_id"),
        event_type: r.get("event_type"),
        status: r.get("status"),
        attempts: r.get("attempts"),
        last_status_code: r.get("last_status_code"),
        last_error: r.get("last_error"),
        last_duration_ms: r.get("last_duration_ms"),
        next_attempt_at: r.get("next_attempt_at"),
        attempt_log,
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Checks the target URL (shape and resolved addresses): 422 naming `url`.
async fn check_url(st: &AppState, url: &str) -> Result<(), ApiError> {
    target::check(url, &st.webhooks)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::invalid("url", e.to_string()))
}

/// The event types, each from the catalogue, without duplicates: 422 naming the entry.
fn check_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() || events.len() > EVENT_TYPES.len() {
        return Err(ApiError::invalid(
            "events",
            format!("must name 1-{} event types", EVENT_TYPES.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(ApiError::invalid(
                format!("events[{i}]"),
                format!("not an event type; one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

/// `POST /v1/webhooks`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    summary = "Subscribe a URL to events",
    description = "The answer carries the signing secret (`whsec_…`), shown only here. `url` must \
                   be `https` and resolve to public addresses only (422 naming `url` otherwise).",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created, with its signing secret", body = CreatedWebhook),
    )
)]
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    text_field("description", &body.description, 0, 500)?;
    let events = check_events(&body.events)?;
    // The permission first, so a caller who may not create learns nothing about targets.
    st.db
        .tenant(&caller, |tx| {
            Box::pin(async move { tx.require(Permission::WebhooksManage) })
        })
        .await?;
    check_url(&st, &body.url).await?;
    let secret = webhooks::new_secret()?;
    let st2 = Arc::clone(&st);
    let plain = secret.clone();
    let webhook = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WebhooksManage)?;
                let id = Uuid::now_v7();
                let sealed = st2
                    .cipher
                    .seal(tx.tenant(), id, plain.as_bytes())
                    .map_err(|e| ApiError::Unexpected(e.into()))?;
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO webhook_subscriptions \
                             (tenant_id, id, url, events, description, secret, secret_kid) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                        ),
                        &[
                            &tx.tenant(),
                            &id,
                            &body.url,
                            &events,
                            &body.description,
                            &sealed,
                            &st2.cipher.kid(),
                        ],
                    )
                    .await?;
                tx.audit(
                    "webhook.create",
                    "webhook",
                    &id.to_string(),
                    json!({ "url": body.url, "events": events }),
                )
                .await?;
                render(&row)
            })
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook { webhook, secret }),
    ))
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "updateWebhook",
    tag = "webhooks",
    summary = "Change a webhook",
    description = "A new `url` is checked like on create. Disabling stops new deliveries; \
                   pending ones fail when their turn comes.",
    params(("id" = Uuid, Path, description = "The webhook's id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "Changed", body = Webhook),
    )
)]
pub(super) async fn update(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Body(body): Body<UpdateWebhook>,
) -> Result<Json<Webhook>, ApiError> {
    let id = parse_id(&id, WEBHOOK.what)?;
    if let Some(d) = &body.description {
        text_field("description", d, 0, 500)?;
    }
    let events = body.events.as_deref().map(check_events).transpose()?;
    if let Some(url) = &body.url {
        st.db
            .tenant(&caller, move |tx| {
                Box::pin(async move {
                    tx.require(Permission::WebhooksManage)?;
                    WEBHOOK.load(tx, &id).await.map(|_| ())
                })
            })
            .await?;
        check_url(&st, url).await?;
    }
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WebhooksManage)?;
                let row = tx
                    .query_opt(
                        &format!(
                            "UPDATE webhook_subscriptions SET \
                               url = coalesce($2, url), events = coalesce($3, events), \
                               description = coalesce($4, description), \
                               enabled = coalesce($5, enabled), updated_at = now() \
                             WHERE id = $1 RETURNING {COLUMNS}"
                        ),
                        &[&id, &body.url, &events, &body.description, &body.enabled],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("webhook"))?;
                tx.audit(
                    "webhook.update",
                    "webhook",
                    &id.to_string(),
                    json!({ "url": body.url, "events": events, "enabled": body.enabled }),
                )
                .await?;
                render(&row)
            })
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /v1/webhooks/{id}`: the subscription, its delivery log and their queued jobs.
pub(super) async fn delete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, WEBHOOK.what)?;
    st.db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WebhooksManage)?;
                tx.execute(
                    "DELETE FROM jobs WHERE kind = $1 AND subject_id IN \
                     (SELECT id FROM webhook_deliveries WHERE subscription_id = $2)",
                    &[&webhooks::KIND, &id],
                )
                .await?;
                WEBHOOK.delete_row(tx, &id).await
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn load_delivery(tx: &Tx<'_>, id: Uuid) -> Result<WebhookDelivery, ApiError> {
    let row = tx
        .query_one(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
            &[&id],
        )
        .await?;
    render_delivery(&row)
}

/// `POST /v1/webhooks/{id}/ping`: queues a `ping` event to this webhook (whatever events it
/// names); 409 when it is disabled.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/ping",
    operation_id = "pingWebhook",
    tag = "webhooks",
    summary = "Send a test event",
    params(("id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 202, description = "Queued", body = WebhookDelivery),
        (status = 409, description = "The webhook is disabled"),
    )
)]
pub(super) async fn ping(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
) -> Result<(StatusCode, Json<WebhookDelivery>), ApiError> {
    let id = parse_id(&id, WEBHOOK.what)?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WebhooksManage)?;
                let hook = WEBHOOK.load(tx, &id).await?;
                if !hook.enabled {
                    return Err(ApiError::Conflict("the webhook is disabled".into()));
                }
                let body = webhooks::body(
                    tx,
                    EventType::Ping,
                    json!({ "webhook_id": id, "subject": tx.caller().subject }),
                )?;
                let delivery = webhooks::queue(tx, id, EventType::Ping, &body).await?;
                tx.audit(
                    "webhook.ping",
                    "webhook",
                    &id.to_string(),
                    json!({ "delivery_id": delivery }),
                )
                .await?;
                load_delivery(tx, delivery).await
            })
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(out)))
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/webhooks/{id}/deliveries`: the delivery log, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    summary = "A webhook's delivery log, newest first",
    params(("id" = Uuid, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "One page", body = PageOf<WebhookDelivery>),
    )
)]
pub(super) async fn deliveries(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    P(id): P<String>,
    Q(q): Q<DeliveriesQuery>,
) -> Result<Json<PageOf<WebhookDelivery>>, ApiError> {
    let id = parse_id(&id, WEBHOOK.what)?;
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.after_uuid()?;
    let out = st
        .db
        .tenant(&caller, move |tx| {
            Box::pin(async move {
                tx.require(Permission::WebhooksRead)?;
                WEBHOOK.load(tx, &id).await?;
                let mut rows = tx
                    .query(
                        &format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                             WHERE subscription_id = $1 AND ($2::uuid IS NULL OR id < $2) \
                             ORDER BY id DESC LIMIT $3"
                        ),
                        &[&id, &after, &page.fetch()],
                    )
                    .await?;
                let next_cursor = page.cut(&mut rows, |r| r.get::<_, Uuid>("id").to_string());
                let items = rows.iter().map(render_delivery).collect::<Result<_, _>>()?;
                Ok(PageOf { items, next_cursor })
            })
        })
        .await?;
    Ok(Json(out))
}
