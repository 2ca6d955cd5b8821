//! The axum extractors shared by the region node's API and the gateway's admin API: a query
//! string ([`Q`]) and a JSON body ([`Body`]) that turn malformed input into the service's own
//! problem instead of axum's plain-text rejection.
//!
//! How a bad input looks is the service's choice (the node says `body is not valid json`, the
//! admin API names the field `query`), so the router's state says it: both extractors work
//! under a router whose state is `Arc<S>` with `S:` [`Rejects`].

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::response::IntoResponse;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::json::{self, JsonError};

/// Malformed input an extractor refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadInput {
    /// The query string does not fit the handler's type; axum's description of why.
    Query(String),
    /// A query parameter (its name, or `query` when the name itself is bad) whose value a
    /// service cannot store: today a NUL character (U+0000), which Postgres text cannot hold.
    QueryField {
        /// The parameter.
        field: String,
        /// Why it is refused.
        detail: String,
    },
    /// A body without a JSON content type (415).
    NotJson,
    /// A body over [`Rejects::max_body_bytes`] (413).
    TooLarge,
    /// A body that is not JSON (400) or JSON of the wrong shape (422).
    Json(JsonError),
}

/// The state of a router whose handlers use [`Q`] and [`Body`]: how a refused input is
/// answered, and the largest body.
pub trait Rejects: Send + Sync + 'static {
    /// The service's error type.
    type Rejection: IntoResponse;

    /// The error `bad` is answered with.
    fn reject(bad: BadInput) -> Self::Rejection;

    /// The largest JSON body accepted, in bytes.
    fn max_body_bytes(&self) -> usize;
}

/// Query parameters deserialized into `T`; a malformed query is refused with
/// [`BadInput::Query`].
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Rejects> FromRequestParts<Arc<S>> for Q<T> {
    type Rejection = S::Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<S>) -> Result<Self, Self::Rejection> {
        if let Some(field) = nul_parameter(&parts.uri) {
            return Err(S::reject(BadInput::QueryField {
                field,
                detail: "must not contain the NUL character (U+0000)".to_owned(),
            }));
        }
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Q(q.0))
            .map_err(|e| S::reject(BadInput::Query(e.body_text())))
    }
}

/// The name of the first query parameter whose name or value holds a NUL (`query` when it
/// is the name). In a URI a NUL can only be `%00`, so other queries pay one substring scan.
fn nul_parameter(uri: &http::Uri) -> Option<String> {
    if !uri.query()?.contains("%00") {
        return None;
    }
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?.0;
    pairs.into_iter().find_map(|(k, v)| {
        if k.contains('\0') {
            Some("query".to_owned())
        } else {
            v.contains('\0').then_some(k)
        }
    })
}

/// A JSON body deserialized into `T`: refused without a JSON content type, over the size
/// limit, when not JSON, and (naming the field) when of the wrong shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Rejects> FromRequest<Arc<S>> for Body<T> {
    type Rejection = S::Rejection;

    async fn from_request(req: Request, state: &Arc<S>) -> Result<Self, Self::Rejection> {
        if !json::is_json(req.headers()) {
            return Err(S::reject(BadInput::NotJson));
        }
        let bytes = axum::body::to_bytes(req.into_body(), state.max_body_bytes())
            .await
            .map_err(|_| S::reject(BadInput::TooLarge))?;
        json::parse(&bytes)
            .map(Body)
            .map_err(|e| S::reject(BadInput::Json(e)))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body as AxumBody;
    use axum::response::Response;
    use axum::routing::{get, post};
    use axum::Router;
    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A state that answers every refusal with 400 and its debug text.
    struct Echo;

    impl Rejects for Echo {
        type Rejection = (StatusCode, String);
        fn reject(bad: BadInput) -> Self::Rejection {
            (StatusCode::BAD_REQUEST, format!("{bad:?}"))
        }
        fn max_body_bytes(&self) -> usize {
            16
        }
    }

    #[derive(serde::Deserialize)]
    struct Params {
        n: u32,
    }

    fn app() -> Router {
        Router::new()
            .route("/q", get(|Q(p): Q<Params>| async move { p.n.to_string() }))
            .route(
                "/b",
                post(|Body(p): Body<Params>| async move { p.n.to_string() }),
            )
            .with_state(Arc::new(Echo))
    }

    async fn call(req: http::Request<AxumBody>) -> (StatusCode, String) {
        let resp: Response = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn get_q(q: &str) -> http::Request<AxumBody> {
        http::Request::get(format!("/q?{q}"))
            .body(AxumBody::empty())
            .unwrap()
    }

    fn post_b(content_type: &str, body: &'static str) -> http::Request<AxumBody> {
        http::Request::post("/b")
            .header(http::header::CONTENT_TYPE, content_type)
            .body(AxumBody::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_good_query_and_body_reach_the_handler() {
        assert_eq!(call(get_q("n=7")).await, (StatusCode::OK, "7".into()));
        let json = "application/json";
        assert_eq!(
            call(post_b(json, r#"{"n":8}"#)).await,
            (StatusCode::OK, "8".into())
        );
    }

    #[tokio::test]
    async fn every_bad_input_goes_to_the_states_rejection() {
        let (status, text) = call(get_q("n=x")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.starts_with("Query(") && text.contains('n'), "{text}");
        let json = "application/json";
        assert_eq!(call(post_b("text/plain", "{}")).await.1, "NotJson");
        assert_eq!(
            call(post_b(json, r#"{"n": 1,          "x": 1}"#)).await.1,
            "TooLarge"
        );
        assert!(call(post_b(json, "{")).await.1.starts_with("Json(Syntax("));
        let shape = call(post_b(json, r#"{"n":"a"}"#)).await.1;
        assert!(shape.starts_with("Json(Shape { field: \"n\""), "{shape}");
    }
}
