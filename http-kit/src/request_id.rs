//! Request ids: taken from `x-request-id` when well formed, otherwise generated (UUIDv7);
//! echoed on every response and carried by every problem as `instance` and `request_id`.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The request-id header.
pub const HEADER: HeaderName = HeaderName::from_static(residency_core::headers::REQUEST_ID);

/// Whether a request id received from a client is safe to reuse and log: 1 to 128 characters
/// from `[A-Za-z0-9._:-]`.
#[must_use]
pub fn is_valid(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A validated request id, ready to be a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's `x-request-id` when [`is_valid`], else a new one.
    #[must_use]
    pub fn from_headers_or_new(headers: &HeaderMap) -> Self {
        headers
            .get(HEADER)
            .filter(|v| v.to_str().is_ok_and(is_valid))
            .map_or_else(Self::new, |v| Self(v.clone()))
    }

    /// A new id (a UUIDv7, so ids sort by time).
    #[must_use]
    pub fn new() -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        Self(HeaderValue::from_str(text).expect("a uuid is a valid header value"))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only valid ids and UUIDs are ever held: both are visible ASCII.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    #[must_use]
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as an owned header value.
    #[must_use]
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(is_valid("01HZX-abc_1.2:3"));
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid("x\r\ninjected: 1"));
        assert!(!is_valid(&"a".repeat(129)));
        assert!(is_valid(&"a".repeat(128)));
    }

    #[test]
    fn kept_when_well_formed_else_generated() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("client-id.1"));
        assert_eq!(RequestId::from_headers_or_new(&h).as_str(), "client-id.1");
        h.insert(HEADER, HeaderValue::from_static("bad id with spaces"));
        let generated = RequestId::from_headers_or_new(&h);
        assert_ne!(generated.as_str(), "bad id with spaces");
        assert!(uuid::Uuid::parse_str(generated.as_str()).is_ok());
        let empty = HeaderMap::new();
        assert_ne!(
            RequestId::from_headers_or_new(&empty),
            RequestId::from_headers_or_new(&empty)
        );
    }
}
