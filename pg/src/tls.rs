//! TLS to Postgres with rustls (aws-lc-rs): every connection of the directory, the nodes,
//! the audit, the migrations and `residency up` is opened from a [`Target`].
//!
//! The URL's libpq parameters are read by [`residency_config::pg_url::PgUrl`]; here they
//! become a rustls client config:
//! - `verify-full`: the chain must lead to `sslrootcert` and the certificate must name the
//!   host (an IP address is matched against IP SANs);
//! - `verify-ca`: the chain only (libpq's meaning; a name mismatch is accepted);
//! - `require`: encrypted, the certificate is not checked (the handshake signature is);
//! - `sslcert` + `sslkey`: the client certificate, for servers that ask for one.
//!
//! Only `sslrootcert` is trusted: no platform or bundled roots. The TLS stream offers no
//! channel binding, so SCRAM runs without `-PLUS` (`channel_binding=require` is refused by
//! `tokio-postgres`). A failed connection is explained by [`Target::explain`]: the URL
//! without its password and the reason (unknown CA, wrong host name, server without TLS,
//! server refusing clear text).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use residency_config::pg_url::{PgUrl, SslMode};
use residency_http::tls_reload::Watch;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Connection, Socket};

/// A Postgres server to connect to: its `tokio-postgres` settings and the TLS they need.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: MakeTls,
    mode: SslMode,
    redacted: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.redacted)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Reads `url` and the certificate files it names.
    ///
    /// # Errors
    /// A message naming the URL without its password and what is wrong with it.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let redacted = residency_config::redact_url(url);
        let fail = |e: String| anyhow::anyhow!("{redacted}: {e}");
        let parsed = PgUrl::parse(url).map_err(fail)?;
        let config = parsed
            .connect_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| fail(e.to_string()))?;
        let tls = MakeTls::new(&parsed).map_err(fail)?;
        Ok(Self {
            config,
            tls,
            mode: parsed.mode,
            redacted,
        })
    }

    /// [`Target::parse`], refusing clear text to a non-loopback host unless `allow_insecure`
    /// (`allow_key` names the setting that allows it).
    ///
    /// # Errors
    /// As [`Target::parse`], and the refusal.
    pub fn parse_checked(url: &str, allow_insecure: bool, allow_key: &str) -> anyhow::Result<Self> {
        let target = Self::parse(url)?;
        PgUrl::parse(url)
            .and_then(|p| p.check_transport(allow_insecure, allow_key))
            .map_err(|e| anyhow::anyhow!("{}: {e}", target.redacted))?;
        Ok(target)
    }

    /// The connection settings (application name, timeouts, options may be added).
    #[must_use]
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The connection settings, to adjust.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// The TLS connector, for connection pools.
    #[must_use]
    pub fn tls(&self) -> MakeTls {
        self.tls.clone()
    }

    /// The effective `sslmode`.
    #[must_use]
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The URL without its password.
    #[must_use]
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Opens one connection; the caller spawns the returned connection future.
    ///
    /// # Errors
    /// [`Target::explain`]'s message.
    pub async fn connect(&self) -> anyhow::Result<(Client, Connection<Socket, TlsStream>)> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}", self.explain(&e)))
    }

    /// `cannot connect to <url without password> (sslmode …): <reason>`.
    #[must_use]
    pub fn explain(&self, e: &tokio_postgres::Error) -> String {
        format!(
            "cannot connect to {} (sslmode {}): {}",
            self.redacted,
            self.mode.as_str(),
            reason(e)
        )
    }
}

/// `url`'s connection settings without its TLS parameters, which are neither checked nor
/// read: for describing where a URL points, not for connecting.
///
/// # Errors
/// The parser's message (it does not echo the URL).
pub fn settings(url: &str) -> Result<tokio_postgres::Config, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("not a url: {e}"))?;
    let kept = residency_config::pg_url::without_tls_params(&u).join("&");
    u.set_query((!kept.is_empty()).then_some(kept.as_str()));
    u.as_str()
        .parse()
        .map_err(|e: tokio_postgres::Error| e.to_string())
}

