//! TLS for the public listener: rustls (aws-lc-rs provider), TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`. The certificate is chosen by SNI ([`SniResolver`]): an active custom domain's
//! own certificate when there is one, else the default certificate. Every certificate reloads
//! when its files change ([`residency_http::tls_reload`]; the default one on `SIGHUP` too);
//! established connections are unaffected. [`verify`] checks a custom domain's certificate
//! for the admin API.

pub(crate) mod verify;

use std::sync::Arc;

use anyhow::Context;
use residency_config::gateway::TlsConfig;
use residency_http::tls_reload::ReloadingCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::directory::domains::{CertDir, Domains};

/// The crypto provider of the public listener and of custom domain certificates.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Where custom domain certificates live, when `tls.domains_dir` is set.
pub(crate) fn cert_dir(cfg: Option<&TlsConfig>) -> Option<CertDir> {
    let dir = cfg?.domains_dir.clone()?;
    Some(CertDir {
        dir,
        provider: provider(),
    })
}

/// Picks the certificate of a handshake: the active custom domain named by SNI when its
/// certificate is loaded, else the default. A lookup is one dashmap probe; nothing is read
/// from disk here.
#[derive(Debug)]
pub(crate) struct SniResolver {
    default: Arc<ReloadingCert>,
    domains: Arc<Domains>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.domains.cert(&name.to_ascii_lowercase())
            } else {
                self.domains.cert(name)
            };
            if found.is_some() {
                return found;
            }
        }
        Some(self.default.current())
    }
}

/// Builds the acceptor from the configured PEM files and starts the reloaders (default
/// certificate and custom domains), which stop with `shutdown`.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub(crate) fn acceptor(
    cfg: &TlsConfig,
    domains: &Arc<Domains>,
    shutdown: &CancellationToken,
) -> anyhow::Result<TlsAcceptor> {
    let provider = provider();
    let cert = ReloadingCert::load(&cfg.cert_file, &cfg.key_file, Arc::clone(&provider))?;
    let resolver = SniResolver {
        default: Arc::clone(&cert),
        domains: Arc::clone(domains),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cert.spawn_reloader(cfg.reload_interval, shutdown.clone())
        .context("tls reloader: SIGHUP handler")?;
    domains.spawn_reloader(cfg.reload_interval, shutdown.clone());
    Ok(TlsAcceptor::from(Arc::new(config)))
}
