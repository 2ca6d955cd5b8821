//! Request extractors that turn every malformed input into a problem naming the field: the
//! HTTP kit's [`Q`] and [`Body`], answered as [`ApiError`]s.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use residency_http::extract::{BadInput, Rejects};
pub use residency_http::extract::{Body, Q};
use residency_http::json::{self, JsonError};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A malformed query is a 400 with axum's text; a body is 415 without a JSON content type,
/// 413 over `node.max_body_bytes`, 400 for invalid JSON, 422 naming the field for a value of
/// the wrong shape.
impl Rejects for AppState {
    type Rejection = ApiError;

    fn reject(bad: BadInput) -> ApiError {
        match bad {
            BadInput::Query(why) => ApiError::bad_request(why),
            BadInput::QueryField { field, detail } => ApiError::invalid(field, detail),
            BadInput::NotJson => ApiError::UnsupportedMediaType,
            BadInput::TooLarge => ApiError::PayloadTooLarge,
            BadInput::Json(e) => from_json(e),
        }
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// Parses JSON bytes into `T` with field-naming errors.
///
/// # Errors
/// 400 for syntax, 422 naming the field for shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    json::parse(bytes).map_err(from_json)
}

fn from_json(e: JsonError) -> ApiError {
    match e {
        JsonError::Syntax(why) => ApiError::bad_request(format!("body is not valid json ({why})")),
        JsonError::Shape { field, detail } => ApiError::invalid(field, detail),
    }
}

/// Path parameters; one that does not decode (not UTF-8 once percent-decoded) is a 400, as
/// problem+json like every other refusal.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|_| ApiError::bad_request("the path is not valid utf-8 once percent-decoded"))
    }
}

/// Parses a path id. A malformed id is reported exactly like a missing one.
///
/// # Errors
/// [`ApiError::NotFound`] naming `what`.
pub(crate) fn parse_id(raw: &str, what: &'static str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn problem(bad: BadInput) -> residency_http::Problem {
        <AppState as Rejects>::reject(bad).problem()
    }

    #[test]
    fn bad_input_is_answered_as_before_the_kit() {
        let q = problem(BadInput::Query("unknown field `x`".into()));
        assert_eq!(
            (q.status, q.kind, q.detail.as_str(), q.field.as_deref()),
            (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "unknown field `x`",
                None
            )
        );
        let p = problem(BadInput::NotJson);
        assert_eq!(
            (p.status, p.kind),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        let p = problem(BadInput::TooLarge);
        assert_eq!(
            (p.status, p.kind),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        let p = problem(BadInput::Json(JsonError::Syntax("eof".into())));
        assert_eq!(
            (p.status, p.detail.as_str()),
            (StatusCode::BAD_REQUEST, "body is not valid json (eof)")
        );
        let p = problem(BadInput::Json(JsonError::Shape {
            field: "name".into(),
            detail: "expected a string".into(),
        }));
        assert_eq!(
            (p.status, p.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
        );
    }
}
