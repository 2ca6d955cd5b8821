//! Keys fetched over the network: a JWKS URL, or OpenID Connect discovery from the issuer URL.
//!
//! - **Transport**: https with rustls (aws-lc-rs), trusting the issuer's `ca_file` when one is
//!   configured (re-read when the file changes, at the next fetch), else the platform's root
//!   certificates. Plain http only to a loopback host
//!   (the dev IdP of `residency up`), with a warning at start; the config refuses anything
//!   else, and a discovery document fetched over https may not send the keys to plain http.
//!   Redirects are not followed.
//! - **Discovery** (OpenID Connect Discovery 1.0): `GET <issuer>/.well-known/openid-configuration`,
//!   whose `issuer` must equal the configured issuer exactly (section 4.3), then its
//!   `jwks_uri`. Every refresh reads the discovery document again, so an issuer that moves
//!   its keys to a new `jwks_uri` is followed at the next refresh.
//! - **Freshness**: the JWKS response's `Cache-Control: max-age` (less its `Age`; `no-cache`
//!   and `no-store` count as 0) is returned for [`super::jwks::Jwks`] to schedule the next
//!   refresh within the configured bounds.
//!
//! Errors name the URL (password redacted) and the cause, down to the TLS reason (unknown CA,
//! wrong host name).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL};
use http::{HeaderMap, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use residency_config::gateway::check_remote_url;
use residency_config::redact_url;
use residency_http::tls_reload::ReloadingCaVerifier;
use rustls::RootCertStore;
use serde::Deserialize;
use url::Url;

use super::jwks::{JwksError, MAX_JWKS_BYTES};
use crate::client_tls::{builder, error_chain};

type FetchClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// What a [`Remote`] fetches first.
enum Target {
    /// The JWKS document itself.
    Jwks(Url),
    /// The discovery document of `issuer`, then the `jwks_uri` it names.
    Discovery { issuer: String, url: Url },
}

/// A remote key source with its own small client (boxed: it is large and used rarely).
pub struct Remote {
    target: Target,
    client: Box<FetchClient>,
}

/// A fetched document and how long its server says it stays fresh.
pub struct Fetched {
    /// The document, at most [`MAX_JWKS_BYTES`].
    pub bytes: Bytes,
    /// Its freshness lifetime from `Cache-Control` (less `Age`), when it has one.
    pub max_age: Option<Duration>,
}

/// The fields of a discovery document the gateway uses.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl Remote {
    /// Keys from the JWKS document at `url`.
    ///
    /// # Errors
    /// [`JwksError::Fetch`] when `url` is refused or `ca_file` is unusable.
    pub fn jwks(url: &str, ca_file: Option<&Path>) -> Result<Self, JwksError> {
        let url = checked(url)?;
        Ok(Self {
            client: client(&url, ca_file)?,
            target: Target::Jwks(url),
        })
    }

    /// Keys found by discovery from `issuer`, whose document is at `discovery_url`.
    ///
    /// # Errors
    /// [`JwksError::Fetch`] when the URL is refused or `ca_file` is unusable.
    pub fn discovery(
        issuer: &str,
        discovery_url: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self, JwksError> {
        let url = checked(discovery_url)?;
        Ok(Self {
            client: client(&url, ca_file)?,
            target: Target::Discovery {
                issuer: issuer.to_owned(),
                url,
            },
        })
    }

    /// Fetches the key set document (through discovery when so configured).
    ///
    /// # Errors
    /// [`JwksError`] naming the URL and the cause: connection, TLS (unknown CA, wrong host
    /// name), status, size, or a discovery document that does not fit the issuer.
    pub async fn fetch(&self) -> Result<Fetched, JwksError> {
        let jwks_url = match &self.target {
            Target::Jwks(url) => url.clone(),
            Target::Discovery { issuer, url } => self.discover(issuer, url).await?,
        };
        self.get(&jwks_url).await
    }

    async fn discover(&self, issuer: &str, url: &Url) -> Result<Url, JwksError> {
        let doc = self.get(url).await?;
        let named = redact_url(url.as_str());
        let found: Discovery = serde_json::from_slice(&doc.bytes)
            .map_err(|e| JwksError::Parse(format!("{named}: not an openid configuration: {e}")))?;
        if found.issuer != issuer {
            return Err(JwksError::Parse(format!(
                "{named}: names issuer {:?}, not the configured {issuer:?}",
                found.issuer
            )));
        }
        let jwks_uri = check_remote_url(&found.jwks_uri).map_err(|why| {
            JwksError::Fetch(format!(
                "{named}: jwks_uri {}: {why}",
                redact_url(&found.jwks_uri)
            ))
        })?;
        if url.scheme() == "https" && jwks_uri.scheme() != "https" {
            return Err(JwksError::Fetch(format!(
                "{named}: jwks_uri {} is not https, but the discovery document was",
                redact_url(jwks_uri.as_str())
            )));
        }
        Ok(jwks_uri)
    }

    async fn get(&self, url: &Url) -> Result<Fetched, JwksError> {
        let named = redact_url(url.as_str());
        let fail = |why: String| JwksError::Fetch(format!("{named}: {why}"));
        let uri: Uri = url.as_str().parse().map_err(|e| fail(format!("{e}")))?;
        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(fail(format!("status {}", resp.status())));
        }
        let max_age = max_age(resp.headers());
        let bytes = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Fetched { bytes, max_age })
    }
}

