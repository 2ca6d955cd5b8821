//! Request extractors that turn every malformed input into a problem naming the field.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use residency_http::json::{self, JsonError};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body: 415 without a JSON content type, 413 over the size limit, 400 for invalid
/// JSON, 422 naming the field for a value of the wrong shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if !json::is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(req.into_body(), state.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        parse_json(&bytes).map(Body)
    }
}

/// Parses JSON bytes into `T` with field-naming errors.
///
/// # Errors
/// 400 for syntax, 422 naming the field for shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    json::parse(bytes).map_err(|e| match e {
        JsonError::Syntax(why) => ApiError::bad_request(format!("body is not valid json ({why})")),
        JsonError::Shape { field, detail } => ApiError::invalid(field, detail),
    })
}

/// Query parameters; a malformed query is a 400 naming the parameter.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
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
pub fn parse_id(raw: &str, what: &'static str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}
