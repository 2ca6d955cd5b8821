//! TLS and mTLS from the gateway to region nodes: one rustls client config per region (the
//! aws-lc-rs provider, TLS 1.2 and 1.3), built at start from the region's `ca_file` and
//! optional `client_cert_file` / `client_key_file` (checked then; afterwards re-read when they
//! change, at the next handshake: `residency_http::tls_reload::ReloadingCaVerifier` and
//! `ReloadingClientCert`), and the connector every
//! client that talks to that region's nodes is built from: the proxy's keep-alive pools, the
//! active health checks, provisioning and the audit's routing evidence.
//!
//! Choices:
//! - **Trust**: only the region's `ca_file`. No system or bundled roots: a node certificate
//!   is accepted only when the configured CA signed it for the upstream's host (SNI and the
//!   name check use the upstream URL's host; an IP address is matched against IP SANs).
//! - **ALPN `http/1.1` only**: the proxy forwards every request as HTTP/1.1 over a keep-alive
//!   pool (`limits.upstream_pool_idle` idle connections per node), which is the path that
//!   is measured. HTTP/2 would multiplex a whole region's traffic over a few connections and
//!   their flow-control windows and gains nothing on a low-latency link inside a region.
//! - **One scheme per region** (checked by the config): an `https` region's connector refuses
//!   plain `http`, so a region configured for TLS can never be downgraded.
//!
//! A failed handshake (unknown CA, wrong name, refused client certificate) is a connect
//! error to the client: 502, the upstream is ejected like one that refused the connection,
//! and, as always, nothing is retried in another region.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{DefaultServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use residency_config::gateway::RegionEntry;
use rustls::{ClientConfig, RootCertStore};

use residency_http::tls_reload::{ReloadingCaVerifier, ReloadingClientCert};

use crate::client_tls::builder;
pub(crate) use crate::client_tls::{error_chain, is_tls_error};

/// The connector of every client that calls region nodes.
pub(crate) type NodeConnector = HttpsConnector<HttpConnector>;

/// How one region's nodes are reached: plain HTTP, or TLS with the region's CA (and client
/// certificate, for mTLS).
#[derive(Clone)]
pub(crate) struct NodeTls {
    config: Arc<ClientConfig>,
    https: bool,
    mtls: bool,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("https", &self.https)
            .field("mtls", &self.mtls)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Plain HTTP (the region's upstreams are `http://`).
    ///
    /// # Errors
    /// Only if the crypto provider offers no safe protocol version, which aws-lc-rs does.
    pub(crate) fn plain() -> Result<Self, String> {
        // The connector type needs a TLS config even for plain HTTP; this one trusts nothing
        // and is never used, since such a connector only ever sees `http` URIs.
        let config = builder()?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            https: false,
            mtls: false,
        })
    }

    /// The TLS settings of `entry`: plain for `http` upstreams, else its CA and optional
    /// client certificate.
    ///
    /// # Errors
    /// A message naming the region and the key whose file is unreadable or unusable.
    pub(crate) fn from_region(entry: &RegionEntry) -> Result<Self, String> {
        if !entry.uses_tls() {
            return Self::plain();
        }
        let region = &entry.id;
        let ca = entry
            .ca_file
            .as_deref()
            .ok_or_else(|| format!("region {region}: ca_file is required for https upstreams"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ReloadingCaVerifier::load(
            format!("regions[{region}].ca_file"),
            ca,
            Arc::clone(&provider),
        )
        .map_err(|e| format!("region {region}: {e}"))?;
        let with_roots = builder()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (config, mtls) = match (&entry.client_cert_file, &entry.client_key_file) {
            (Some(cert), Some(key)) => {
                let cert_key = format!("regions[{region}].client_cert_file");
                let key_key = format!("regions[{region}].client_key_file");
                let pair = ReloadingClientCert::load((&cert_key, cert), (&key_key, key), provider)
                    .map_err(|e| format!("region {region}: {e}"))?;
                let mut config = with_roots.with_client_cert_resolver(pair);
                // No session resumption under mTLS: a resumed session would carry the
                // identity of the certificate it was first made with, so a rotated (or
                // withdrawn) client certificate would not reach the node until the ticket
                // expired. Connections are pooled, so full handshakes stay rare.
                config.resumption = rustls::client::Resumption::disabled();
                (config, true)
            }
            _ => (with_roots.with_no_client_auth(), false),
        };
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            https: true,
            mtls,
        })
    }

    /// A connector with `connect_timeout` on the TCP connect (the TLS handshake is bounded
    /// by the caller's overall timeout).
    #[must_use]
    pub(crate) fn connector(&self, connect_timeout: Duration) -> NodeConnector {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // The HTTPS wrapper decides the scheme; the TCP connector must accept `https` URIs.
        http.enforce_http(false);
        HttpsConnector::new(
            http,
            Arc::clone(&self.config),
            self.https,
            Arc::new(DefaultServerNameResolver::default()),
        )
    }
}