/// Why a server that answered refused a connection: the operator must fix a name or a
/// credential in the URL (or the server's `pg_hba.conf`), not start the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// SQLSTATE 28P01 `invalid_password`: the password is wrong (or missing).
    Password,
    /// SQLSTATE 28000 `invalid_authorization_specification`: the role does not exist, may not
    /// log in, or no `pg_hba.conf` line admits this connection.
    Authorization,
    /// SQLSTATE 3D000 `invalid_catalog_name`: the database does not exist.
    NoDatabase,
}

impl Refusal {
    /// Whether the login itself was refused (as opposed to the database name).
    #[must_use]
    pub fn is_login(self) -> bool {
        matches!(self, Self::Password | Self::Authorization)
    }
}

/// The [`Refusal`] behind a failed connection, if the server answered with one.
#[must_use]
pub fn refusal(e: &tokio_postgres::Error) -> Option<Refusal> {
    match e.as_db_error()?.code().code() {
        "28P01" => Some(Refusal::Password),
        "28000" => Some(Refusal::Authorization),
        "3D000" => Some(Refusal::NoDatabase),
        _ => None,
    }
}

/// Why a connection failed, in the operator's words. A refused login or an unknown database
/// says so (with its SQLSTATE), so it is not mistaken for a server that is down.
#[must_use]
pub fn reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        // 28000: no pg_hba.conf line matches, e.g. only `hostssl` lines and a clear connection.
        if db.code().code() == "28000" && db.message().contains("no encryption") {
            return format!(
                "the server refuses connections without TLS ({}); use sslmode=verify-full",
                db.message()
            );
        }
        return match refusal(e) {
            Some(Refusal::Password) => format!(
                "the server rejected the login: wrong password (SQLSTATE 28P01: {}); check the \
                 password in the URL",
                db.message()
            ),
            Some(Refusal::Authorization) => format!(
                "the server rejected the login (SQLSTATE 28000: {}); check the user name in \
                 the URL, that the role may log in, and the server's pg_hba.conf",
                db.message()
            ),
            Some(Refusal::NoDatabase) => format!(
                "the server has no such database (SQLSTATE 3D000: {}); check the database \
                 name in the URL",
                db.message()
            ),
            None => db.message().to_owned(),
        };
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let inner = c
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map_or(c, |i| i as &(dyn std::error::Error + 'static));
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return tls_reason(tls);
        }
        if inner.to_string() == "server does not support TLS" {
            return "the server has no TLS (it declined the TLS request)".to_owned();
        }
        cause = c.source();
    }
    e.to_string()
}

