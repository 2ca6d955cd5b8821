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
//! - [`serve`]: the accept loop of the region node and the admin listener, with configurable
//!   [`serve::Limits`].
//! - [`tls_reload`]: the server certificate that reloads on `SIGHUP` or file change.
//! - `prom` (feature `metrics`): the Prometheus recorder, help text, buckets, build info and
//!   upkeep of every binary.
//! - [`logging`]: the one log subscriber of every binary (`--log-format text|json`).
//! - `extract` (feature `axum`): the query and JSON body extractors of the node and the admin
//!   API.
//!
//! Without the `axum` feature the kit has no web framework dependency: responses are
//! `http::Response<Full<Bytes>>`, which axum users turn into theirs with
//! `.map(axum::body::Body::new)`.

#[cfg(feature = "axum")]
pub mod extract;
pub mod json;
pub mod logging;
pub mod page;
mod problem;
#[cfg(feature = "metrics")]
pub mod prom;
pub mod request_id;
pub mod serve;
pub mod shutdown;
pub mod tls_reload;

pub use problem::{Problem, PROBLEM_JSON};
pub use request_id::RequestId;

/// Distinguishes an absent field from an explicit `null` in PATCH bodies; the wire types'
/// own ([`residency_core::wire::nullable`]), here for handlers that are not typed in core.
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
