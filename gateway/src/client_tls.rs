//! Pieces shared by the gateway's TLS clients (to region nodes, `proxy::tls`; to identity
//! providers, `auth::remote`): the aws-lc-rs client config builder, PEM certificate files,
//! and error chains that show the TLS cause of a failed request.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ClientConfig;

/// A client config builder with the aws-lc-rs provider and TLS 1.2 and 1.3.
///
/// # Errors
/// Only if the provider offers no safe protocol version, which aws-lc-rs does.
pub(crate) fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String>
{
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls protocol versions: {e}"))
}

/// The PEM certificates of `path`, at least one.
///
/// # Errors
/// A message naming the path when it cannot be read or holds no certificate.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no pem certificate", path.display()));
    }
    Ok(certs)
}

/// Whether `err` (a client error, with its sources) comes from the TLS layer, for bounded
/// health-check details and logs.
#[must_use]
pub(crate) fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|e| e.is::<rustls::Error>())
}

/// `err` and its sources, `: `-joined, for logs (rustls and hyper messages hold no secrets).
#[must_use]
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for e in causes(err) {
        let s = e.to_string();
        if !out.ends_with(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
    }
    out
}

/// `err`, then its causes. An `io::Error` wrapping another error reports the wrapped
/// error's *source* as its own, skipping the wrapped error itself (which is where rustls
/// errors sit), so the wrapped error is visited instead.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // The key's bytes never reach a message: only the path and the parser's error kind.
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{}: holds no pem private key", path.display()),
        e => format!("{}: {e}", path.display()),
    })
}
