//! Layered configuration loading: a TOML file, then `RESIDENCY__SECTION__KEY` environment
//! overrides, then typed deserialization and validation.
//!
//! Every problem is reported with the file and the dotted key it concerns, and validation
//! reports all problems at once so an operator fixes a file in one pass.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// The prefix of environment overrides: `RESIDENCY__DATABASE__POOL_SIZE=32` sets
/// `database.pool_size`.
pub(crate) const ENV_PREFIX: &str = "RESIDENCY__";

/// Where environment overrides come from. Tests pass a fixed list instead of touching the
/// process environment.
pub trait EnvSource {
    /// All `(name, value)` pairs visible to the loader.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl EnvSource for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// One configuration problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `database.pool_size` (empty for the whole file).
    pub key: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl Problem {
    /// Creates a problem for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A configuration file that could not be loaded or did not validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problems concern.
    pub file: PathBuf,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A config type that can check itself after deserialization and resolve relative paths.
pub trait Validate {
    /// Makes relative file paths relative to the directory of the config file.
    fn resolve_paths(&mut self, base: &Path);
    /// Every problem with the values (not the syntax), all at once.
    fn validate(&self) -> Vec<Problem>;
}

/// Loads `path`, applies environment overrides from `env`, deserializes and validates.
///
/// # Errors
/// [`ConfigError`] naming the file and each offending key.
pub fn load<T: DeserializeOwned + Validate>(
    path: &Path,
    env: &dyn EnvSource,
) -> Result<T, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(vec![Problem::new("", format!("cannot read file: {e}"))]))?;
    let mut cfg: T = from_str(&text, env).map_err(|p| fail(vec![p]))?;
    cfg.resolve_paths(path.parent().unwrap_or_else(|| Path::new(".")));
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(problems))
    }
}

/// Parses TOML text with environment overrides into `T`, without validation.
///
/// # Errors
/// The first syntax or type problem, with its key.
pub fn from_str<T: DeserializeOwned>(text: &str, env: &dyn EnvSource) -> Result<T, Problem> {
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().to_owned();
        Problem::new("", format!("invalid toml: {msg}"))
    })?;
    apply_env(&mut value, env)?;
    let de = toml::Value::Table(value);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        Problem::new(key, e.into_inner().to_string())
    })
}

fn apply_env(root: &mut toml::Table, env: &dyn EnvSource) -> Result<(), Problem> {
    let mut vars: Vec<_> = env
        .vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(Problem::new(name, "malformed override name"));
        }
        let mut table = &mut *root;
        for part in &path[..path.len() - 1] {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                Problem::new(
                    path.join("."),
                    format!("{name} overrides a value that is not a table"),
                )
            })?;
        }
        table.insert(path[path.len() - 1].clone(), env_value(&raw));
    }
    Ok(())
}

/// An override is read as a TOML scalar when it parses as one (`32`, `true`, `[1, 2]`),
/// otherwise as a plain string (`127.0.0.1:8080`, `eu`).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Adds a problem for `key` unless `path` can be read (its metadata, at least).
pub(crate) fn check_file(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if let Err(e) = std::fs::metadata(path) {
        out.push(Problem::new(
            key,
            format!("cannot read {}: {e}", path.display()),
        ));
    }
}

/// Adds a problem for `key` unless `url` is a `postgres://` URL that names its role; returns
/// the role. The parser's message does not echo the input, so no password leaks.
pub(crate) fn check_postgres_url(
    key: &str,
    url: &crate::Secret<crate::ConnectionUrl>,
    out: &mut Vec<Problem>,
) -> Option<String> {
    match url.expose().parse::<url::Url>() {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && !u.username().is_empty() => {
            Some(u.username().to_owned())
        }
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
            out.push(Problem::new(
                key,
                "must name its role (postgres://role@host/db)",
            ));
            None
        }
        Ok(_) => {
            out.push(Problem::new(key, "must be a postgres:// url"));
            None
        }
        Err(e) => {
            out.push(Problem::new(key, format!("not a url: {e}")));
            None
        }
    }
}

/// Resolves `p` against `base` when it is relative.
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// The value of `old`, an environment variable renamed to `new`, with the deprecation
/// warning to print on stderr, for the binaries that still honour the old name while `new`
/// is unset (clap reads `new` itself). `None` when `old` is unset or empty.
pub fn deprecated_var(env: &dyn EnvSource, old: &str, new: &str) -> Option<(String, String)> {
    let value = env
        .vars()
        .into_iter()
        .find_map(|(k, v)| (k == old && !v.is_empty()).then_some(v))?;
    let warning = format!("warning: {old} is deprecated and will be removed; set {new} instead");
    Some((value, warning))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        db: Db,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Db {
        pool_size: u32,
        url: String,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let s: Sample = from_str(
            "[db]\npool_size = 4\nurl = \"a\"\n",
            &env(&[
                ("RESIDENCY__DB__POOL_SIZE", "32"),
                ("RESIDENCY__DB__URL", "postgres://x@127.0.0.1:5432/db"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.db.pool_size, 32);
        assert_eq!(s.db.url, "postgres://x@127.0.0.1:5432/db");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err =
            from_str::<Sample>("[db]\npool_size = \"many\"\nurl = \"a\"\n", &env(&[])).unwrap_err();
        assert_eq!(err.key, "db.pool_size");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = from_str::<Sample>(
            "[db]\npool_size = 1\nurl = \"a\"\npoolsize = 2\n",
            &env(&[]),
        )
        .unwrap_err();
        assert!(err.message.contains("poolsize"), "{err:?}");
    }

    #[test]
    fn display_names_file_and_key() {
        let e = ConfigError {
            file: "node.toml".into(),
            problems: vec![Problem::new("db.url", "must not be empty")],
        };
        assert_eq!(e.to_string(), "node.toml: db.url: must not be empty");
    }

    #[test]
    fn a_deprecated_variable_is_read_with_a_warning_naming_its_successor() {
        let env = vec![
            ("OLD".to_owned(), "v".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        let (value, warning) = deprecated_var(&env, "OLD", "NEW").unwrap();
        assert_eq!(value, "v");
        assert!(
            warning.contains("OLD is deprecated") && warning.contains("NEW"),
            "{warning}"
        );
        assert_eq!(deprecated_var(&env, "EMPTY", "NEW"), None);
        assert_eq!(deprecated_var(&env, "UNSET", "NEW"), None);
    }
}
