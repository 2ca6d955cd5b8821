//! The one place where gateway errors become HTTP responses: each [`GatewayError`] is shown
//! as a [`residency_http::Problem`] (RFC 9457 `application/problem+json`, `type`
//! `urn:residency:problem:<kind>`, `instance` and `request_id`), the one renderer every
//! Residency service shares.
//!
//! Bodies carry client-safe text only: no upstream address, no library error, no key id. What
//! went wrong internally goes to the log and to the bounded `error_kind` metric label.

use bytes::Bytes;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use residency_core::assertion::AssertionError;
use residency_core::RegionId;
use residency_http::Problem;

use crate::auth::AuthError;
use crate::directory::DirectoryError;
use crate::ratelimit::{self, Decision};

/// Everything that stops a request before or instead of a region node's answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The request is malformed in a way the client can fix.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No valid credential.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The tenant cannot be served.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Authenticated, but this credential may not be used.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A credential of another customer on a customer's custom domain.
    #[error("credential of another customer on a custom domain")]
    DomainTenantMismatch,
    /// The TLS server name and the request's host name different hostnames, one of them a
    /// customer's custom domain.
    #[error("misdirected request")]
    Misdirected,
    /// Nothing is served at this path on the public listener.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The tenant is over its rate limit: 429 with `Retry-After` and the `RateLimit-*`
    /// headers of `decision` ([`crate::ratelimit`]).
    #[error("rate limit exceeded")]
    RateLimited {
        /// The limiter's refusal, with the numbers for the headers.
        decision: Decision,
    },
    /// The request body exceeds the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The tenant's home region has no upstream that is currently accepting connections.
    #[error("no healthy upstream in the home region")]
    NoHealthyUpstream {
        /// Seconds until an ejected upstream is tried again.
        retry_after: u64,
    },
    /// The region node refused or dropped the connection, or its TLS handshake failed; the
    /// upstream is ejected. `cause` is the error chain (for the log, never the client).
    #[error("upstream connect failed (tls: {tls}): {cause}")]
    UpstreamConnect {
        /// Whether the TLS handshake failed (unknown CA, name, client certificate).
        tls: bool,
        /// The connection error's chain.
        cause: String,
    },
    /// The region node's connection failed after it was established.
    #[error("upstream request failed: {cause}")]
    UpstreamFailed {
        /// The error's chain.
        cause: String,
    },
    /// The region node did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The tenant's home region is not among the loaded regions (a directory entry newer than
    /// this gateway's configuration).
    #[error("region {0} not loaded")]
    RegionNotLoaded(RegionId),
    /// The internal assertion could not be minted.
    #[error("minting assertion: {0}")]
    Assertion(#[from] AssertionError),
    /// The upstream request URI could not be built.
    #[error("upstream uri: {0}")]
    UpstreamUri(#[from] http::Error),
}

impl GatewayError {
    /// The response status.
    #[must_use]
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Directory(d) => d.status(),
            Self::Forbidden(_) | Self::DomainTenantMismatch => StatusCode::FORBIDDEN,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoHealthyUpstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamConnect { .. } | Self::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::RegionNotLoaded(_) | Self::Assertion(_) | Self::UpstreamUri(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A bounded label for metrics and the last segment of the problem `type`.
    #[must_use]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Auth(_) => "unauthorized",
            Self::Directory(d) => d.kind(),
            Self::Forbidden(_) => "forbidden",
            Self::DomainTenantMismatch => "domain_tenant_mismatch",
            Self::Misdirected => "misdirected_request",
            Self::NotFound(_) => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NoHealthyUpstream { .. } => "no_upstream",
            Self::UpstreamConnect { .. } => "upstream_connect",
            Self::UpstreamFailed { .. } => "upstream_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::RegionNotLoaded(_) | Self::Assertion(_) | Self::UpstreamUri(_) => "internal",
        }
    }

    /// The client-safe explanation.
    fn detail(&self) -> &'static str {
        match self {
            Self::BadRequest(why) | Self::Forbidden(why) | Self::NotFound(why) => why,
            Self::Auth(a) => a.client_detail(),
            Self::Directory(d) => d.client_detail(),
            Self::RateLimited { .. } => {
                "the customer's request rate limit is exceeded; retry after the number of seconds in Retry-After"
            }
            Self::DomainTenantMismatch => {
                "this hostname serves one customer only; the credential belongs to another"
            }
            Self::Misdirected => {
                "the tls server name and the host name differ; send the request on a connection made for its host"
            }
            Self::PayloadTooLarge => "the request body exceeds the size limit",
            Self::NoHealthyUpstream { .. } => {
                "the customer's home region is not reachable right now; retry later"
            }
            Self::UpstreamConnect { .. } | Self::UpstreamFailed { .. } => {
                "the customer's home region could not be reached"
            }
            Self::UpstreamTimeout => "the customer's home region did not answer in time",
            Self::RegionNotLoaded(_)
            | Self::Assertion(_)
            | Self::UpstreamUri(_) => "the gateway could not handle the request",
        }
    }

    /// The problem this error is shown as, with its `WWW-Authenticate` or `Retry-After`.
    #[must_use]
    pub(crate) fn problem(&self) -> Problem {
        let p = Problem::new(self.status(), self.kind(), self.detail());
        match self {
            Self::Auth(a) => p.with_header(WWW_AUTHENTICATE, a.www_authenticate()),
            Self::NoHealthyUpstream { retry_after } => p.with_retry_after(*retry_after),
            Self::Directory(d) => match d.retry_after() {
                Some(secs) => p.with_retry_after(secs),
                None => p,
            },
            _ => p,
        }
    }

    /// Logs this error once when it is a 5xx the gateway answers itself (an upstream that
    /// refused, failed or timed out, no healthy upstream, the directory down, a tenant that
    /// cannot be served now, an internal error), with the request id, the bounded `kind`,
    /// the home region when known and the cause; a 4xx is the client's and is not logged
    /// here. Internal errors (500) at `error`, the others at `warn`. The cause is the error's
    /// text: library errors and region ids, never a credential (no variant holds one).
    pub(crate) fn log_server_error(&self, request_id: &HeaderValue, region: Option<&RegionId>) {
        let status = self.status();
        if !status.is_server_error() {
            return;
        }
        let request_id = request_id.to_str().unwrap_or_default();
        let region = region.map(tracing::field::display);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(
                request_id,
                status = status.as_u16(),
                kind = self.kind(),
                region,
                cause = %self,
                "internal error"
            );
        } else {
            tracing::warn!(
                request_id,
                status = status.as_u16(),
                kind = self.kind(),
                region,
                cause = %self,
                "request not served"
            );
        }
    }

    /// The problem+json response for this error, tagged with `request_id`.
    #[must_use]
    pub(crate) fn into_response(self, request_id: &HeaderValue) -> Response<Full<Bytes>> {
        let rate = match &self {
            Self::RateLimited { decision } => Some(*decision),
            _ => None,
        };
        let mut resp = self.problem().render(request_id);
        if let Some(decision) = rate {
            ratelimit::insert_headers(resp.headers_mut(), &decision);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, RETRY_AFTER};
    use http_body_util::BodyExt;
    use residency_core::headers::REQUEST_ID;

    async fn body_json(resp: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unauthorized_has_www_authenticate_and_request_id() {
        let id = HeaderValue::from_static("req-1");
        let resp = GatewayError::Auth(AuthError::Expired).into_response(&id);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let www = resp.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.starts_with("Bearer realm=\"residency\""), "{www}");
        assert!(www.contains("invalid_token"), "{www}");
        assert_eq!(resp.headers()[REQUEST_ID], "req-1");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        let body = body_json(resp).await;
        assert_eq!(body["status"], 401);
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["title"], "Unauthorized");
        assert_eq!(body["type"], "urn:residency:problem:unauthorized");
        assert_eq!(body["instance"], "req-1");
    }

    #[tokio::test]
    async fn internal_details_do_not_leak() {
        let id = HeaderValue::from_static("r");
        let region = RegionId::new("secret-region-7").unwrap();
        let resp = GatewayError::RegionNotLoaded(region).into_response(&id);
        let text = body_json(resp).await.to_string();
        assert!(!text.contains("secret-region-7"), "{text}");
    }

    /// Rate limiting is an error like any other: the error map alone makes the whole 429
    /// (problem body, `Retry-After`, `RateLimit-*`), as `ratelimit::too_many_requests` plus
    /// `ratelimit::insert_headers` made it before.
    #[tokio::test]
    async fn rate_limited_is_a_complete_429() {
        use crate::ratelimit::{Params, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET};
        let id = HeaderValue::from_static("req-429");
        let p = Params::new(100, std::time::Duration::from_secs(60));
        let decision = p.decide(false, 60_000_000_000);
        let err = GatewayError::RateLimited { decision };
        assert_eq!(err.kind(), "rate_limited");
        let resp = err.into_response(&id);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers();
        assert_eq!(h[RETRY_AFTER], "1");
        assert_eq!(h[RATELIMIT_LIMIT], "100");
        assert_eq!(h[RATELIMIT_REMAINING], "0");
        assert_eq!(h[RATELIMIT_RESET], "60");
        assert_eq!(h[REQUEST_ID], "req-429");
        assert_eq!(h[CONTENT_TYPE], "application/problem+json");
        let body = body_json(resp).await;
        assert_eq!(body["status"], 429);
        assert_eq!(body["title"], "Too Many Requests");
        assert_eq!(body["type"], "urn:residency:problem:rate_limited");
        assert_eq!(
            body["detail"],
            "the customer's request rate limit is exceeded; retry after the number of seconds in Retry-After"
        );
        assert_eq!(body["request_id"], "req-429");
    }

    #[tokio::test]
    async fn custom_domain_refusals_are_403_and_421_problems() {
        let id = HeaderValue::from_static("r");
        for (err, status, kind) in [
            (
                GatewayError::DomainTenantMismatch,
                StatusCode::FORBIDDEN,
                "domain_tenant_mismatch",
            ),
            (
                GatewayError::Misdirected,
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
            ),
        ] {
            let resp = err.into_response(&id);
            assert_eq!(resp.status(), status);
            let body = body_json(resp).await;
            assert_eq!(body["type"], format!("urn:residency:problem:{kind}"));
        }
    }

    #[test]
    fn no_upstream_carries_retry_after() {
        let id = HeaderValue::from_static("r");
        let resp = GatewayError::NoHealthyUpstream { retry_after: 3 }.into_response(&id);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
    }
}
