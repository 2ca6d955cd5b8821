//! The node's listener: optional TLS (with optional client-certificate verification for
//! mTLS), HTTP/1.1 and HTTP/2, a cap on concurrent connections, a header-read timeout, and a
//! graceful drain: on shutdown it stops accepting at once, then lets in-flight requests finish
//! within the grace period.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use residency_config::node::TlsConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Most concurrent connections per node.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time allowed for a client to send its request headers, and for a TLS handshake.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a TLS acceptor from PEM files; with `client_ca_file` it requires client certs.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub fn tls_acceptor(cfg: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
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

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains for up to `grace`.
///
/// # Errors
/// Only when accepting fails in a way that is not per-connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection errors (EMFILE, aborted handshakes) must not stop the node.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let conn = builder.serve_connection(TokioIo::new(s), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        _ => return,
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "drain timed out; closing remaining connections"
        );
    }
    Ok(())
}
