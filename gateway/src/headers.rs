//! Header hygiene: the first thing done to every request, before authentication.
//!
//! A client must never be able to inject what the gateway itself asserts to a region node, so
//! every client-sent internal header is dropped: `x-residency-*`, `x-tenant-id`, `forwarded`,
//! `x-forwarded-*`. Hop-by-hop headers (RFC 9110 §7.6.1) and every header named in
//! `Connection` are dropped too, on requests and on responses, because they describe one
//! connection and must not travel over the next.
//!
//! This module only removes headers; the proxy adds the internal ones afterwards.

use http::header::{HeaderMap, HeaderName, CONNECTION};
use residency_core::headers::{INTERNAL_PREFIX, TENANT_ID};

/// Hop-by-hop headers that never cross the proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (lowercase, as `http` stores it) is hop-by-hop.
#[must_use]
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Whether `name` (lowercase) is one the gateway sets itself and a client may not send.
#[must_use]
pub(crate) fn is_internal(name: &str) -> bool {
    name.starts_with(INTERNAL_PREFIX)
        || name.starts_with("x-forwarded-")
        || name == TENANT_ID
        || name == "forwarded"
}

/// Removes every internal, hop-by-hop and `Connection`-named header from a client request.
pub fn sanitize_request(headers: &mut HeaderMap) {
    strip(headers, |name| is_internal(name) || is_hop_by_hop(name));
}

/// Removes hop-by-hop and `Connection`-named headers from a region node's response.
pub fn sanitize_response(headers: &mut HeaderMap) {
    strip(headers, is_hop_by_hop);
}

fn strip(headers: &mut HeaderMap, doomed_name: impl Fn(&str) -> bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        // A value that is not visible ASCII cannot name a header; the `Connection` header itself
        // is removed below either way.
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                doomed.push(name);
            }
        }
    }
    doomed.extend(headers.keys().filter(|n| doomed_name(n.as_str())).cloned());
    for name in &doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_internal_and_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("authorization", "Bearer x"),
            ("x-residency-assertion", "forged"),
            ("X-Residency-Region", "us"),
            ("x-tenant-id", "0190a5c4-0000-7000-8000-000000000001"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("connection", "keep-alive, X-Custom-Secret"),
            ("connection", "x-other"),
            ("x-custom-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "application/json"),
            ("x-request-id", "abc"),
        ]);
        sanitize_request(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization", "x-request-id"]);
    }

    #[test]
    fn response_keeps_internal_headers_but_drops_hop_by_hop() {
        let mut h = map(&[
            ("content-type", "application/json"),
            ("connection", "close, x-debug"),
            ("x-debug", "1"),
            ("transfer-encoding", "chunked"),
            ("x-residency-region", "eu"),
        ]);
        sanitize_response(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-residency-region"]);
    }

    #[test]
    fn non_ascii_connection_value_does_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_bytes(b"\xffx-a").unwrap());
        h.insert("x-a", HeaderValue::from_static("1"));
        sanitize_request(&mut h);
        assert!(h.get(CONNECTION).is_none());
        assert!(h.get("x-a").is_some());
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("x-residency-assertion".to_owned()),
            Just("x-residency-anything".to_owned()),
            Just("x-tenant-id".to_owned()),
            Just("forwarded".to_owned()),
            Just("x-forwarded-for".to_owned()),
            Just("transfer-encoding".to_owned()),
            Just("upgrade".to_owned()),
            Just("accept".to_owned()),
            "[a-z][a-z0-9-]{0,15}",
        ]
    }

    proptest! {
        #[test]
        fn nothing_forbidden_survives_and_nothing_else_is_lost(
            pairs in proptest::collection::vec((header_name(), "[ -~]{0,20}"), 0..12),
            named in proptest::collection::vec("[a-z][a-z0-9-]{0,15}", 0..4),
        ) {
            let mut h = HeaderMap::new();
            for (k, v) in &pairs {
                h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            if !named.is_empty() {
                h.append(CONNECTION, HeaderValue::from_str(&named.join(", ")).unwrap());
            }
            let before = h.clone();
            sanitize_request(&mut h);
            for name in h.keys() {
                prop_assert!(!is_internal(name.as_str()), "{name} survived");
                prop_assert!(!is_hop_by_hop(name.as_str()), "{name} survived");
                prop_assert!(!named.iter().any(|n| n == name.as_str()), "{name} survived");
            }
            for (name, value) in &before {
                let forbidden = is_internal(name.as_str())
                    || is_hop_by_hop(name.as_str())
                    || named.iter().any(|n| n == name.as_str());
                if !forbidden {
                    prop_assert!(h.get_all(name).iter().any(|v| v == value), "{name} lost");
                }
            }
        }
    }
}
