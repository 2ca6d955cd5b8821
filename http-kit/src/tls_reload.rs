//! A server certificate that reloads without a restart, for the gateway's public listener and
//! the region nodes (what cert-manager rotation needs).
//!
//! [`ReloadingCert`] is a rustls [`ResolvesServerCert`]: every handshake reads the current
//! certificate and key from one uncontended `RwLock` and clones an `Arc`. [`spawn_reloader`]
//! re-reads the PEM files on `SIGHUP` and whenever the files' modification time or length
//! changes (polled every `interval`; a zero interval polls never, `SIGHUP` still reloads).
//! A new pair replaces the old one only when both files parse and the key matches the
//! certificate; otherwise the old one stays and an error naming the file is logged (never key
//! bytes). Established connections keep the session they negotiated: a reload only changes
//! what new handshakes see.
//!
//! [`ReloadingClientCa`] does the same for the CA file that client certificates (mTLS) must
//! chain to.
//!
//! [`spawn_reloader`]: ReloadingCert::spawn_reloader

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

mod client;
mod client_ca;
pub use client::{ReloadingCaVerifier, ReloadingClientCert, Watch};
pub use client_ca::ReloadingClientCa;

/// Why a certificate pair could not be loaded; names the file, never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// What a file looked like when it was last loaded: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A server certificate and key read from PEM files, replaceable while serving.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The stamps of (cert, key) at the last load attempt, so a broken file is reported once
    /// per change rather than on every poll.
    seen: Mutex<(Stamp, Stamp)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair at start; errors name the file by its config key (`tls.cert_file`,
    /// `tls.key_file`).
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key that does not match
    /// the certificate.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, LoadError> {
        let seen = (stamp(cert_file), stamp(key_file));
        let key = read_pair(cert_file, key_file, &provider)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        }))
    }

    /// The certificate new handshakes get now.
    #[must_use]
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads both files and swaps the pair in when it is valid; the old pair stays
    /// otherwise.
    ///
    /// # Errors
    /// What [`ReloadingCert::load`] reports; the current certificate is unchanged then.
    pub fn reload_now(&self) -> Result<(), LoadError> {
        let stamps = (stamp(&self.cert_file), stamp(&self.key_file));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        let key = read_pair(&self.cert_file, &self.key_file, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// Reloads when either file's modification time or length changed since the last
    /// attempt: `None` when unchanged, else what [`ReloadingCert::reload_now`] returned. For
    /// callers that poll many certificates on one timer (the gateway's custom domains).
    pub fn reload_if_changed(&self) -> Option<Result<(), LoadError>> {
        self.changed().then(|| self.reload_now())
    }

    /// The certificate file (for logs).
    #[must_use]
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// Reloads on `SIGHUP` and, with a non-zero `interval`, when the files change (checked
    /// every `interval`), until `shutdown` is cancelled.
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

impl Reload for ReloadingCert {
    fn changed(&self) -> bool {
        let now = (stamp(&self.cert_file), stamp(&self.key_file));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != now
    }

    fn reload_logged(&self, why: &str) {
        match self.reload_now() {
            Ok(()) => tracing::info!(
                cert_file = %self.cert_file.display(),
                trigger = why,
                "tls certificate reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                trigger = why,
                "tls certificate reload failed; keeping the previous certificate"
            ),
        }
    }
}

/// What the reloader task needs of a reloadable TLS file.
trait Reload: Send + Sync + 'static {
    /// Whether a file's modification time or length differs from the last load attempt.
    fn changed(&self) -> bool;
    /// Reloads and logs the outcome; `why` says what triggered it.
    fn reload_logged(&self, why: &str);
}

/// The task behind both `spawn_reloader`s.
fn spawn_reloader<R: Reload>(
    this: Arc<R>,
    interval: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        let period = if interval.is_zero() {
            Duration::from_secs(u64::from(u32::MAX))
        } else {
            interval
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = hup.recv() => this.reload_logged("SIGHUP"),
                _ = tick.tick(), if !interval.is_zero() => {
                    if this.changed() {
                        this.reload_logged("file change");
                    }
                }
            }
        }
    }))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reads and checks one server pair; errors name the files as `tls.cert_file`/`tls.key_file`.
fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, LoadError> {
    read_named_pair(
        ("tls.cert_file", cert_file),
        ("tls.key_file", key_file),
        provider,
    )
}

/// Reads and checks one pair; errors name each file by its config key (`cert.0`, `key.0`).
fn read_named_pair(
    (cert_key, cert_file): (&str, &Path),
    (key_key, key_file): (&str, &Path),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, LoadError> {
    let cert_err =
        |what: &dyn fmt::Display| LoadError(format!("{cert_key} {}: {what}", cert_file.display()));
    let key_err =
        |what: &dyn fmt::Display| LoadError(format!("{key_key} {}: {what}", key_file.display()));
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| cert_err(&e))?;
    if certs.is_empty() {
        return Err(cert_err(&"holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| match e {
        pem::Error::NoItemsFound => key_err(&"holds no private key"),
        e => key_err(&e),
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_err(&"does not match the certificate"),
        other => LoadError(format!(
            "{cert_key} {} and {key_key} {}: unusable pair ({other})",
            cert_file.display(),
            key_file.display()
        )),
    })
}

/// The CA certificates of one PEM file, at least one; errors name the file by its config
/// key.
fn read_roots(key: &str, file: &Path) -> Result<rustls::RootCertStore, LoadError> {
    let err = |what: &dyn fmt::Display| LoadError(format!("{key} {}: {what}", file.display()));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(file).map_err(|e| err(&e))? {
        roots
            .add(c.map_err(|e| err(&e))?)
            .map_err(|e| err(&format_args!("invalid certificate ({e})")))?;
    }
    if roots.is_empty() {
        return Err(err(&"holds no certificate"));
    }
    Ok(roots)
}
