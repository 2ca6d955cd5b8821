//! TLS for the public listener: rustls (aws-lc-rs provider), TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`. Certificates are read once at start.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use anyhow::Context;
use residency_config::gateway::TlsConfig;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from the configured PEM files.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub(crate) fn acceptor(cfg: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    let mut certs_pem = BufReader::new(
        File::open(&cfg.cert_file)
            .with_context(|| format!("tls.cert_file {}", cfg.cert_file.display()))?,
    );
    let certs = rustls_pemfile::certs(&mut certs_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file {}", cfg.cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert_file {} holds no certificate",
        cfg.cert_file.display()
    );
    let mut key_pem = BufReader::new(
        File::open(&cfg.key_file)
            .with_context(|| format!("tls.key_file {}", cfg.key_file.display()))?,
    );
    let key = rustls_pemfile::private_key(&mut key_pem)
        .with_context(|| format!("tls.key_file {}", cfg.key_file.display()))?
        .with_context(|| {
            format!(
                "tls.key_file {} holds no private key",
                cfg.key_file.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
