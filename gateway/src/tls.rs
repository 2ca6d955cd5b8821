//! TLS for the public listener: rustls (aws-lc-rs provider), TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`. The certificate reloads on `SIGHUP` and when its files change
//! ([`residency_http::tls_reload`]); established connections are unaffected.

use std::sync::Arc;

use anyhow::Context;
use residency_config::gateway::TlsConfig;
use residency_http::tls_reload::ReloadingCert;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Builds the acceptor from the configured PEM files and starts their reloader, which stops
/// with `shutdown`.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub(crate) fn acceptor(
    cfg: &TlsConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = ReloadingCert::load(&cfg.cert_file, &cfg.key_file, Arc::clone(&provider))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&cert) as _);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cert.spawn_reloader(cfg.reload_interval, shutdown.clone())
        .context("tls reloader: SIGHUP handler")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
