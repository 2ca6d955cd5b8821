//! JSON request bodies: the content-type check and field-naming parse every JSON endpoint
//! shares; each service maps [`JsonError`] into its own error (400 for syntax, 422 naming the
//! field for shape).

#[cfg(any(feature = "axum", test))]
use http::header::{HeaderMap, CONTENT_TYPE};
use serde::de::DeserializeOwned;

/// Whether the request declares a JSON body (`application/json` or any `+json` type).
#[must_use]
#[cfg(any(feature = "axum", test))]
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
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
/// A body with U+0000 in any string or member name, used or not, is refused as a
/// [`JsonError::Shape`] naming where it is: Postgres `text` and `jsonb` cannot hold it. A
/// top-level array is refused too (every request body is an object, or `null` where one is
/// optional): serde's derived structs would otherwise read `[null, null]` as a struct.
///
/// # Errors
/// [`JsonError::Syntax`] or [`JsonError::Shape`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(JsonError::Shape {
            field: "body".to_owned(),
            detail: "must be a JSON object".to_owned(),
        });
    }
    let value = parse_typed(bytes)?;
    // In valid JSON a NUL can only be the escape `\u0000`; only a body holding that text
    // (maybe as an escaped backslash followed by `u0000`) is parsed a second time.
    if bytes.windows(6).any(|w| w == b"\\u0000") {
        let tree: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
        if let Some(at) = nul_at(&tree, "") {
            return Err(JsonError::Shape {
                field: if at.is_empty() { "body".to_owned() } else { at },
                detail: "must not contain the NUL character (U+0000)".to_owned(),
            });
        }
    }
    Ok(value)
}

/// Where the first NUL is, as a dotted path (`a.b[0].c`; a member name with a NUL names
/// its object); `at` is the path of `v`.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Some(at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{at}[{i}]"))),
        Value::Object(members) => members.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(at.to_owned())
            } else if at.is_empty() {
                nul_at(x, k)
            } else {
                nul_at(x, &format!("{at}.{k}"))
            }
        }),
        _ => None,
    }
}

fn parse_typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
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

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Patch {
        name: Option<String>,
        enabled: Option<bool>,
    }

    #[test]
    fn a_body_is_an_object_never_an_array() {
        // serde's derived structs also read the sequence form: `[null, null]` would be a
        // valid, empty patch (schemathesis found PATCH /v1/workflows/{id} answering 200).
        for text in ["[null, null]", " [ ]", "[\"x\", true]"] {
            assert_eq!(
                parse::<Patch>(text.as_bytes()).unwrap_err(),
                JsonError::Shape {
                    field: "body".into(),
                    detail: "must be a JSON object".into()
                },
                "{text}"
            );
        }
        assert!(parse::<Patch>(br#"{"name": null}"#).is_ok());
        assert!(parse::<Option<Patch>>(b"null").unwrap().is_none());
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

    fn nul_field(body: &[u8]) -> Option<String> {
        match parse::<serde_json::Value>(body) {
            Err(JsonError::Shape { field, .. }) => Some(field),
            Ok(_) => None,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_nul_anywhere_is_refused_naming_where() {
        assert_eq!(nul_field(br#""\u0000""#).as_deref(), Some("body"));
        assert_eq!(nul_field(br#"{"a\u0000": 1}"#).as_deref(), Some("body"));
        assert_eq!(
            nul_field(br#"{"a": {"b": [1, {"c": "x\u0000"}]}}"#).as_deref(),
            Some("a.b[1].c")
        );
        assert_eq!(nul_field(br#"{"a": {"k\u0000": 1}}"#).as_deref(), Some("a"));
        // An escaped backslash followed by `u0000` is text, not a NUL.
        assert_eq!(nul_field(br#"{"a": "\\u0000"}"#), None);
        assert_eq!(nul_field(br#"{"a": "\u0001"}"#), None);
        // The shape error of the typed parse comes first; syntax stays a syntax error.
        assert!(matches!(
            parse::<Body>(br#"{"owner": {"email": 1}, "x": "\u0000"}"#),
            Err(JsonError::Shape { field, .. }) if field == "owner.email"
        ));
        assert!(matches!(
            parse::<Body>(br#"{"owner": {"email": "a@b"}, "x": "\u0000"}"#),
            Err(JsonError::Shape { field, .. }) if field == "x"
        ));
        assert!(matches!(
            parse::<serde_json::Value>(b"\"\\u0000"),
            Err(JsonError::Syntax(_))
        ));
    }
}
