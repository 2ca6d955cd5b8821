//! The client-certificate CA of an mTLS listener, reloadable like the server certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use tokio_util::sync::CancellationToken;

use super::{read_roots, spawn_reloader, stamp, LoadError, Reload, Stamp};

/// A client-certificate verifier over the CA certificates of one PEM file, replaceable while
/// serving. Every client must present a certificate the current CA file signed.
///
/// It sends no CA names in its certificate request (the names change with the file; a
/// client with one certificate, like the gateway, does not need them).
#[derive(Debug)]
pub struct ReloadingClientCa {
    file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    seen: Mutex<Stamp>,
}

impl ReloadingClientCa {
    /// Loads the CA file at start; errors name it as `tls.client_ca_file`.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable CA certificate.
    pub fn load(file: &Path, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, LoadError> {
        let seen = stamp(file);
        let verifier = read_ca(file, &provider)?;
        Ok(Arc::new(Self {
            file: file.to_owned(),
            provider,
            current: RwLock::new(verifier),
            seen: Mutex::new(seen),
        }))
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the file and swaps the CA set in when it is valid; the old one stays
    /// otherwise.
    ///
    /// # Errors
    /// What [`ReloadingClientCa::load`] reports; the current CA set is unchanged then.
    pub fn reload_now(&self) -> Result<(), LoadError> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = stamp(&self.file);
        let verifier = read_ca(&self.file, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = verifier;
        Ok(())
    }

    /// Reloads on `SIGHUP` and, with a non-zero `interval`, when the file changes, until
    /// `shutdown` is cancelled.
    ///
    /// # Errors
    /// When the `SIGHUP` handler cannot be installed.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        spawn_reloader(Arc::clone(self), interval, shutdown)
    }
}

impl Reload for ReloadingClientCa {
    fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != stamp(&self.file)
    }

    fn reload_logged(&self, why: &str) {
        match self.reload_now() {
            Ok(()) => tracing::info!(
                client_ca_file = %self.file.display(),
                trigger = why,
                "tls client ca reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                trigger = why,
                "tls client ca reload failed; keeping the previous ca"
            ),
        }
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

fn read_ca(
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, LoadError> {
    let roots = read_roots("tls.client_ca_file", file)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| LoadError(format!("tls.client_ca_file {}: {e}", file.display())))
}
