//! The node's TLS: a rustls acceptor from the `[tls]` PEM files, with optional
//! client-certificate verification (mTLS) and ALPN `h2`, `http/1.1`. The server certificate
//! and the client CA reload on `SIGHUP` and when their files change
//! ([`residency_http::tls_reload`]). The accept loop is the HTTP kit's ([`residency_http::serve`]),
//! with the limits of `[limits]`. Also the one client config of the node's outbound `https`
//! calls to the internet ([`client_config`]: webhook deliveries, connector actions).

use std::path::Path;
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

/// The rustls client config of the node's outbound `https` calls (webhook deliveries,
/// connector actions): aws-lc-rs, the safe default protocol versions, no client certificate,
/// ALPN `http/1.1`, trusting the PEM file `ca_file` (`(config key, path)`) when given, else
/// the platform's root certificates (`what` names the caller in the warnings about them).
///
/// # Errors
/// An unreadable or invalid `ca_file`, named by its key.
pub(crate) fn client_config(
    ca_file: Option<(&str, &Path)>,
    what: &str,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some((key, path)) => {
            for cert in CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?
            {
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "{what}: a platform root certificate could not be loaded");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("{what}: no platform root certificates; https calls will fail");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
