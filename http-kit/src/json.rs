//! JSON request bodies: the content-type check and field-naming parse every JSON endpoint
//! shares; each service maps [`JsonError`] into its own error (400 for syntax, 422 naming the
//! field for shape).

use http::header::{HeaderMap, CONTENT_TYPE};
use serde::de::DeserializeOwned;

/// Whether the request declares a JSON body (`application/json` or any `+json` type).
#[must_use]
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|ct| {
            let ct = ct.trim();
            ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
        })
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (a 400); the parser's message.
    Syntax(String),
    /// JSON of the wrong shape (a 422): the dotted path of the field (`body` for the whole
    /// document) and what is wrong.
    Shape {
        /// The field.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

/// Parses JSON bytes into `T`, naming the field of a value of the wrong shape.
///
/// # Errors
/// [`JsonError::Syntax`] or [`JsonError::Shape`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            JsonError::Syntax(inner.to_string())
        } else {
            let field = if path == "." || path.is_empty() {
                "body".to_owned()
            } else {
                path
            };
            JsonError::Shape {
                field,
                detail: inner.to_string(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        owner: Owner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Owner {
        email: String,
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), json, "{ct}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(matches!(parse::<Body>(b"{"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse::<Body>(br#"{"owner": {"email": 1}}"#),
            Err(JsonError::Shape { field, .. }) if field == "owner.email"
        ));
        assert!(matches!(
            parse::<Body>(b"[]"),
            Err(JsonError::Shape { field, .. }) if field == "body"
        ));
        assert!(parse::<Body>(br#"{"owner": {"email": "a@b"}}"#).is_ok());
    }
}
