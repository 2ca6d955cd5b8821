//! Request ids: taken from `x-request-id` when well formed (the gateway always sets one),
//! otherwise generated; echoed on the response, recorded on the span and in audit events.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use residency_config::headers;
use tracing::Instrument;

use crate::error::CURRENT_REQUEST_ID;

/// Middleware that scopes the request id for the rest of the stack.
pub async fn scope(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| headers::is_valid_request_id(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        tenant_id = tracing::field::Empty,
    );
    let header = HeaderValue::from_str(&id).ok();
    let mut resp = CURRENT_REQUEST_ID
        .scope(id, next.run(req))
        .instrument(span)
        .await;
    if let Some(h) = header {
        resp.headers_mut().insert(headers::REQUEST_ID, h);
    }
    resp
}
