//! Keyset pagination over the shared cursor format ([`residency_http::page`]): `limit`
//! (default 50, max 500) and an opaque `cursor`; answers `{ "items": [...], "next_cursor": ... }`.

use residency_http::page::{self, PageError};
use serde::Deserialize;

use crate::error::ApiError;

fn refused(e: PageError) -> ApiError {
    match e {
        PageError::Limit => ApiError::invalid(e.field(), e.detail()),
        PageError::Cursor => ApiError::bad_request(format!("{}: {}", e.field(), e.detail())),
    }
}

/// The two pagination parameters, for lists without other filters. (Lists with filters
/// repeat `limit` and `cursor` as fields: `serde(flatten)` would lose number parsing.)
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug)]
pub(super) struct Page {
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
    pub(super) fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
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
    pub(super) fn from_query(q: &PageQuery) -> Result<Self, ApiError> {
        Self::new(q.limit, q.cursor.as_deref())
    }

    /// The cursor as a UUID (for id-keyed lists).
    ///
    /// # Errors
    /// 400 when the cursor does not hold a UUID.
    pub(super) fn after_uuid(&self) -> Result<Option<uuid::Uuid>, ApiError> {
        self.after
            .as_deref()
            .map(|s| uuid::Uuid::parse_str(s).map_err(|_| refused(PageError::Cursor)))
            .transpose()
    }

    /// `LIMIT` to query with: one more than the page, to know whether another page exists.
    #[must_use]
    pub(super) fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts rows fetched with [`Page::fetch`] down to the page and returns the next page's
    /// cursor (`None` on the last page); `key` gives a row's cursor key.
    pub(super) fn cut<R>(&self, rows: &mut Vec<R>, key: impl Fn(&R) -> String) -> Option<String> {
        let limit = u32::try_from(self.limit).unwrap_or(page::MAX_LIMIT);
        page::finish(rows, limit, key)
    }
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
        let mut rows = vec!["a", "b"];
        let cur = p.cut(&mut rows, |r| (*r).to_owned()).unwrap();
        assert_eq!(rows, ["a"]);
        assert_eq!(
            Page::new(None, Some(&cur)).unwrap().after.as_deref(),
            Some("a")
        );
        assert!(Page::new(None, Some("!!")).is_err());
        assert!(Page::new(None, Some("YWJj")).is_err());
        let mut last = vec!["a"];
        assert_eq!(p.cut(&mut last, |r| (*r).to_owned()), None);
    }
}
