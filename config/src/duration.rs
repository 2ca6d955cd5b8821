//! Human-friendly durations in config files: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a bare
//! integer meaning seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `"250ms"`, `"10s"`, `"2m"`, `"1h"` or `"10"` (seconds).
///
/// # Errors
/// A message naming the accepted forms when the text is not one of them.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected e.g. \"250ms\", \"10s\", \"2m\"")
    })?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!(
            "invalid duration unit {other:?} in {text:?}: use ms, s, m or h"
        )),
    }
}

/// Serde adapter: `#[serde(with = "crate::duration::serde_str")]`.
pub(crate) mod serde_str {
    use super::{parse, Deserialize, Deserializer, Duration};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    /// Deserializes a duration from a string (`"10s"`) or an integer number of seconds.
    ///
    /// # Errors
    /// When the value is neither form.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Duration::from_secs(n)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("ten").is_err());
        assert!(parse("10 fortnights").is_err());
    }
}
