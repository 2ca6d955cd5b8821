//! Configuration of the internal assertion's keys: `[[assertion.keys]]` entries (`kid`, `alg`,
//! `key_file`), their validation, and loading them into [`AssertionKey`]s. The assertion
//! itself (claims, mint, verify) is `residency_core::assertion`.

use std::path::{Path, PathBuf};

use residency_core::assertion::{
    is_supported_algorithm, AssertionError, AssertionKey, MIN_SECRET_BYTES,
};
use serde::Deserialize;

use crate::Problem;

/// How a key is configured: `[[assertion.keys]]` with `kid`, `alg`, `key_file`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssertionKeyConfig {
    /// Key id carried in the JWS header.
    pub kid: String,
    /// `HS256` (default), `HS384` or `HS512`.
    #[serde(default = "default_alg")]
    pub alg: String,
    /// File holding the raw secret bytes.
    pub key_file: PathBuf,
}

fn default_alg() -> String {
    "HS256".to_owned()
}

impl AssertionKeyConfig {
    /// Problems with this entry, keys prefixed with `prefix` (e.g. `assertion.keys[0]`).
    #[must_use]
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.kid.is_empty() || self.kid.len() > 64 {
            out.push(Problem::new(
                format!("{prefix}.kid"),
                "must be 1-64 characters",
            ));
        }
        if !is_supported_algorithm(&self.alg) {
            out.push(Problem::new(
                format!("{prefix}.alg"),
                format!(
                    "unsupported algorithm {:?}: internal assertions use HS256, HS384 or HS512",
                    self.alg
                ),
            ));
        }
        match std::fs::metadata(&self.key_file) {
            Ok(m) if (m.len() as usize) < MIN_SECRET_BYTES => out.push(Problem::new(
                format!("{prefix}.key_file"),
                format!(
                    "{} holds {} bytes; an assertion secret needs at least {MIN_SECRET_BYTES}",
                    self.key_file.display(),
                    m.len()
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Problem::new(
                format!("{prefix}.key_file"),
                format!("cannot read {}: {e}", self.key_file.display()),
            )),
        }
        out
    }

    /// Makes `key_file` relative to `base` when it is relative.
    pub fn resolve_paths(&mut self, base: &Path) {
        crate::load::resolve(base, &mut self.key_file);
    }

    /// Loads the key as configured.
    ///
    /// # Errors
    /// [`AssertionError::Key`] when the file cannot be read or the key is unusable.
    pub fn load(&self) -> Result<AssertionKey, AssertionError> {
        let secret = std::fs::read(&self.key_file).map_err(|e| {
            AssertionError::Key(format!("cannot read {}: {e}", self.key_file.display()))
        })?;
        AssertionKey::new(&self.kid, &self.alg, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_key_loads_and_a_bad_one_names_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), [7u8; 32]).unwrap();
        std::fs::write(dir.path().join("short"), [7u8; 8]).unwrap();
        let good = AssertionKeyConfig {
            kid: "eu-1".into(),
            alg: "HS384".into(),
            key_file: dir.path().join("k"),
        };
        assert!(good.validate("assertion.keys[0]").is_empty());
        assert_eq!(good.load().unwrap().kid(), "eu-1");
        let bad = AssertionKeyConfig {
            kid: String::new(),
            alg: "RS256".into(),
            key_file: dir.path().join("short"),
        };
        let keys: Vec<_> = bad
            .validate("assertion.keys[1]")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "assertion.keys[1].kid",
                "assertion.keys[1].alg",
                "assertion.keys[1].key_file"
            ]
        );
        assert!(matches!(bad.load(), Err(AssertionError::Key(_))));
        let missing = AssertionKeyConfig {
            key_file: dir.path().join("absent"),
            ..good
        };
        assert!(matches!(missing.load(), Err(AssertionError::Key(_))));
    }
}
