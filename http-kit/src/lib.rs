//! The HTTP kit shared by every Residency service that answers clients: the gateway's public
//! listener, its admin API and the region nodes.
//!
//! - [`Problem`]: the one RFC 9457 `application/problem+json` renderer, with one `type`
//!   scheme (`urn:residency:problem:<kind>`) and `instance` == `request_id` == `x-request-id`
//!   on every error.
//! - [`RequestId`]: the one way a request id is taken from `x-request-id` or generated.
//! - [`json`]: the JSON body content-type check and field-naming parse.
//! - [`page`]: the keyset cursor format and page-size bounds of every list.
//! - [`nullable`]: absent vs explicit `null` in PATCH bodies.
//!
//! The kit has no web framework dependency: responses are `http::Response<Full<Bytes>>`, which
//! axum users turn into theirs with `.map(axum::body::Body::new)`.

pub mod json;
pub mod page;
pub mod problem;
pub mod request_id;

pub use problem::{Problem, ProblemDocument, PROBLEM_JSON, TYPE_PREFIX};
pub use request_id::RequestId;

/// Distinguishes an absent field from an explicit `null` in PATCH bodies (defined with the
/// wire contracts in [`residency_core::wire::nullable`]).
pub use residency_core::wire::nullable;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "nullable")]
        n: Option<Option<u32>>,
    }

    #[test]
    fn nullable_tells_absent_from_null() {
        let p = |s: &str| serde_json::from_str::<Patch>(s).unwrap().n;
        assert_eq!(p("{}"), None);
        assert_eq!(p(r#"{"n": null}"#), Some(None));
        assert_eq!(p(r#"{"n": 3}"#), Some(Some(3)));
        assert!(serde_json::from_str::<Patch>(r#"{"n": "x"}"#).is_err());
    }
}
