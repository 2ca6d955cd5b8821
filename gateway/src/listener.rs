//! Accept loop and connection handling for one listener: optional TLS, HTTP/1.1 and HTTP/2
//! (hyper-util auto), limits, and graceful drain.
//!
//! - At most `max_connections` connections are served at once (a semaphore permit is taken
//!   before `accept`, as in mini-redis), the rest wait in the kernel's accept queue.
//! - HTTP/1: a client has `header_read_timeout` to send a header block of at most
//!   `max_header_bytes`; beyond that hyper answers 431 and closes. Requests whose body framing
//!   is ambiguous (`Content-Length` with `Transfer-Encoding`, ...) get 400 from [`smuggle`],
//!   which sits between the stream and hyper.
//! - HTTP/2: bounded concurrent streams (excess streams are refused with `REFUSED_STREAM`),
//!   header list size, pending/error resets (rapid reset abuse: `GOAWAY` with
//!   `ENHANCE_YOUR_CALM`), and keep-alive pings that close a connection whose peer is gone.
//! - Shutdown: stop accepting at once, then let in-flight requests finish for up to
//!   `shutdown_grace` (hyper's graceful shutdown: HTTP/1 closes after the current response,
//!   HTTP/2 sends GOAWAY).
//!
//! Not handled here: what a request means; that is the service passed in.

pub mod smuggle;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use residency_config::gateway::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use smuggle::{GuardLimits, Mode};

/// HTTP/2 streams a client may reset before the gateway accepted them; more is the "rapid
/// reset" attack (CVE-2023-44487) and ends the connection with `ENHANCE_YOUR_CALM`.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 32;
/// HTTP/2 streams the gateway may reset because of client protocol errors before it ends the
/// connection.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// How often an HTTP/2 connection is pinged while idle ...
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ... and how long the ping's answer may take before the connection is closed.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Connection-level settings of one listener.
#[derive(Clone)]
pub struct ServeOptions {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Time without a request before a connection is closed gracefully.
    pub idle_timeout: Duration,
    /// Age after which a connection is closed gracefully (less a per-connection jitter).
    pub max_connection_age: Duration,
    /// Time to receive a complete HTTP/1 header block (and a TLS handshake).
    pub header_read_timeout: Duration,
    /// Largest header block.
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Drain time after shutdown starts.
    pub shutdown_grace: Duration,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
}

impl ServeOptions {
    /// Options from the configured limits.
    #[must_use]
    pub fn from_limits(limits: &Limits, tls: Option<TlsAcceptor>) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            idle_timeout: limits.idle_timeout,
            max_connection_age: limits.max_connection_age,
            header_read_timeout: limits.header_read_timeout,
            max_header_bytes: limits.max_header_bytes,
            h2_max_concurrent_streams: limits.h2_max_concurrent_streams,
            shutdown_grace: limits.shutdown_grace,
            tls,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            // hyper's read buffer limit doubles as the header block limit: a head that does not
            // fit gets 431.
            .max_buf_size(self.max_header_bytes);
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(H2_MAX_PENDING_ACCEPT_RESET_STREAMS))
            .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESET_STREAMS))
            .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        b
    }

    fn guard_limits(&self) -> GuardLimits {
        GuardLimits {
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: self.header_read_timeout,
        }
    }
}

/// Serves `listener` with `service` until `shutdown`, then drains.
pub async fn serve<S, B>(
    listener: TcpListener,
    opts: ServeOptions,
    service: S,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let builder = opts.builder();
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let service = service.clone();
        let tls = opts.tls.clone();
        let handshake_timeout = opts.header_read_timeout;
        let guard_limits = opts.guard_limits();
        tokio::spawn(async move {
            let _permit = permit;
            metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);
            // Request-smuggling guard (`smuggle`): hyper reads through it and calls the service
            // through it. HTTP/1 is inspected; `h2` by ALPN passes untouched (on plain TCP the
            // guard recognises the HTTP/2 preface itself).
            let result = match tls {
                None => {
                    let (io, service) =
                        smuggle::guard(stream, service, Mode::Http1, guard_limits, peer);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let mode = match tls.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Mode::PassThrough,
                                _ => Mode::Http1,
                            };
                            let (io, service) =
                                smuggle::guard(tls, service, mode, guard_limits, peer);
                            let conn = builder.serve_connection(TokioIo::new(io), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("tls handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(client.addr = %peer, error = %e, "connection ended with an error");
            }
            metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0);
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over with connections still open");
    }
}
