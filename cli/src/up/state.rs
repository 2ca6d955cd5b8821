//! `state.json` in the stack directory (mode `0600`): what a re-run must reuse but cannot read
//! back from anywhere else: the generated database passwords, and the plaintext of the demo
//! API keys (the directory stores only their hashes, and `stack.json` must show them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::material::{random_alnum, write_private, SECRET_CHARS};

/// The persisted state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct State {
    /// Role name → password.
    #[serde(default)]
    passwords: BTreeMap<String, String>,
    /// Demo tenant id → API key plaintext.
    #[serde(default)]
    api_keys: BTreeMap<Uuid, String>,
    #[serde(skip)]
    path: PathBuf,
}

impl State {
    /// Loads `<dir>/state.json`, or starts empty when it does not exist.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub(super) fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("state.json");
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is malformed; fix it or start over with --fresh",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        state.path = path;
        Ok(state)
    }

    /// The password of `role`, generated (and saved) on first use.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(super) fn password(&mut self, role: &str) -> anyhow::Result<String> {
        if let Some(p) = self.passwords.get(role) {
            return Ok(p.clone());
        }
        let p = random_alnum(SECRET_CHARS)?;
        self.passwords.insert(role.to_owned(), p.clone());
        self.save()?;
        Ok(p)
    }

    /// The saved demo API key of `tenant`.
    #[must_use]
    pub(super) fn api_key(&self, tenant: Uuid) -> Option<&str> {
        self.api_keys.get(&tenant).map(String::as_str)
    }

    /// Saves a demo API key at once: its plaintext exists nowhere else.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(super) fn set_api_key(&mut self, tenant: Uuid, key: String) -> anyhow::Result<()> {
        self.api_keys.insert(tenant, key);
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        write_private(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_keys_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::load(dir.path()).unwrap();
        let p = s.password("rs_eu_app").unwrap();
        assert_eq!(s.password("rs_eu_app").unwrap(), p);
        let t = Uuid::new_v4();
        s.set_api_key(t, "rk_x".into()).unwrap();
        let again = State::load(dir.path()).unwrap();
        assert_eq!(again.passwords.get("rs_eu_app"), Some(&p));
        assert_eq!(again.api_key(t), Some("rk_x"));
    }
}