fn tls_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "unknown CA: the server's certificate is not signed by the sslrootcert CA".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "wrong host name: the server's certificate does not name the host".to_owned(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the TLS handshake ({alert:?}); does it require a client \
             certificate (sslcert, sslkey) it trusts?"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Makes the TLS connector of one connection attempt (`tokio-postgres`'s `MakeTlsConnect`).
///
/// The certificate files (`sslrootcert`, `sslcert`, `sslkey`) are read when the target is
/// parsed and again, at the next connection attempt, when one of them changed (looked at
/// most once a second): a rotated CA or client certificate is used by new pool connections
/// without a restart, open connections keep their session. Files that no longer form a usable
/// set are logged once per change and the previous configuration stays.
#[derive(Clone)]
pub struct MakeTls {
    config: Option<Arc<Reloading>>,
}

/// The TLS configuration of a URL and the files it was built from.
struct Reloading {
    url: PgUrl,
    /// `sslrootcert`, `sslcert`, `sslkey`: looked at, at most once a second, by the next
    /// connection attempt (the kit's `Watch`, as the gateway's Redis client does).
    watch: Watch,
    current: RwLock<Arc<ClientConfig>>,
}

impl Reloading {
    /// The configuration for the next connection, re-read first when a file changed.
    fn current(&self) -> Arc<ClientConfig> {
        if self.watch.changed() {
            match client_config(&self.url) {
                Ok(config) => {
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                        Arc::new(config);
                    tracing::info!(
                        url = %residency_config::redact_url(&self.url.connect_url),
                        "postgres tls files reloaded"
                    );
                }
                Err(e) => tracing::error!(
                    url = %residency_config::redact_url(&self.url.connect_url),
                    error = %e,
                    "postgres tls files reload failed; keeping the previous configuration"
                ),
            }
        }
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl MakeTls {
    fn new(url: &PgUrl) -> Result<Self, String> {
        if url.mode == SslMode::Disable {
            return Ok(Self { config: None });
        }
        let mut files: Vec<std::path::PathBuf> = url.root_cert.iter().cloned().collect();
        if let Some((cert, key)) = &url.client_cert {
            files.extend([cert.clone(), key.clone()]);
        }
        // Stamped before the files are read, so a change made meanwhile is seen next time.
        let watch = Watch::new(files);
        let reloading = Reloading {
            url: url.clone(),
            watch,
            current: RwLock::new(Arc::new(client_config(url)?)),
        };
        Ok(Self {
            config: Some(Arc::new(reloading)),
        })
    }
}

/// The rustls configuration of a URL that is not `sslmode=disable`.
fn client_config(url: &PgUrl) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls protocol versions: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match &url.root_cert {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "sslrootcert")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
            }
            let full =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
            if url.mode == SslMode::VerifyFull {
                full
            } else {
                Arc::new(ChainOnly(full))
            }
        }
        // `PgUrl` asks for `sslrootcert` in the verifying modes, so this is `require`.
        None => Arc::new(Unchecked(provider)),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &url.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert, "sslcert")?, read_key(key)?)
            .map_err(|e| format!("sslcert and sslkey do not form a usable pair: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path, param: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{param} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{param} {}: holds no pem certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // The key's bytes never reach a message: only the path and the parser's error kind.
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("sslkey {}: holds no pem private key", path.display()),
        e => format!("sslkey {}: {e}", path.display()),
    })
}

/// `verify-ca`: the full check, except that a certificate for another name is accepted
/// (webpki checks the chain before the name, so a name error means the chain was good).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: any certificate; the handshake signature is still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = TlsStream;
    type TlsConnect = Connector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connector> {
        Ok(Connector {
            config: self.config.as_ref().map(|r| r.current()),
            domain: domain.to_owned(),
        })
    }
}

/// The TLS handshake of one connection.
pub struct Connector {
    config: Option<Arc<ClientConfig>>,
    domain: String,
}

impl TlsConnect<Socket> for Connector {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            // `sslmode=disable` never asks for a handshake; this is a guard, not a path.
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS requested with sslmode=disable"))?;
            let name = ServerName::try_from(self.domain)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(TlsStream(Box::new(stream)))
        })
    }
}

/// A TLS session with a Postgres server.
pub struct TlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for TlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_configs_tokio_postgres_accepts() {
        let t = Target::parse("postgres://app:pw@127.0.0.1:5432/db?application_name=x").unwrap();
        assert_eq!(t.mode(), SslMode::Disable);
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(
            t.redacted(),
            "postgres://app:***@127.0.0.1:5432/db?application_name=x"
        );
        let t = Target::parse("postgres://app:pw@db.internal/db?sslmode=require").unwrap();
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert!(t.tls().config.is_some());
        let s = settings("postgres://a:pw@db.internal:6432/x?sslmode=verify-full&sslrootcert=/no.pem&application_name=y")
            .unwrap();
        assert_eq!(s.get_dbname(), Some("x"));
        assert_eq!(s.get_application_name(), Some("y"));
    }

    #[test]
    fn errors_name_the_url_without_its_password() {
        let e = Target::parse("postgres://app:pw@db.internal/db")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("postgres://app:***@db.internal/db: "), "{e}");
        assert!(e.contains("needs sslrootcert"), "{e}");
        let e = Target::parse(
            "postgres://app:pw@db/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslrootcert /nonexistent.pem"), "{e}");
        assert!(!e.contains(":pw@"), "{e}");
        let e = Target::parse_checked("postgres://app:pw@db/db?sslmode=disable", false, "x.allow")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("clear text") && e.contains("x.allow = true"),
            "{e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
        assert!(
            Target::parse_checked("postgres://app:pw@db/db?sslmode=disable", true, "x").is_ok()
        );
    }
}
