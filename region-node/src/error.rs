//! The one place where region-node errors become HTTP responses.
//!
//! Every error answers RFC 9457 `application/problem+json` through the shared
//! [`residency_http::Problem`]: `type` (`urn:residency:problem:<kind>`), `title`, `status`,
//! `detail`, `instance` and `request_id` (both the response's `x-request-id`), `field` for an
//! invalid field. Client text never carries SQL, constraint names, stack traces or
//! credentials; the full cause goes to the log (without secrets) for operators.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use residency_http::{Problem, RequestId};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The assertion is missing or invalid.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The assertion names another region.
    #[error("misdirected request")]
    Misdirected,
    /// The caller lacks a permission.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such resource for this tenant (also what another tenant's id looks like).
    #[error("not found")]
    NotFound(&'static str),
    /// Malformed request syntax (bad JSON, bad cursor).
    #[error("bad request: {detail}")]
    BadRequest {
        /// Human text naming the field.
        detail: String,
    },
    /// Well-formed but invalid: names the field.
    #[error("invalid field {field}: {detail}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// Conflicts with existing state (duplicate name, referenced row).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An offer that was valid once and is no longer (an expired ownership offer).
    #[error("expired: {0}")]
    Expired(String),
    /// Request body too large.
    #[error("payload too large")]
    PayloadTooLarge,
    /// Wrong content type.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The database is unreachable, saturated or timed out.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The source node of a move failed this target node's export call (client-safe text:
    /// the source's own problem detail, cut short, or a transport summary).
    #[error("move source: {0}")]
    Peer(String),
    /// A write to a tenant frozen for a move (its transaction is read-only).
    #[error("tenant moving")]
    TenantMoving,
    /// Anything else; details are logged, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// A 400 with `detail`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest {
            detail: detail.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Expired(_) => StatusCode::GONE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) | Self::TenantMoving => StatusCode::SERVICE_UNAVAILABLE,
            Self::Peer(_) => StatusCode::BAD_GATEWAY,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A bounded label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Misdirected => "misdirected",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { .. } => "bad_request",
            Self::Invalid { .. } => "invalid",
            Self::Conflict(_) => "conflict",
            Self::Expired(_) => "expired",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable(_) => "unavailable",
            Self::TenantMoving => "tenant_moving",
            Self::Peer(_) => "move_source_failed",
            Self::Unexpected(_) => "internal",
        }
    }

    /// The text a client may see (also the reason a workflow step failed with).
    pub(crate) fn client_detail(&self) -> String {
        match self {
            Self::Unauthenticated(why) => format!("gateway assertion {why}"),
            Self::Misdirected => "this request was routed to the wrong region".to_owned(),
            Self::Forbidden(why) => why.clone(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::BadRequest { detail } => detail.clone(),
            Self::Invalid { field, detail } => format!("{field}: {detail}"),
            Self::Conflict(why) | Self::Expired(why) => why.clone(),
            Self::PayloadTooLarge => "request body is too large".to_owned(),
            Self::UnsupportedMediaType => "request body must be application/json".to_owned(),
            Self::Unavailable(_) => "the region's database is unavailable, retry later".to_owned(),
            Self::Peer(why) => why.clone(),
            Self::TenantMoving => {
                "the customer is being moved to another region: writes are paused, reads go on; retry later"
                    .to_owned()
            }
            Self::Unexpected(_) => "an internal error occurred".to_owned(),
        }
    }
}

tokio::task_local! {
    /// Request id of the current request (scoped by [`crate::request_id::scope`]).
    pub(crate) static CURRENT_REQUEST_ID: RequestId;
}

/// The current request's id (a fresh one outside a request's scope).
#[must_use]
pub(crate) fn current_request_id() -> RequestId {
    CURRENT_REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_default()
}

impl ApiError {
    /// The problem this error is shown as (a 503 with `Retry-After: 2`).
    #[must_use]
    pub fn problem(&self) -> Problem {
        let p = Problem::new(self.status(), self.kind(), self.client_detail());
        match self {
            Self::Invalid { field, .. } => p.with_field(field.clone()),
            Self::Unavailable(_) | Self::TenantMoving => p.with_retry_after(2),
            _ => p,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unexpected(e) => tracing::error!(error = %e, kind = "internal", "request failed"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            other => tracing::debug!(kind = other.kind(), "request refused"),
        }
        metrics::counter!(crate::metrics::ERRORS, "kind" => self.kind()).increment(1);
        render(&self.problem())
    }
}

/// Renders `problem` as problem+json with the current request's id.
#[must_use]
pub fn render(problem: &Problem) -> Response {
    problem
        .render(current_request_id().header_value())
        .map(axum::body::Body::new)
}

/// The class-22 SQLSTATEs that client data causes (see [`from_db`]).
const CLIENT_DATA_EXCEPTIONS: [tokio_postgres::error::SqlState; 7] = [
    tokio_postgres::error::SqlState::STRING_DATA_RIGHT_TRUNCATION,
    tokio_postgres::error::SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    tokio_postgres::error::SqlState::INVALID_DATETIME_FORMAT,
    tokio_postgres::error::SqlState::DATETIME_FIELD_OVERFLOW,
    tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE,
    tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION,
    tokio_postgres::error::SqlState::UNTRANSLATABLE_CHARACTER,
];

/// Maps a database error to a client-safe error. Constraint names and messages stay in the
/// log: unique and foreign-key violations would otherwise reveal what another tenant has.
pub fn from_db(e: &tokio_postgres::Error) -> ApiError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return ApiError::Conflict(
                "a resource with the same unique value already exists".into(),
            );
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return ApiError::Conflict(
                "the request references a resource that does not exist or is still in use".into(),
            );
        }
        if *code == SqlState::CHECK_VIOLATION || *code == SqlState::NOT_NULL_VIOLATION {
            return ApiError::invalid("body", "a value is out of its allowed range");
        }
        // Data exceptions (class 22) that only a value the client sent can cause: a NUL in text
        // or `\u0000` in JSON, a string or number out of range, a malformed date or literal.
        // Not the whole class: a division by zero or a bad cast in our own SQL is our bug (500).
        if CLIENT_DATA_EXCEPTIONS.contains(code) {
            return ApiError::bad_request(
                "a value in the request cannot be stored (text must not contain NUL characters)",
            );
        }
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return ApiError::TenantMoving;
        }
        if *code == SqlState::QUERY_CANCELED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            return ApiError::Unavailable(code.code().to_owned());
        }
        return ApiError::Unexpected(anyhow::anyhow!(
            "database error {}: {}",
            code.code(),
            db.message()
        ));
    }
    if e.is_closed() {
        return ApiError::Unavailable("connection closed".into());
    }
    ApiError::Unavailable(format!("database i/o: {e}"))
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        from_db(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_use_the_shared_scheme_and_name_the_field() {
        let p = ApiError::invalid("steps[0].name", "must be 1-100 characters").problem();
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.type_uri(), "urn:residency:problem:invalid");
        assert_eq!(p.field.as_deref(), Some("steps[0].name"));
        let body = p.body("r-1");
        assert_eq!(body["instance"], "r-1");
        assert_eq!(body["request_id"], "r-1");
    }

    #[test]
    fn unavailable_asks_to_retry_and_hides_the_cause() {
        let p = ApiError::Unavailable("57P01 at 10.0.0.9".into()).problem();
        assert_eq!(p.headers[axum::http::header::RETRY_AFTER], "2");
        assert!(!p.detail.contains("10.0.0.9"), "{}", p.detail);
    }
}
