//! The node's TLS: a rustls acceptor from the `[tls]` PEM files, with optional
//! client-certificate verification (mTLS) and ALPN `h2`, `http/1.1`. The accept loop is the
//! HTTP kit's ([`residency_http::serve`]), with the limits of `[limits]`.

use std::sync::Arc;

use anyhow::Context;
use residency_config::node::TlsConfig;
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor from PEM files; with `client_ca_file` it requires client certs.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub(crate) fn tls_acceptor(cfg: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cfg.cert_file)
            .with_context(|| format!("tls.cert_file {}", cfg.cert_file.display()))?,
    ))
    .collect::<Result<_, _>>()
    .context("tls.cert_file: invalid pem")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&cfg.key_file)
            .with_context(|| format!("tls.key_file {}", cfg.key_file.display()))?,
    ))
    .context("tls.key_file: invalid pem")?
    .context("tls.key_file: no private key found")?;
    let builder = rustls::ServerConfig::builder();
    let mut config = if let Some(ca) = &cfg.client_ca_file {
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
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?
    } else {
        builder.with_no_client_auth().with_single_cert(certs, key)?
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
