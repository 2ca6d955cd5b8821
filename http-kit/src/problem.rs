//! RFC 9457 problem details: the one error body of every Residency service.
//!
//! Every problem has `type` (`urn:residency:problem:<kind>`), `title` (the status's reason
//! phrase), `status`, `detail` (client-safe text), and `instance` and `request_id`, both the
//! response's `x-request-id`; `field` names the offending input when there is one, and a
//! service may add members of its own (`tenant_id`). Headers that belong to the error
//! (`Retry-After`, `WWW-Authenticate`) travel with it.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;
use residency_core::wire::ProblemDetails;
use serde_json::{Map, Value};

use crate::request_id;

/// The problem media type.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Every problem `type` is this prefix followed by the problem's kind.
pub(crate) const TYPE_PREFIX: &str = "urn:residency:problem:";

/// An error as the client sees it, waiting for its request id to be rendered.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Status.
    pub status: StatusCode,
    /// A bounded label: the last segment of `type`, and the metrics label.
    pub kind: &'static str,
    /// Client-safe explanation: no SQL, addresses, tokens or library errors.
    pub detail: String,
    /// The input field concerned, if any.
    pub field: Option<String>,
    /// Further members of the body (e.g. `tenant_id`), after the standard ones.
    pub extra: Map<String, Value>,
    /// Headers the error sets on the response (`Retry-After`, `WWW-Authenticate`).
    pub headers: HeaderMap,
}

impl Problem {
    /// A problem with `status`, `kind` and `detail`.
    #[must_use]
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            field: None,
            extra: Map::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Names the offending input field.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Adds a body member of this service's own.
    #[must_use]
    pub fn with_member(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Sets `Retry-After` (seconds).
    #[must_use]
    pub fn with_retry_after(self, secs: u64) -> Self {
        self.with_header(RETRY_AFTER, HeaderValue::from(secs))
    }

    /// Sets a response header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The `type` URI.
    #[must_use]
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.kind)
    }

    /// The `title`: the status's reason phrase.
    #[must_use]
    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("error")
    }

    /// The body, with `request_id` as `instance` and `request_id`: the wire shape
    /// [`ProblemDetails`]. Extra members never replace standard ones.
    #[must_use]
    pub fn details(&self, request_id: &str) -> ProblemDetails {
        const STANDARD: [&str; 7] = [
            "type",
            "title",
            "status",
            "detail",
            "instance",
            "request_id",
            "field",
        ];
        ProblemDetails {
            type_uri: self.type_uri(),
            title: self.title().to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance: request_id.to_owned(),
            request_id: request_id.to_owned(),
            field: self.field.clone(),
            extra: self
                .extra
                .iter()
                .filter(|(k, _)| !STANDARD.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The body as JSON ([`Problem::details`]).
    #[must_use]
    pub fn body(&self, request_id: &str) -> Value {
        serde_json::to_value(self.details(request_id)).unwrap_or(Value::Null)
    }

    /// The problem+json response: the body, `content-type`, this problem's headers and
    /// `x-request-id`. `request_id` is a validated or generated id ([`crate::RequestId`]).
    #[must_use]
    pub fn render(&self, request_id: &HeaderValue) -> Response<Full<Bytes>> {
        let id = request_id.to_str().unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(self.body(id).to_string())));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        for (name, value) in &self.headers {
            h.insert(name, value.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(request_id::HEADER, request_id.clone());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::WWW_AUTHENTICATE;
    use http_body_util::BodyExt;

    async fn json(resp: Response<Full<Bytes>>) -> Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn renders_every_standard_member_with_the_request_id() {
        let id = HeaderValue::from_static("req-1");
        let resp = Problem::new(StatusCode::NOT_FOUND, "not_found", "no such tenant").render(&id);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(resp.headers()[request_id::HEADER], "req-1");
        let body = json(resp).await;
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:residency:problem:not_found",
                "title": "Not Found",
                "status": 404,
                "detail": "no such tenant",
                "instance": "req-1",
                "request_id": "req-1",
            })
        );
    }

    #[test]
    fn the_documented_shape_is_what_body_renders() {
        let p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "name: too long",
        )
        .with_field("name");
        let doc: residency_core::wire::ProblemDetails =
            serde_json::from_value(p.body("r-1")).unwrap();
        assert_eq!(
            doc,
            residency_core::wire::ProblemDetails {
                type_uri: "urn:residency:problem:invalid".into(),
                title: "Unprocessable Entity".into(),
                status: 422,
                detail: "name: too long".into(),
                instance: "r-1".into(),
                request_id: "r-1".into(),
                field: Some("name".into()),
                extra: Default::default(),
            }
        );
        assert_eq!(serde_json::to_value(&doc).unwrap(), p.body("r-1"));
    }

    #[tokio::test]
    async fn field_members_and_headers() {
        let id = HeaderValue::from_static("r");
        let resp = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "later")
            .with_field("region")
            .with_member("tenant_id", "t-1")
            .with_member("request_id", "spoofed")
            .with_retry_after(5)
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .render(&id);
        assert_eq!(resp.headers()[RETRY_AFTER], "5");
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer");
        let body = json(resp).await;
        assert_eq!(body["field"], "region");
        assert_eq!(body["tenant_id"], "t-1");
        assert_eq!(
            body["request_id"], "r",
            "extra members never replace standard ones"
        );
    }
}
