//! The client side of certificate reload: the CA a TLS client trusts
//! ([`ReloadingCaVerifier`]) and the certificate it presents ([`ReloadingClientCert`]),
//! for the gateway's clients (region nodes, identity providers).
//!
//! A client handshake is rare (connections are pooled), so there is no reloader task: the
//! files' modification time and length are looked at, at most once a second, when a handshake
//! needs them, and a changed file is re-read then. Rotation by cert-manager (or by hand) is
//! seen by the next connection; established connections keep the session they negotiated.
//! A file that no longer parses is reported once per change and the previous material stays.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use super::{read_named_pair, read_roots, stamp, LoadError, Stamp};

/// How often, at most, a handshake looks at the files.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Files and what they looked like when last read; says when to re-read them. Also used by
/// clients that cannot take a rustls verifier or resolver and rebuild themselves instead: the
/// Redis client (it reads PEM bytes) and Postgres connections (`residency_pg::tls`).
#[derive(Debug)]
pub struct Watch {
    files: Vec<PathBuf>,
    /// (last look, stamps at the last load attempt).
    seen: Mutex<(Instant, Vec<Stamp>)>,
}

impl Watch {
    /// Watches `files` as they are now.
    #[must_use]
    pub fn new(files: Vec<PathBuf>) -> Self {
        let stamps = files.iter().map(|f| stamp(f)).collect();
        Self {
            files,
            seen: Mutex::new((Instant::now(), stamps)),
        }
    }

    /// Whether a file changed since the last load attempt, looking at most once per
    /// [`CHECK_EVERY`]; a change counts as the new load attempt.
    #[must_use]
    pub fn changed(&self) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.0.elapsed() < CHECK_EVERY {
            return false;
        }
        seen.0 = Instant::now();
        let now: Vec<Stamp> = self.files.iter().map(|f| stamp(f)).collect();
        if now == seen.1 {
            return false;
        }
        seen.1 = now;
        true
    }

    /// Records the files as loaded now (after an explicit reload).
    fn mark_loaded(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        *seen = (
            Instant::now(),
            self.files.iter().map(|f| stamp(f)).collect(),
        );
    }
}

/// A server-certificate verifier (webpki: chain to the CA file, name of the server) whose CA
/// file reloads when it changes.
pub struct ReloadingCaVerifier {
    key: String,
    provider: Arc<CryptoProvider>,
    watch: Watch,
    current: RwLock<Arc<WebPkiServerVerifier>>,
}

impl fmt::Debug for ReloadingCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCaVerifier")
            .field("key", &self.key)
            .field("file", &self.watch.files[0])
            .finish_non_exhaustive()
    }
}

impl ReloadingCaVerifier {
    /// Loads `file`, named `key` (the config key, e.g. `regions[eu].ca_file`) in errors.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable CA certificate.
    pub fn load(
        key: impl Into<String>,
        file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, LoadError> {
        let key = key.into();
        let watch = Watch::new(vec![file.to_owned()]);
        let verifier = read_verifier(&key, file, &provider)?;
        Ok(Arc::new(Self {
            key,
            provider,
            watch,
            current: RwLock::new(verifier),
        }))
    }

    /// Re-reads the file now; the previous CA set stays when it is unusable.
    ///
    /// # Errors
    /// What [`ReloadingCaVerifier::load`] reports.
    pub fn reload_now(&self) -> Result<(), LoadError> {
        self.watch.mark_loaded();
        let verifier = read_verifier(&self.key, &self.watch.files[0], &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = verifier;
        Ok(())
    }

    fn current(&self) -> Arc<WebPkiServerVerifier> {
        if self.watch.changed() {
            match read_verifier(&self.key, &self.watch.files[0], &self.provider) {
                Ok(v) => {
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) = v;
                    tracing::info!(key = %self.key, "tls ca reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "tls ca reload failed; keeping the previous ca"
                ),
            }
        }
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn read_verifier(
    key: &str,
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, LoadError> {
    let roots = read_roots(key, file)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| LoadError(format!("{key} {}: {e}", file.display())))
}

impl ServerCertVerifier for ReloadingCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Signature checks do not depend on the CA set: no file look here.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate and key a TLS client presents, reloaded when either file changes.
pub struct ReloadingClientCert {
    keys: (String, String),
    provider: Arc<CryptoProvider>,
    watch: Watch,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientCert")
            .field("cert_file", &self.watch.files[0])
            .field("key_file", &self.watch.files[1])
            .finish_non_exhaustive()
    }
}

impl ReloadingClientCert {
    /// Loads the pair; `cert_key`/`key_key` are the config keys naming the files in errors
    /// (e.g. `regions[eu].client_cert_file`).
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key that does not match
    /// the certificate.
    pub fn load(
        (cert_key, cert_file): (&str, &Path),
        (key_key, key_file): (&str, &Path),
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, LoadError> {
        let watch = Watch::new(vec![cert_file.to_owned(), key_file.to_owned()]);
        let pair = read_named_pair((cert_key, cert_file), (key_key, key_file), &provider)?;
        Ok(Arc::new(Self {
            keys: (cert_key.to_owned(), key_key.to_owned()),
            provider,
            watch,
            current: RwLock::new(Arc::new(pair)),
        }))
    }

    fn read(&self) -> Result<CertifiedKey, LoadError> {
        read_named_pair(
            (&self.keys.0, &self.watch.files[0]),
            (&self.keys.1, &self.watch.files[1]),
            &self.provider,
        )
    }

    /// Re-reads both files now; the previous pair stays when they are unusable.
    ///
    /// # Errors
    /// What [`ReloadingClientCert::load`] reports.
    pub fn reload_now(&self) -> Result<(), LoadError> {
        self.watch.mark_loaded();
        let pair = self.read()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// The pair the next handshake presents (re-read first when a file changed).
    #[must_use]
    pub fn current(&self) -> Arc<CertifiedKey> {
        if self.watch.changed() {
            match self.read() {
                Ok(pair) => {
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                    tracing::info!(key = %self.keys.0, "tls client certificate reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "tls client certificate reload failed; keeping the previous certificate"
                ),
            }
        }
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesClientCert for ReloadingClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
