//! Admin API errors and the one place they become RFC 9457 problem+json.
//!
//! Handlers return [`AdminError`]; its `IntoResponse` only attaches a
//! [`residency_http::Problem`] to an empty response, and the outer middleware
//! ([`super::finish`]) renders the body once the request id is known, so every problem carries `request_id` equal to the response's `x-request-id`.
//! Problems about a client's input name the offending field in `field`.

use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;
use residency_directory::StoreError;
use residency_http::Problem;
use uuid::Uuid;

/// Everything that stops an admin request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// No admin token, a wrong one, or none configured.
    #[error("unauthorized")]
    Unauthorized(&'static str),
    /// Malformed input (syntax, ids, query parameters), naming the field.
    #[error("bad request: {field}: {detail}")]
    BadRequest {
        /// The field or parameter.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// Well-formed input with a value that is not acceptable, naming the field.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A rule forbids the operation (e.g. API keys on a tier without them).
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Bounded kind for the problem type.
        kind: &'static str,
        /// The rule.
        detail: String,
    },
    /// The request conflicts with the resource's state.
    #[error("conflict: {detail}")]
    Conflict {
        /// Bounded kind for the problem type.
        kind: &'static str,
        /// What conflicts, and what to do instead.
        detail: String,
        /// The field concerned, if any.
        field: Option<String>,
    },
    /// The body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body is larger than the admin limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The file directory is read-only.
    #[error("the admin api needs the postgres directory")]
    ReadOnlyDirectory,
    /// A dependency (directory database, home region node) cannot be reached now.
    #[error("unavailable: {detail}")]
    Unavailable {
        /// What is unavailable.
        detail: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
        /// The tenant the operation left behind, to retry with.
        tenant_id: Option<Uuid>,
    },
    /// The home region node answered an internal call (provisioning, a role check) with an
    /// error.
    #[error("bad gateway: {detail}")]
    BadGateway {
        /// The problem kind (`provisioning_failed`, `role_check_failed`).
        kind: &'static str,
        /// What the node did.
        detail: String,
        /// The tenant the operation left behind, to retry with.
        tenant_id: Option<Uuid>,
    },
    /// A gateway bug: logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    /// A 400 naming `field`.
    pub(crate) fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// A 422 naming `field`.
    pub(crate) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The problem this error is shown as.
    #[must_use]
    pub(crate) fn problem(&self) -> Problem {
        fn p(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Problem {
            Problem::new(status, kind, detail)
        }
        let tenant = |p: Problem, t: &Option<Uuid>| match t {
            Some(t) => p.with_member("tenant_id", t.to_string()),
            None => p,
        };
        match self {
            Self::Unauthorized(why) => p(StatusCode::UNAUTHORIZED, "unauthorized", *why)
                .with_header(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"residency-admin\""),
                ),
            Self::BadRequest { field, detail } => p(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{field}: {detail}"),
            )
            .with_field(field.clone()),
            Self::Invalid { field, detail } => p(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{field}: {detail}"),
            )
            .with_field(field.clone()),
            Self::NotFound(what) => p(StatusCode::NOT_FOUND, "not_found", format!("no such {what}")),
            Self::Forbidden { kind, detail } => p(StatusCode::FORBIDDEN, kind, detail.clone()),
            Self::Conflict {
                kind,
                detail,
                field,
            } => {
                let c = p(StatusCode::CONFLICT, kind, detail.clone());
                match field {
                    Some(f) => c.with_field(f.clone()),
                    None => c,
                }
            }
            Self::UnsupportedMediaType => p(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ),
            Self::PayloadTooLarge => p(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body exceeds the admin api's size limit",
            ),
            Self::ReadOnlyDirectory => p(
                StatusCode::NOT_IMPLEMENTED,
                "read_only_directory",
                "this gateway reads a directory file; the admin api needs directory.source = \"postgres\"",
            ),
            Self::Unavailable {
                detail,
                retry_after,
                tenant_id,
            } => tenant(
                p(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail.clone())
                    .with_retry_after(*retry_after),
                tenant_id,
            ),
            Self::BadGateway {
                kind,
                detail,
                tenant_id,
            } => tenant(p(StatusCode::BAD_GATEWAY, kind, detail.clone()), tenant_id),
            Self::Internal(_) => p(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the gateway could not handle the request",
            ),
        }
    }

    /// Attaches the tenant a failed multi-step operation left behind.
    #[must_use]
    pub(crate) fn for_tenant(self, id: Uuid) -> Self {
        match self {
            Self::Unavailable {
                detail,
                retry_after,
                ..
            } => Self::Unavailable {
                detail,
                retry_after,
                tenant_id: Some(id),
            },
            Self::BadGateway { kind, detail, .. } => Self::BadGateway {
                kind,
                detail,
                tenant_id: Some(id),
            },
            other => other,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("resource"),
            StoreError::Conflict(detail) => Self::Conflict {
                kind: "conflict",
                detail,
                field: None,
            },
            StoreError::Invalid { field, detail } => Self::invalid(field, detail),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "directory database unavailable");
                Self::Unavailable {
                    detail: "the directory database is not reachable; retry later".into(),
                    retry_after: 5,
                    tenant_id: None,
                }
            }
            StoreError::Unexpected(e) => Self::Internal(format!("{e:#}")),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "admin api internal error");
        }
        let problem = self.problem();
        let mut resp = problem.status.into_response();
        resp.extensions_mut().insert(problem);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn problems_name_the_field_and_carry_the_request_id() {
        let p = AdminError::invalid("region", "not configured").problem();
        let resp = p.render(&HeaderValue::from_static("req-7"));
        assert_eq!(resp.headers()["x-request-id"], "req-7");
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["field"], "region");
        assert_eq!(v["request_id"], "req-7");
        assert_eq!(v["instance"], "req-7");
        assert_eq!(v["type"], "urn:residency:problem:invalid_field");
        assert_eq!(v["status"], 422);
    }

    #[test]
    fn internal_details_are_not_shown() {
        let p = AdminError::Internal("pool at 10.0.0.3 exploded".into()).problem();
        assert!(!p.detail.contains("10.0.0.3"));
    }
}
