//! Request ids: taken from `x-request-id` when well formed (the gateway always sets one),
//! otherwise generated; echoed on the response, recorded on the span and in audit events.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use residency_http::request_id::HEADER;
use residency_http::RequestId;
use tracing::Instrument;

use crate::error::CURRENT_REQUEST_ID;

/// Middleware that scopes the request id for the rest of the stack.
pub(crate) async fn scope(req: Request, next: Next) -> Response {
    let id = RequestId::from_headers_or_new(req.headers());
    let path = req.uri().path();
    let span = if residency_http::logging::otlp::enabled()
        && matches!(path, "/healthz" | "/readyz" | "/metrics")
    {
        // With tracing on, probes and scrapes are not exported (their spans are logged on
        // target `residency::untraced`).
        tracing::info_span!(
            target: residency_http::logging::UNTRACED_TARGET,
            "request",
            request_id = %id,
            method = %req.method(),
            path = %path,
            tenant_id = tracing::field::Empty,
        )
    } else {
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %req.method(),
            path = %path,
            tenant_id = tracing::field::Empty,
        );
        // With tracing on, the gateway's `traceparent` (the node is reached only through the
        // gateway: mTLS and the signed assertion) makes this span a child of its request
        // span.
        residency_http::logging::otlp::adopt_parent(&span, req.headers());
        span
    };
    let header = id.header_value().clone();
    let mut resp = CURRENT_REQUEST_ID
        .scope(id, next.run(req))
        .instrument(span)
        .await;
    resp.headers_mut().insert(HEADER, header);
    resp
}
