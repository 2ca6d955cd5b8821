//! Where an audit's input comes from: a deployment's `audit.toml`, a local stack's
//! `stack.json` (SPEC §4), and a TOML directory file ([`DirectoryFile`]).
//!
//! Every error is a [`ConfigError`] naming the file and the key, like every other config of
//! the project. Reading the Postgres directory is the caller's business (the CLI uses the
//! directory crate): this module only says where it is ([`DirectorySpec::Postgres`]).
//!
//! `audit.toml`:
//! ```toml
//! [directory]
//! source = "file"              # or: source = "postgres", url = "postgres://..."
//! path = "directory.toml"      # relative to this file
//!
//! [[regions]]
//! id = "eu"
//! display_name = "Europe"
//! location = "Frankfurt, DE"
//! auditor_database_url = "postgres://eu_auditor:...@db.eu.internal:5432/region_eu"
//! app_role = "eu_app"
//! upstreams = ["http://node.eu.internal:8080"]
//!
//! [gateway]                    # optional: routing evidence from the running gateway
//! admin_url = "http://gateway.internal:8480"
//! ca_cert = "ca.pem"           # for https URLs; the token comes from RESIDENCY__GATEWAY__ADMIN_TOKEN
//! ```
//! Values can be overridden from the environment (`RESIDENCY__DIRECTORY__URL=...`), as for
//! every config file of the project.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use residency_config::load::{resolve, EnvSource, Validate};
use residency_config::node::is_simple_identifier;
use residency_config::{ConfigError, Problem};
use residency_core::RegionId;
use residency_core::{DirectoryFile, TenantEntry};
use serde::Deserialize;

use crate::input::RegionInput;

/// Where the directory's tenants come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorySpec {
    /// A TOML file in the [`DirectoryFile`] format.
    File(PathBuf),
    /// The Postgres directory at this URL.
    Postgres(String),
}

/// `audit.toml`: the regions of a deployment and its directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// Where the directory is.
    pub directory: DirectoryConfig,
    /// The region databases to audit.
    pub regions: Vec<RegionConfig>,
    /// The running gateway, for routing evidence (optional).
    #[serde(default)]
    pub gateway: Option<GatewaySection>,
}

/// `[gateway]` of `audit.toml`: where routing evidence is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewaySection {
    /// The admin listener's base URL (its `/metrics`).
    pub admin_url: String,
    /// The admin bearer token (better set as `RESIDENCY__GATEWAY__ADMIN_TOKEN`).
    #[serde(default)]
    pub admin_token: String,
    /// CA certificate for `https` gateway and node URLs, relative to `audit.toml`.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// `[directory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum DirectoryConfig {
    /// A directory file.
    File {
        /// Path, relative to `audit.toml`.
        path: PathBuf,
    },
    /// The Postgres directory.
    Postgres {
        /// Connection URL (a read-only role is enough).
        url: String,
    },
}

/// `[[regions]]` of `audit.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region id.
    pub id: RegionId,
    /// Human name.
    #[serde(default)]
    pub display_name: String,
    /// Where the data lives.
    #[serde(default)]
    pub location: String,
    /// URL of the region database for its auditor role.
    pub auditor_database_url: String,
    /// The region's application role.
    pub app_role: String,
    /// The region's node URLs.
    #[serde(default)]
    pub upstreams: Vec<String>,
}

impl Validate for AuditConfig {
    fn resolve_paths(&mut self, base: &Path) {
        if let DirectoryConfig::File { path } = &mut self.directory {
            resolve(base, path);
        }
        if let Some(ca) = self.gateway.as_mut().and_then(|g| g.ca_cert.as_mut()) {
            resolve(base, ca);
        }
    }

    fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.regions.is_empty() {
            out.push(Problem::new("regions", "at least one region is required"));
        }
        let mut seen = HashSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            if !seen.insert(&r.id) {
                out.push(Problem::new(
                    format!("regions[{i}].id"),
                    format!("region {} is listed twice", r.id),
                ));
            }
            check_pg_url(
                &format!("regions[{i}].auditor_database_url"),
                &r.auditor_database_url,
                &mut out,
            );
            if !is_simple_identifier(&r.app_role) {
                out.push(Problem::new(
                    format!("regions[{i}].app_role"),
                    "must match [a-z_][a-z0-9_]{0,62}",
                ));
            }
        }
        match &self.directory {
            DirectoryConfig::File { path } => {
                if let Err(e) = std::fs::metadata(path) {
                    out.push(Problem::new(
                        "directory.path",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
            DirectoryConfig::Postgres { url } => check_pg_url("directory.url", url, &mut out),
        }
        if let Some(g) = &self.gateway {
            match url::Url::parse(&g.admin_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => out.push(Problem::new(
                    "gateway.admin_url",
                    "must be an http:// or https:// url",
                )),
            }
            if let Some(ca) = &g.ca_cert {
                if let Err(e) = std::fs::metadata(ca) {
                    out.push(Problem::new(
                        "gateway.ca_cert",
                        format!("cannot read {}: {e}", ca.display()),
                    ));
                }
            }
        }
        out
    }
}

fn check_pg_url(key: &str, url: &str, out: &mut Vec<Problem>) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && !u.username().is_empty() => {}
        Ok(_) => out.push(Problem::new(
            key,
            "must be a postgres:// url that names a user",
        )),
        Err(e) => out.push(Problem::new(key, format!("not a url: {e}"))),
    }
}

/// How to reach the running gateway and nodes for routing evidence (local stack only).
#[derive(Clone)]
pub struct GatewayAccess {
    /// The admin listener's base URL (serves `/metrics`).
    pub admin_url: String,
    /// The admin bearer token. Secret: not shown by `Debug`.
    pub admin_token: String,
    /// The CA certificate that signed the stack's TLS certificates, when the stack has one.
    pub ca_cert: Option<PathBuf>,
    /// How to call the region nodes directly when they serve (m)TLS (stack.json `node_tls`).
    pub node_tls: Option<NodeTlsFiles>,
}

/// The files to call (m)TLS region nodes with: the CA of their certificates and a client
/// certificate they accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTlsFiles {
    /// PEM CA certificate of the nodes' certificates.
    pub ca_cert: PathBuf,
    /// PEM client certificate chain.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`.
    pub client_key: PathBuf,
}

impl std::fmt::Debug for GatewayAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayAccess")
            .field("admin_url", &self.admin_url)
            .field("admin_token", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .field("node_tls", &self.node_tls)
            .finish()
    }
}

/// The audit's input as read from a file: regions, and where the directory is.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Regions to audit.
    pub regions: Vec<RegionInput>,
    /// Where the directory is, when the file says.
    pub directory: Option<DirectorySpec>,
    /// Regions for which no auditor URL was given and `database_url` (the owner role) is used:
    /// the owner is subject to FORCE RLS and will be reported as unable to count.
    pub owner_fallback: Vec<RegionId>,
    /// The running gateway, when the file says where it is.
    pub gateway: Option<GatewayAccess>,
}

/// Loads `audit.toml` with environment overrides from `env`.
///
/// # Errors
/// [`ConfigError`] naming the file and every offending key.
pub fn load_audit_config(path: &Path, env: &dyn EnvSource) -> Result<Loaded, ConfigError> {
    let cfg: AuditConfig = residency_config::load::load(path, env)?;
    let regions = cfg
        .regions
        .into_iter()
        .map(|r| RegionInput {
            id: r.id,
            display_name: r.display_name,
            location: r.location,
            auditor_url: r.auditor_database_url,
            app_role: r.app_role,
            upstreams: r.upstreams,
            routing: None,
        })
        .collect();
    let directory = Some(match cfg.directory {
        DirectoryConfig::File { path } => DirectorySpec::File(path),
        DirectoryConfig::Postgres { url } => DirectorySpec::Postgres(url),
    });
    Ok(Loaded {
        regions,
        directory,
        owner_fallback: Vec::new(),
        gateway: cfg.gateway.map(|g| GatewayAccess {
            admin_url: g.admin_url,
            admin_token: g.admin_token,
            ca_cert: g.ca_cert,
            node_tls: None,
        }),
    })
}

