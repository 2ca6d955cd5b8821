//! The node's TLS: a rustls acceptor from the `[tls]` PEM files, with optional
//! client-certificate verification (mTLS) and ALPN `h2`, `http/1.1`. The server certificate
//! and the client CA reload on `SIGHUP` and when their files change
//! ([`residency_http::tls_reload`]). The accept loop is the HTTP kit's ([`residency_http::serve`]),
//! with the limits of `[limits]`.

use std::sync::Arc;

use residency_config::node::TlsConfig;
use residency_http::tls_reload::{ReloadingCert, ReloadingClientCa};
use tokio_rustls::TlsAcceptor;

/// The node's acceptor and the reloadable certificate it serves.
pub(crate) struct NodeTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) cert: Arc<ReloadingCert>,
    /// The mTLS client CA, when `tls.client_ca_file` is set.
    pub(crate) client_ca: Option<Arc<ReloadingClientCa>>,
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
    let client_ca = cfg
        .client_ca_file
        .as_deref()
        .map(|ca| ReloadingClientCa::load(ca, Arc::clone(builder.crypto_provider())))
        .transpose()?;
    let builder = match &client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::clone(ca) as _),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&cert) as _);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(NodeTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert,
        client_ca,
    })
}
