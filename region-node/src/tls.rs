//! The node's TLS: a rustls acceptor from the `[tls]` PEM files, with optional
//! client-certificate verification (mTLS) and ALPN `h2`, `http/1.1`. The server certificate
//! reloads on `SIGHUP` and when its files change ([`residency_http::tls_reload`]); the client
//! CA is read once at start. The accept loop is the HTTP kit's ([`residency_http::serve`]),
//! with the limits of `[limits]`.

use std::sync::Arc;

use anyhow::Context;
use residency_config::node::TlsConfig;
use residency_http::tls_reload::ReloadingCert;
use tokio_rustls::TlsAcceptor;

/// The node's acceptor and the reloadable certificate it serves.
pub(crate) struct NodeTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) cert: Arc<ReloadingCert>,
}

/// Builds a TLS acceptor from PEM files; with `client_ca_file` it requires client certs.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub(crate) fn tls_acceptor(cfg: &TlsConfig) -> anyhow::Result<NodeTls> {
    let builder = rustls::ServerConfig::builder();
    let cert = ReloadingCert::load(
        &cfg.cert_file,
        &cfg.key_file,
        Arc::clone(builder.crypto_provider()),
    )?;
    let builder = if let Some(ca) = &cfg.client_ca_file {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut std::io::BufReader::new(
            std::fs::File::open(ca)
                .with_context(|| format!("tls.client_ca_file {}", ca.display()))?,
        )) {
            roots
                .add(c?)
                .context("tls.client_ca_file: invalid certificate")?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&cert) as _);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(NodeTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert,
    })
}
