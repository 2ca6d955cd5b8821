//! Request extractors that turn every malformed input into a problem naming the field: the
//! HTTP kit's [`Q`] and [`Body`], answered as [`ApiError`]s.

pub use residency_http::extract::{Body, Q};
use residency_http::extract::{BadInput, Rejects};
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

/// Parses a path id. A malformed id is reported exactly like a missing one.
///
/// # Errors
/// [`ApiError::NotFound`] naming `what`.
pub fn parse_id(raw: &str, what: &'static str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}
