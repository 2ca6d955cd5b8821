//! Entry points for the benchmarks in `gateway/benches/` (doc-hidden, not an API): the
//! request path's own pieces that are private to [`crate::proxy`].

use http::HeaderValue;

/// The `request` span of a request with `method`, `path` and `request_id`, with `tenant`,
/// `credential` and `region` recorded as the proxy records them after authentication and
/// resolution; `proxy::request_span` and `proxy::route::template` are the code measured.
#[must_use]
pub fn request_span(request_id: &HeaderValue, parts: &http::request::Parts) -> tracing::Span {
    let span = crate::proxy::request_span(request_id, parts);
    span.record("tenant", "0190a5c4-0000-7000-8000-0000000000c1")
        .record("credential", "jwt")
        .record("region", "eu");
    span
}

/// The route template the logs name `path` by.
#[must_use]
pub fn route_template(path: &str) -> &'static str {
    crate::proxy::route::template(path)
}
