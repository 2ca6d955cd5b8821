//! Keyset pagination over the shared cursor format ([`residency_http::page`]): `limit`
//! (default 50, max 500) and an opaque `cursor`; answers `{ "items": [...], "next_cursor": ... }`.

use residency_http::page::{self, PageError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

fn refused(e: PageError) -> ApiError {
    match e {
        PageError::Limit => ApiError::invalid(e.field(), e.detail()),
        PageError::Cursor => ApiError::bad_request(format!("{}: {}", e.field(), e.detail())),
    }
}

/// The two pagination parameters, for lists without other filters. (Lists with filters
/// repeat `limit` and `cursor` as fields: `serde(flatten)` would lose number parsing.)
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// Page size.
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug)]
pub struct Page {
    /// Rows to return.
    pub limit: i64,
    /// Key after which to continue, if any.
    pub after: Option<String>,
}

impl Page {
    /// Validates `limit` and decodes `cursor`.
    ///
    /// # Errors
    /// 422 naming `limit`, or 400 naming `cursor`.
    pub fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = page::limit(limit).map_err(refused)?;
        let after = cursor
            .map(page::decode_cursor)
            .transpose()
            .map_err(refused)?;
        Ok(Self {
            limit: i64::from(limit),
            after,
        })
    }

    /// Builds a page from a query's parameters.
    ///
    /// # Errors
    /// As [`Page::new`].
    pub fn from_query(q: &PageQuery) -> Result<Self, ApiError> {
        Self::new(q.limit, q.cursor.as_deref())
    }

    /// The cursor as a UUID (for id-keyed lists).
    ///
    /// # Errors
    /// 400 when the cursor does not hold a UUID.
    pub fn after_uuid(&self) -> Result<Option<uuid::Uuid>, ApiError> {
        self.after
            .as_deref()
            .map(|s| uuid::Uuid::parse_str(s).map_err(|_| refused(PageError::Cursor)))
            .transpose()
    }

    /// `LIMIT` to query with: one more than the page, to know whether another page exists.
    #[must_use]
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Wraps rows fetched with [`Page::fetch`] into the list answer; `key` gives a row's
    /// cursor key.
    #[must_use]
    pub fn finish(&self, mut items: Vec<Value>, key: impl Fn(&Value) -> String) -> Value {
        let limit = u32::try_from(self.limit).unwrap_or(page::MAX_LIMIT);
        let next = page::finish(&mut items, limit, key);
        json!({ "items": items, "next_cursor": next })
    }
}

/// The cursor key of an item with an `id` field.
#[must_use]
pub fn by_id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(Page::new(None, None).unwrap().limit, 50);
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(Some(501), None).is_err());
        assert!(Page::new(Some(500), None).is_ok());
    }

    #[test]
    fn cursor_roundtrip_and_garbage() {
        let p = Page::new(Some(1), None).unwrap();
        let out = p.finish(vec![json!({"id": "a"}), json!({"id": "b"})], by_id);
        assert_eq!(out["items"].as_array().unwrap().len(), 1);
        let cur = out["next_cursor"].as_str().unwrap();
        assert_eq!(
            Page::new(None, Some(cur)).unwrap().after.as_deref(),
            Some("a")
        );
        assert!(Page::new(None, Some("!!")).is_err());
        assert!(Page::new(None, Some("YWJj")).is_err());
        let last = p.finish(vec![json!({"id": "a"})], by_id);
        assert!(last["next_cursor"].is_null());
    }
}
