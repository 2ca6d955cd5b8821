//! Keyset pagination shared by every list: `limit` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and an opaque `cursor`; lists answer `{ "items": [...], "next_cursor": ... }`.
//!
//! A cursor is `base64url("c1." + key)` of the last item's key; the service maps
//! [`PageError`] into its own error (422 naming `limit`, 400 naming `cursor`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Default page size.
pub(crate) const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 500;

/// Why a page request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// `limit` is not a number from 1 to [`MAX_LIMIT`] (a 422 naming `limit`).
    Limit,
    /// `cursor` was not issued by this API (a 400 naming `cursor`).
    Cursor,
}

impl PageError {
    /// The parameter concerned.
    #[must_use]
    pub fn field(self) -> &'static str {
        match self {
            Self::Limit => "limit",
            Self::Cursor => "cursor",
        }
    }

    /// The client-facing explanation (without the field name).
    #[must_use]
    pub fn detail(self) -> String {
        match self {
            Self::Limit => format!("must be between 1 and {MAX_LIMIT}"),
            Self::Cursor => "not a cursor from this api".to_owned(),
        }
    }
}

/// A validated `limit` ([`DEFAULT_LIMIT`] when absent).
///
/// # Errors
/// [`PageError::Limit`] outside 1 to [`MAX_LIMIT`].
pub fn limit(raw: Option<u32>) -> Result<u32, PageError> {
    let limit = raw.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(PageError::Limit)
    }
}

/// A validated `limit` given as query text.
///
/// # Errors
/// [`PageError::Limit`] when not a number from 1 to [`MAX_LIMIT`].
pub fn limit_text(raw: Option<&str>) -> Result<u32, PageError> {
    raw.map(|r| r.parse::<u32>().map_err(|_| PageError::Limit))
        .transpose()
        .and_then(limit)
}

/// The cursor for the item with `key`.
#[must_use]
pub(crate) fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1.{key}"))
}

/// The key a cursor from [`encode_cursor`] holds.
///
/// # Errors
/// [`PageError::Cursor`] for anything else.
pub fn decode_cursor(cursor: &str) -> Result<String, PageError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("c1.").map(str::to_owned))
        .ok_or(PageError::Cursor)
}

/// The key of a cursor holding a UUID (id-keyed lists).
///
/// # Errors
/// [`PageError::Cursor`] when the cursor is not one of this API's or holds no UUID.
pub fn decode_uuid_cursor(cursor: &str) -> Result<uuid::Uuid, PageError> {
    decode_cursor(cursor).and_then(|k| uuid::Uuid::parse_str(&k).map_err(|_| PageError::Cursor))
}

/// Cuts rows fetched with `limit + 1` down to the page and returns the next page's cursor
/// (`None` on the last page); `key` gives a row's cursor key.
pub fn finish<T>(rows: &mut Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more {
        rows.last().map(|last| encode_cursor(&key(last)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some(0)), Err(PageError::Limit));
        assert_eq!(limit(Some(501)), Err(PageError::Limit));
        assert_eq!(limit(Some(500)), Ok(500));
        assert_eq!(limit_text(Some("7")), Ok(7));
        assert_eq!(limit_text(Some("x")), Err(PageError::Limit));
        assert_eq!(limit_text(Some("-1")), Err(PageError::Limit));
        assert_eq!(limit_text(None), Ok(DEFAULT_LIMIT));
    }

    #[test]
    fn cursor_roundtrip_and_garbage() {
        let mut rows = vec!["a", "b"];
        let next = finish(&mut rows, 1, |r| (*r).to_owned()).unwrap();
        assert_eq!(rows, ["a"]);
        assert_eq!(decode_cursor(&next).as_deref(), Ok("a"));
        assert_eq!(decode_cursor("!!"), Err(PageError::Cursor));
        assert_eq!(decode_cursor("YWJj"), Err(PageError::Cursor));
        assert_eq!(decode_uuid_cursor(&next), Err(PageError::Cursor));
        let id = uuid::Uuid::now_v7();
        assert_eq!(decode_uuid_cursor(&encode_cursor(&id.to_string())), Ok(id));
        let mut last = vec!["a"];
        assert_eq!(finish(&mut last, 1, |r| (*r).to_owned()), None);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every key survives the cursor round trip, and every page cut keeps the first
        /// `limit` rows and points at the last one kept exactly when more rows exist.
        #[test]
        fn cursors_round_trip_any_key_and_pages_cut_right(
            key in any::<String>(),
            rows in proptest::collection::vec(any::<String>(), 0..30),
            limit in 1u32..20,
        ) {
            prop_assert_eq!(decode_cursor(&encode_cursor(&key)), Ok(key));
            let mut page = rows.clone();
            let next = finish(&mut page, limit, Clone::clone);
            let kept = rows.len().min(limit as usize);
            prop_assert_eq!(&page[..], &rows[..kept]);
            match next {
                Some(c) => {
                    prop_assert!(rows.len() > limit as usize);
                    prop_assert_eq!(decode_cursor(&c), Ok(rows[kept - 1].clone()));
                }
                None => prop_assert!(rows.len() <= limit as usize),
            }
        }

        /// Arbitrary text is either a cursor of this API or refused; never a panic, never a
        /// UUID out of something that does not hold one.
        #[test]
        fn any_text_decodes_or_is_refused(text in any::<String>()) {
            if let Ok(key) = decode_cursor(&text) {
                prop_assert_eq!(encode_cursor(&key), text.clone());
            }
            if let Ok(id) = decode_uuid_cursor(&text) {
                prop_assert_eq!(decode_cursor(&text), Ok(id.to_string()));
            }
        }
    }
}
