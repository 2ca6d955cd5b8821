//! `[[issuers]]`: the identity providers whose JWTs are accepted.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::load::check_file;
use crate::Problem;

/// The most clock skew an issuer's `leeway` may tolerate.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// The shortest allowed pause between two JWKS fetches triggered by unknown `kid`s.
pub(crate) const MIN_JWKS_COOLDOWN: Duration = Duration::from_secs(30);

/// Algorithms an external issuer may be configured with: asymmetric only, so a key published
/// in a JWKS can never be used as an HMAC secret.
pub(crate) const EXTERNAL_ALGORITHMS: &[&str] = &[
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];

/// `[[issuers]]`: one identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` claim of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// A JWKS document on disk, read once at start.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document over HTTP, refreshed in the background.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted `alg` values, from [`EXTERNAL_ALGORITHMS`].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, at most [`MAX_LEEWAY`].
    #[serde(default = "default_leeway", with = "crate::duration::serde_str")]
    pub leeway: Duration,
    /// How often a `jwks_url` is refetched in the background.
    #[serde(default = "default_jwks_refresh", with = "crate::duration::serde_str")]
    pub jwks_refresh: Duration,
    /// The least time between two fetches caused by unknown `kid`s, at least
    /// [`MIN_JWKS_COOLDOWN`].
    #[serde(default = "default_jwks_cooldown", with = "crate::duration::serde_str")]
    pub jwks_cooldown: Duration,
    /// Timeout of one JWKS fetch.
    #[serde(default = "default_jwks_timeout", with = "crate::duration::serde_str")]
    pub jwks_timeout: Duration,
}

fn default_algorithms() -> Vec<String> {
    vec!["ES256".to_owned()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(5)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_cooldown() -> Duration {
    MIN_JWKS_COOLDOWN
}
fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Every problem of `[[issuers]]`: at least one, each valid, no issuer twice.
pub(super) fn validate(issuers: &[IssuerConfig]) -> Vec<Problem> {
    let mut out = Vec::new();
    if issuers.is_empty() {
        out.push(Problem::new("issuers", "at least one issuer is required"));
    }
    for (i, iss) in issuers.iter().enumerate() {
        out.extend(iss.validate(&format!("issuers[{i}]")));
        if issuers[..i].iter().any(|o| o.issuer == iss.issuer) {
            out.push(Problem::new(
                format!("issuers[{i}].issuer"),
                format!("issuer {:?} is configured twice", iss.issuer),
            ));
        }
    }
    out
}

impl IssuerConfig {
    /// Every problem of one issuer, keyed under `prefix` (`issuers[i]`).
    fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.issuer.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.issuer"),
                "must not be empty",
            ));
        }
        if self.audience.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.audience"),
                "must not be empty",
            ));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(f), None) => check_file(&format!("{prefix}.jwks_file"), f, &mut out),
            (None, Some(u)) => match url::Url::parse(u) {
                Ok(u) if u.scheme() == "http" && u.host().is_some() => {}
                Ok(u) if u.scheme() == "https" => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    "https jwks urls are not built yet; use http on a trusted network or jwks_file",
                )),
                Ok(_) => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    "must be an http url with a host",
                )),
                Err(e) => out.push(Problem::new(
                    format!("{prefix}.jwks_url"),
                    format!("not a url: {e}"),
                )),
            },
            _ => out.push(Problem::new(
                format!("{prefix}.jwks_file"),
                "set exactly one of jwks_file and jwks_url",
            )),
        }
        if self.algorithms.is_empty() {
            out.push(Problem::new(
                format!("{prefix}.algorithms"),
                "at least one algorithm is required",
            ));
        }
        for (j, alg) in self.algorithms.iter().enumerate() {
            if !EXTERNAL_ALGORITHMS.contains(&alg.as_str()) {
                out.push(Problem::new(
                    format!("{prefix}.algorithms[{j}]"),
                    format!(
                        "{alg:?} is not accepted; use one of {}",
                        EXTERNAL_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if self.leeway > MAX_LEEWAY {
            out.push(Problem::new(
                format!("{prefix}.leeway"),
                "must be at most 30s",
            ));
        }
        if self.jwks_cooldown < MIN_JWKS_COOLDOWN {
            out.push(Problem::new(
                format!("{prefix}.jwks_cooldown"),
                "must be at least 30s",
            ));
        }
        if self.jwks_refresh < self.jwks_cooldown {
            out.push(Problem::new(
                format!("{prefix}.jwks_refresh"),
                "must be at least jwks_cooldown",
            ));
        }
        if self.jwks_timeout.is_zero() {
            out.push(Problem::new(
                format!("{prefix}.jwks_timeout"),
                "must be greater than 0",
            ));
        }
        out
    }
}
