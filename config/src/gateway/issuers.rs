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
    /// A JWKS document on disk, read at start and again on an unknown `kid`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document over https (plain http only for a loopback host), refreshed in the
    /// background. With neither `jwks_file` nor `jwks_url`, the keys are found by OpenID
    /// Connect discovery from the issuer URL ([`IssuerConfig::discovery_url`]).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM file of the CA certificates trusted for the https fetches of this issuer (JWKS and
    /// discovery). Without it, the platform's root certificates are trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accepted `alg` values, from [`EXTERNAL_ALGORITHMS`].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, at most [`MAX_LEEWAY`].
    #[serde(default = "default_leeway", with = "crate::duration::serde_str")]
    pub leeway: Duration,
    /// How often remote keys are refetched in the background, and the longest a response's
    /// `Cache-Control: max-age` is honoured: a shorter `max-age` refetches sooner, down to
    /// `jwks_cooldown`.
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

/// Whether `url`'s host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`): the only
/// hosts whose keys may be fetched over plain http.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks a URL keys are fetched from: https with a host, or plain http to a loopback host.
///
/// # Errors
/// Why the URL is refused, as a sentence for a config problem or a fetch error.
pub fn check_remote_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a url: {e}"))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(
            "plain http is allowed only for a loopback host (a local dev IdP); use https".into(),
        ),
        _ => Err("must be an https url with a host".into()),
    }
}

/// Checks that `issuer` can be discovered: a remote URL ([`check_remote_url`]) without query
/// or fragment.
fn check_discovery_issuer(issuer: &str) -> Result<(), String> {
    let url = check_remote_url(issuer).map_err(|why| format!("is refused: {why}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
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
    /// The OpenID Connect discovery document of an issuer configured without `jwks_file` and
    /// `jwks_url`: `<issuer without trailing slash>/.well-known/openid-configuration`
    /// (OpenID Connect Discovery 1.0, section 4). `None` when a key source is configured.
    #[must_use]
    pub fn discovery_url(&self) -> Option<String> {
        if self.jwks_file.is_some() || self.jwks_url.is_some() {
            return None;
        }
        Some(format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        ))
    }

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
            (Some(f), None) => {
                check_file(&format!("{prefix}.jwks_file"), f, &mut out);
                if self.ca_file.is_some() {
                    out.push(Problem::new(
                        format!("{prefix}.ca_file"),
                        "only for keys fetched over https (jwks_url or discovery), not jwks_file",
                    ));
                }
            }
            (None, Some(u)) => {
                if let Err(why) = check_remote_url(u) {
                    out.push(Problem::new(format!("{prefix}.jwks_url"), why));
                }
            }
            (None, None) => {
                if let Err(why) = check_discovery_issuer(&self.issuer) {
                    out.push(Problem::new(
                        format!("{prefix}.issuer"),
                        format!(
                            "without jwks_file or jwks_url the keys are found by discovery \
                             from the issuer, which {why}"
                        ),
                    ));
                }
            }
            (Some(_), Some(_)) => out.push(Problem::new(
                format!("{prefix}.jwks_file"),
                "set at most one of jwks_file and jwks_url",
            )),
        }
        if let Some(f) = &self.ca_file {
            check_file(&format!("{prefix}.ca_file"), f, &mut out);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The problem keys of one issuer given as TOML lines after `issuer` and `audience`.
    fn problems(issuer: &str, lines: &str) -> Vec<(String, String)> {
        let text = format!("issuer = \"{issuer}\"\naudience = \"api\"\n{lines}");
        let cfg: IssuerConfig = toml::from_str(&text).unwrap();
        cfg.validate("issuers[0]")
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    fn keys(issuer: &str, lines: &str) -> Vec<String> {
        problems(issuer, lines)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn jwks_url_is_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.9.0.1/jwks.json",
            "http://localhost:8080/jwks.json",
            "http://[::1]:8080/jwks.json",
        ] {
            assert!(
                keys("https://idp.test/", &format!("jwks_url = \"{ok}\"")).is_empty(),
                "{ok}"
            );
        }
        let refused = problems("https://idp.test/", "jwks_url = \"http://10.0.0.7/jwks\"");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "issuers[0].jwks_url");
        assert!(refused[0].1.contains("loopback"), "{}", refused[0].1);
        for bad in [
            "ftp://idp.test/jwks",
            "not a url",
            "file:///jwks",
            "https://",
        ] {
            assert_eq!(
                keys("https://idp.test/", &format!("jwks_url = \"{bad}\"")),
                ["issuers[0].jwks_url"],
                "{bad}"
            );
        }
    }

    #[test]
    fn an_issuer_alone_is_discovered_from_its_url() {
        let cfg: IssuerConfig =
            toml::from_str("issuer = \"https://idp.test/realms/a/\"\naudience = \"api\"").unwrap();
        assert!(cfg.validate("issuers[0]").is_empty());
        assert_eq!(
            cfg.discovery_url().as_deref(),
            Some("https://idp.test/realms/a/.well-known/openid-configuration")
        );
        let with_url: IssuerConfig = toml::from_str(
            "issuer = \"https://idp.test\"\naudience = \"api\"\njwks_url = \"https://idp.test/k\"",
        )
        .unwrap();
        assert_eq!(with_url.discovery_url(), None);
        assert!(keys("http://127.0.0.1:9000", "").is_empty());
        for bad in [
            "idp-without-url",
            "http://idp.test/",
            "https://idp.test/?tenant=a",
        ] {
            let found = problems(bad, "");
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].0, "issuers[0].issuer");
            assert!(found[0].1.contains("discovery"), "{}", found[0].1);
        }
    }

    #[test]
    fn ca_file_is_for_fetched_keys_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, "{}").unwrap();
        let ca_line = format!("ca_file = {:?}", ca.display().to_string());
        assert!(keys(
            "https://idp.test/",
            &format!("jwks_url = \"https://idp.test/k\"\n{ca_line}")
        )
        .is_empty());
        assert!(keys("https://idp.test/", &ca_line).is_empty());
        assert_eq!(
            keys(
                "https://idp.test/",
                &format!("jwks_file = {:?}\n{ca_line}", jwks.display().to_string())
            ),
            ["issuers[0].ca_file"]
        );
        assert_eq!(
            keys("https://idp.test/", "ca_file = \"/nonexistent/ca.pem\""),
            ["issuers[0].ca_file"]
        );
    }
}