#[derive(Deserialize)]
struct StackFile {
    #[serde(default)]
    gateway: Option<StackGateway>,
    #[serde(default)]
    admin: Option<StackAdmin>,
    #[serde(default)]
    directory: Option<StackDirectory>,
    #[serde(default)]
    node_tls: Option<StackNodeTls>,
    regions: Vec<StackRegion>,
}

#[derive(Deserialize)]
struct StackNodeTls {
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

#[derive(Deserialize)]
struct StackGateway {
    #[serde(default)]
    ca_cert: Option<PathBuf>,
}

#[derive(Deserialize)]
struct StackAdmin {
    url: String,
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct StackDirectory {
    #[serde(default)]
    database_url: Option<String>,
}

#[derive(Deserialize)]
struct StackRegion {
    id: RegionId,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    node_url: Option<String>,
    #[serde(default)]
    database_url: Option<String>,
    #[serde(default)]
    app_database_url: Option<String>,
    #[serde(default)]
    auditor_database_url: Option<String>,
}

/// Reads the regions and the directory URL from a local stack's `stack.json`.
///
/// Per region, the auditor URL is `auditor_database_url`, else `database_url` (listed in
/// [`Loaded::owner_fallback`]); the app role is the user of `app_database_url`; the upstream is
/// `node_url`. Other fields of the file are ignored.
///
/// # Errors
/// [`ConfigError`] naming the file and the key.
pub fn load_stack(path: &Path) -> Result<Loaded, ConfigError> {
    let fail = |key: String, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem::new(key, message)],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(String::new(), format!("cannot read file: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let stack: StackFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        fail(key, format!("invalid stack file: {}", e.into_inner()))
    })?;
    let mut problems = Vec::new();
    let mut regions = Vec::new();
    let mut owner_fallback = Vec::new();
    for (i, r) in stack.regions.into_iter().enumerate() {
        let auditor = match (r.auditor_database_url, r.database_url) {
            (Some(a), _) => a,
            (None, Some(owner)) => {
                owner_fallback.push(r.id.clone());
                owner
            }
            (None, None) => {
                problems.push(Problem::new(
                    format!("regions[{i}].auditor_database_url"),
                    "missing (and no database_url to fall back to)",
                ));
                continue;
            }
        };
        let app_role = r
            .app_database_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.username().to_owned())
            .filter(|u| !u.is_empty());
        let Some(app_role) = app_role else {
            problems.push(Problem::new(
                format!("regions[{i}].app_database_url"),
                "missing, or not a postgres:// url naming the app role",
            ));
            continue;
        };
        regions.push(RegionInput {
            display_name: r.display_name.unwrap_or_default(),
            location: r.location.unwrap_or_default(),
            id: r.id,
            auditor_url: auditor,
            app_role,
            upstreams: r.node_url.into_iter().collect(),
            routing: None,
        });
    }
    if regions.is_empty() && problems.is_empty() {
        problems.push(Problem::new("regions", "no region listed"));
    }
    if !problems.is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            problems,
        });
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let rel = |mut p: PathBuf| {
        resolve(base, &mut p);
        p
    };
    let node_tls = stack.node_tls.map(|n| NodeTlsFiles {
        ca_cert: rel(n.ca_cert),
        client_cert: rel(n.client_cert),
        client_key: rel(n.client_key),
    });
    let gateway = stack.admin.map(|a| GatewayAccess {
        admin_url: a.url,
        admin_token: a.token,
        ca_cert: stack.gateway.and_then(|g| g.ca_cert).map(rel),
        node_tls,
    });
    Ok(Loaded {
        regions,
        directory: stack
            .directory
            .and_then(|d| d.database_url)
            .map(DirectorySpec::Postgres),
        owner_fallback,
        gateway,
    })
}