fn checked(url: &str) -> Result<Url, JwksError> {
    let parsed = check_remote_url(url)
        .map_err(|why| JwksError::Fetch(format!("{}: {why}", redact_url(url))))?;
    if parsed.scheme() == "http" {
        tracing::warn!(
            url = %redact_url(url),
            "issuer keys over plain http: accepted only because the host is loopback (a local dev IdP)"
        );
    }
    Ok(parsed)
}

/// A client trusting `ca_file`, or the platform's roots without one. Plain `http` stays
/// possible for the loopback URLs [`check_remote_url`] lets through.
fn client(url: &Url, ca_file: Option<&Path>) -> Result<Box<FetchClient>, JwksError> {
    let fail = |why: String| JwksError::Fetch(format!("{}: {why}", redact_url(url.as_str())));
    let builder = builder().map_err(fail)?;
    let config = if let Some(path) = ca_file {
        // The issuer's CA file is re-read when it changes, at the next fetch's handshake.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ReloadingCaVerifier::load("ca_file", path, provider)
            .map_err(|e| fail(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "reading the platform's root certificates");
        }
        let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
        if roots.is_empty() && url.scheme() == "https" {
            tracing::warn!(
                url = %redact_url(url.as_str()),
                "no platform root certificates found: https key fetches will fail; set ca_file"
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // HTTP/1.1 only; the builder sets ALPN to match.
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Box::new(
        Client::builder(TokioExecutor::new()).build(connector),
    ))
}

/// The freshness lifetime a response grants (RFC 9111 section 4.2): `max-age` less `Age`;
/// `no-cache` or `no-store` is 0; `None` without a usable directive.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut out = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for directive in text.split(',').map(str::trim) {
            let (name, arg) = directive
                .split_once('=')
                .map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim())));
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.trim_matches('"').parse::<u64>().ok()) {
                    out = Some(secs);
                }
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    out.map(|secs| Duration::from_secs(secs.saturating_sub(age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cache_control_max_age_less_age() {
        let secs = |pairs| max_age(&headers(pairs)).map(|d| d.as_secs());
        assert_eq!(secs(&[]), None);
        assert_eq!(secs(&[("cache-control", "public, max-age=600")]), Some(600));
        assert_eq!(secs(&[("cache-control", "Max-Age = \"90\"")]), Some(90));
        assert_eq!(
            secs(&[("cache-control", "max-age=600"), ("age", "100")]),
            Some(500)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60"), ("age", "100")]),
            Some(0)
        );
        assert_eq!(
            secs(&[("cache-control", "public"), ("cache-control", "max-age=30")]),
            Some(30)
        );
        assert_eq!(secs(&[("cache-control", "max-age=60, no-cache")]), Some(0));
        assert_eq!(secs(&[("cache-control", "no-store")]), Some(0));
        assert_eq!(secs(&[("cache-control", "max-age=soon")]), None);
        assert_eq!(secs(&[("cache-control", "max-age=-5")]), None);
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(Remote::jwks("http://127.0.0.1:9/jwks.json", None).is_ok());
        assert!(Remote::jwks("http://localhost:9/jwks.json", None).is_ok());
        assert!(Remote::jwks("https://idp.example.com/jwks.json", None).is_ok());
        let Err(e) = Remote::jwks("http://idp.example.com/jwks.json", None) else {
            panic!("plain http to a remote host was accepted");
        };
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
