//! [`Secret<T>`]: the one wrapper for every secret a config holds (admin tokens, connection
//! URLs with passwords). Its `Debug` and `Display` never show the secret, so a config can be
//! logged or printed with `{:?}` safely; [`Secret::expose`] is the one way to the value, at
//! the place that hands it to a driver or compares it.

use std::fmt;

use serde::Deserialize;

/// How a secret value shows in `Debug`/`Display` output.
pub trait Redact {
    /// The value with everything secret masked.
    fn redacted(&self) -> String;
}

/// An opaque secret (a token): shows as `***`.
impl Redact for String {
    fn redacted(&self) -> String {
        "***".to_owned()
    }
}

/// A secret value. `Debug` and `Display` show it redacted by [`Redact`]; [`Secret::expose`]
/// returns it for the driver, never for a log.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value (validation happens with the rest of the config).
    #[must_use]
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself: pass it to a driver or compare it in constant time, never log it.
    #[must_use]
    pub const fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Redact> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.0.redacted())
    }
}

impl<T: Redact> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.redacted())
    }
}

/// A connection URL (Postgres, Redis) that may carry a password; redacted, it shows the URL
/// with the password replaced by `***` ([`crate::redact_url`]).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    /// Wraps a URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL including any password.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ConnectionUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionUrl({})", self.redacted())
    }
}

impl Redact for ConnectionUrl {
    fn redacted(&self) -> String {
        crate::redact_url(&self.0)
    }
}

impl Secret<ConnectionUrl> {
    /// A secret connection URL.
    #[must_use]
    pub fn url(url: impl Into<String>) -> Self {
        Self(ConnectionUrl::new(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show() {
        let t = Secret::new("0123456789abcdef-token".to_owned());
        assert_eq!(format!("{t:?}"), "Secret(***)");
        assert_eq!(format!("{t}"), "***");
        assert_eq!(t.expose(), "0123456789abcdef-token");
    }

    #[test]
    fn urls_show_without_their_password() {
        let u = Secret::url("postgres://app:pa55@db:5432/x");
        assert_eq!(format!("{u:?}"), "Secret(postgres://app:***@db:5432/x)");
        assert_eq!(format!("{u}"), "postgres://app:***@db:5432/x");
        assert_eq!(u.expose().as_str(), "postgres://app:pa55@db:5432/x");
        let unparsable = Secret::url("not a url with pa55");
        assert!(!format!("{unparsable:?}").contains("pa55"));
    }
}