/// Reads the tenants of a TOML directory file.
///
/// # Errors
/// [`ConfigError`] naming the file and the key.
pub fn load_directory_file(path: &Path) -> Result<Vec<TenantEntry>, ConfigError> {
    let fail = |key: String, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem::new(key, message)],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(String::new(), format!("cannot read file: {e}")))?;
    let dir: DirectoryFile =
        residency_config::load::from_str(&text, &Vec::new()).map_err(|p| ConfigError {
            file: path.to_path_buf(),
            problems: vec![p],
        })?;
    Ok(dir.tenants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn stack_json_regions_and_fallback() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "stack.json",
            r#"{"gateway": {"url": "x", "ca_cert": "tls/ca.pem"}, "admin": {"url": "http://127.0.0.1:8480", "token": "t0k"},
                "directory": {"database_url": "postgres://d@h/dir"},
                "regions": [
                  {"id": "eu", "node_url": "https://127.0.0.1:8542", "database_url": "postgres://own:p@h/eu",
                   "app_database_url": "postgres://eu_app:p@h/eu", "auditor_database_url": "postgres://aud:p@h/eu",
                   "assertion": {}},
                  {"id": "us", "database_url": "postgres://own:p@h/us", "app_database_url": "postgres://us_app:p@h/us"}]}"#,
        );
        let l = load_stack(&p).unwrap();
        assert_eq!(l.regions.len(), 2);
        assert_eq!(l.regions[0].auditor_url, "postgres://aud:p@h/eu");
        assert_eq!(l.regions[0].app_role, "eu_app");
        assert_eq!(l.regions[0].upstreams, ["https://127.0.0.1:8542"]);
        assert_eq!(l.regions[1].auditor_url, "postgres://own:p@h/us");
        assert_eq!(l.owner_fallback, [RegionId::new("us").unwrap()]);
        assert_eq!(
            l.directory,
            Some(DirectorySpec::Postgres("postgres://d@h/dir".into()))
        );
        let g = l.gateway.unwrap();
        assert_eq!(g.node_tls, None);
        assert_eq!(g.admin_url, "http://127.0.0.1:8480");
        assert_eq!(g.ca_cert, Some(d.path().join("tls/ca.pem")));
        assert!(!format!("{g:?}").contains("t0k"));
    }

    #[test]
    fn stack_json_errors_name_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "stack.json",
            r#"{"regions": [{"id": "EU!", "database_url": "postgres://o@h/x"}]}"#,
        );
        let e = load_stack(&p).unwrap_err().to_string();
        assert!(
            e.contains("stack.json") && e.contains("regions[0].id"),
            "{e}"
        );
        let p = write(
            d.path(),
            "stack2.json",
            r#"{"regions": [{"id": "eu", "database_url": "postgres://o@h/x"}]}"#,
        );
        let e = load_stack(&p).unwrap_err().to_string();
        assert!(e.contains("regions[0].app_database_url"), "{e}");
    }

    #[test]
    fn audit_toml_is_validated_with_keys() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "directory.toml", "");
        let p = write(
            d.path(),
            "audit.toml",
            r#"[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
auditor_database_url = "postgres://aud:p@h/eu"
app_role = "eu_app"

[[regions]]
id = "eu"
auditor_database_url = "nope"
app_role = "Bad Role"
"#,
        );
        let e = load_audit_config(&p, &Vec::new()).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "regions[1].id",
                "regions[1].auditor_database_url",
                "regions[1].app_role"
            ],
            "{e}"
        );
        let p = write(
            d.path(),
            "ok.toml",
            r#"[directory]
source = "file"
path = "directory.toml"

[[regions]]
id = "eu"
location = "Frankfurt, DE"
auditor_database_url = "postgres://aud:p@h/eu"
app_role = "eu_app"
"#,
        );
        let l = load_audit_config(&p, &Vec::new()).unwrap();
        assert_eq!(
            l.directory,
            Some(DirectorySpec::File(d.path().join("directory.toml")))
        );
        assert_eq!(l.regions[0].location, "Frankfurt, DE");
    }

    #[test]
    fn directory_file_errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "directory.toml",
            "[[tenants]]\nid = \"not-a-uuid\"\nregion = \"eu\"\ntier = \"growth\"\nstatus = \"active\"\n",
        );
        let e = load_directory_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("directory.toml") && e.contains("tenants[0].id"),
            "{e}"
        );
    }
}
