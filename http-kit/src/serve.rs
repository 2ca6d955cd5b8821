//! One accept loop for the region node and the gateway's admin listener: optional TLS,
//! HTTP/1.1 and HTTP/2 (hyper-util auto), a cap on concurrent connections, a header-read
//! timeout, bounded HTTP/2 streams, optional idle and age limits and a graceful drain.
//!
//! - At most [`Limits::max_connections`] connections are served at once; one more is closed
//!   as soon as it is accepted, so a full server answers at once instead of leaving clients
//!   in the accept queue.
//! - HTTP/1: a client has [`Limits::header_read_timeout`] to send its request head, and the
//!   same time for a TLS handshake.
//! - HTTP/2: [`Limits::h2_max_concurrent_streams`] streams per connection (more are refused
//!   with `REFUSED_STREAM`), the rapid-reset caps and keep-alive pings of
//!   [`Limits::connection_builder`].
//! - Lifetimes ([`conn`]): with [`Limits::idle_timeout`] a connection with no request in
//!   flight for that long is closed gracefully; with [`Limits::max_connection_age`] one older
//!   than that (less up to 10 % jitter) is too.
//! - Accept errors (`EMFILE`, aborted handshakes) are logged and retried after a short pause;
//!   they never stop the server.
//! - Shutdown: close the listener at once (new connections are refused), then ask every
//!   connection to close gracefully (HTTP/2 `GOAWAY`; HTTP/1 answers with `Connection: close`
//!   for up to [`conn::HTTP1_DRAIN_WINDOW`], then closes); a connection whose requests have
//!   not finished [`Limits::shutdown_grace`] later is dropped, and `serve` returns.
//!
//! The gateway's public listener keeps its own loop (`gateway/src/listener.rs`): it puts the
//! request-smuggling guard between the stream and hyper (choosing what to inspect by the
//! ALPN result), admits connections per client address, and lets the N+1th connection wait
//! in the accept queue rather than closing it. It builds its connections with
//! [`Limits::connection_builder`], shakes hands with [`tls_handshake`] and drives each
//! connection's lifetime with [`conn::drive`] from here.

pub mod conn;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use conn::{Activity, Ended, Lifetime, Tracked};

/// HTTP/2 streams a client may reset before the server accepted them; more is the "rapid
/// reset" attack (CVE-2023-44487) and ends the connection with `ENHANCE_YOUR_CALM`.
pub(crate) const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 32;
/// HTTP/2 streams the server may reset because of client protocol errors before it ends the
/// connection.
pub(crate) const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// How often an HTTP/2 connection is pinged while idle ...
pub(crate) const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ... and how long the ping's answer may take before the connection is closed.
pub(crate) const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed `accept`, so an exhausted file table is not a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connection-level limits of one listener. The default is the region node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time to receive a complete HTTP/1 request head, and to finish a TLS handshake.
    pub header_read_timeout: Duration,
    /// Largest header block (HTTP/1 read buffer, so a larger head gets 431; HTTP/2 header
    /// list size); `None` keeps hyper's defaults.
    pub max_header_bytes: Option<usize>,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// How long in-flight requests may take to finish after shutdown starts (or after an
    /// idle or old connection was asked to close).
    pub shutdown_grace: Duration,
    /// Close a connection gracefully once nothing has been in flight for this long; `None`:
    /// never.
    pub idle_timeout: Option<Duration>,
    /// Close a connection gracefully once it is this old (less up to 10 % jitter); `None`:
    /// never.
    pub max_connection_age: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: None,
            h2_max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: None,
            max_connection_age: None,
        }
    }
}

impl Limits {
    /// The hyper-util connection builder (HTTP/1 and HTTP/2) with these limits.
    #[must_use]
    pub fn connection_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        // As in `http1_builder`.
        let mut h1 = b.http1();
        h1.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        if let Some(max) = self.max_header_bytes {
            h1.max_buf_size(max);
        }
        let mut h2 = b.http2();
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(Some(H2_MAX_PENDING_ACCEPT_RESET_STREAMS))
            .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESET_STREAMS))
            .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        if let Some(max) = self.max_header_bytes {
            h2.max_header_list_size(u32::try_from(max).unwrap_or(u32::MAX));
        }
        b
    }
}

impl Limits {
    /// hyper's HTTP/1 connection builder with these limits, the same as the HTTP/1 half of
    /// [`Limits::connection_builder`]: for a listener that knows a connection is HTTP/1 and
    /// wants hyper's own connection type (which it can take apart again).
    #[must_use]
    pub fn http1_builder(&self) -> hyper::server::conn::http1::Builder {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        if let Some(max) = self.max_header_bytes {
            // hyper's read buffer limit doubles as the header block limit: a head that does
            // not fit gets 431.
            h1.max_buf_size(max);
        }
        h1
    }
}

/// What [`serve`] needs besides the listener and the service.
#[derive(Clone)]
pub struct ServeOptions {
    /// Connection limits.
    pub limits: Limits,
    /// TLS, when configured (its ALPN list decides whether HTTP/2 is offered).
    pub tls: Option<TlsAcceptor>,
}

/// Errors of one connection; only logged.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The TLS handshake of an accepted `stream`, within `timeout`, abandoned on `shutdown`.
///
/// # Errors
/// A failed or timed-out handshake, or shutdown during it.
pub async fn tls_handshake<IO>(
    acceptor: &TlsAcceptor,
    stream: IO,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<TlsStream<IO>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        () = shutdown.cancelled() => Err("shut down during the tls handshake".into()),
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err("tls handshake timed out".into()),
        },
    }
}

/// A lifetime limit that is never reached (about a century).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Serves `listener` with `service` until `shutdown` is cancelled, then drains for up to
/// `opts.limits.shutdown_grace`. It never fails: accept errors are retried, connection
/// errors end only their connection.
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
    B::Error: Into<BoxError>,
{
    let limits = opts.limits;
    // Lives for the process (one per listener start): hyper-util's connection borrows its
    // builder, and a builder owned by each connection's task would stay in the task for the
    // connection's whole life (with the stream and the service beside it).
    let builder: &'static auto::Builder<TokioExecutor> =
        Box::leak(Box::new(limits.connection_builder()));
    let connections = TaskTracker::new();
    // Cancelled once the listener is closed: what the connections drain on.
    let drain = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let jitter = RandomState::new();
    let mut accepted = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once: the stream is dropped here.
            tracing::warn!(client.addr = %peer, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        accepted += 1;
        let max_age = limits.max_connection_age.unwrap_or(NEVER);
        let conn = Conn {
            builder,
            service: service.clone(),
            accepted_at: Instant::now(),
            lifetime: Lifetime {
                idle_timeout: limits.idle_timeout.unwrap_or(NEVER),
                max_age: conn::jittered(max_age, jitter.hash_one(accepted)),
                grace: limits.shutdown_grace,
                park_after: None,
            },
            shutdown: drain.clone(),
        };
        let tls = opts.tls.clone();
        let timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let ended = match tls {
                None => conn.serve(stream).await,
                Some(acceptor) => {
                    match tls_handshake(&acceptor, stream, timeout, &conn.shutdown).await {
                        Ok(tls) => conn.serve(tls).await,
                        Err(e) => Ended::Done(Err(e), None),
                    }
                }
            };
            match ended {
                Ended::Done(Ok(()), _) => {}
                Ended::Done(Err(e), cause) => tracing::debug!(
                    client.addr = %peer,
                    error = %e,
                    closed_for = cause.map(conn::CloseCause::label),
                    "connection ended with an error"
                ),
                Ended::DrainTimedOut(cause) => tracing::debug!(
                    client.addr = %peer,
                    closed_for = cause.label(),
                    "connection dropped with requests in flight after the grace period"
                ),
            }
        });
    }
    // The listener closes before any connection starts draining: a client whose connection
    // ends with a drain answer (`Connection: close`) and reconnects must be refused, not
    // land in the backlog of a listener about to close (a reset after its request).
    drop(listener);
    drain.cancel();
    connections.close();
    tracing::info!("draining in-flight requests");
    // Each connection closes gracefully on `shutdown` and drops itself after the grace time.
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "drain timed out; closing remaining connections"
        );
    }
}

/// One accepted connection and what serving it needs.
struct Conn<S> {
    builder: &'static auto::Builder<TokioExecutor>,
    service: S,
    accepted_at: Instant,
    lifetime: Lifetime,
    shutdown: CancellationToken,
}

impl<S, B> Conn<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Serves `io` until the connection ends, closing it gracefully when idle, too old, or on
    /// shutdown ([`conn::drive`]).
    ///
    /// Not an `async fn`: everything is built here and only the boxed connection and the
    /// drive's own state live in the task while the connection is open (an async function
    /// would keep `self` and `io` as well, for the connection's whole life).
    fn serve<IO>(self, io: IO) -> impl std::future::Future<Output = Ended<BoxError>> + Send
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.accepted_at);
        let service = Tracked::new(self.service, Arc::clone(&activity));
        let mut conn = Box::pin(self.builder.serve_connection(TokioIo::new(io), service));
        let (lifetime, shutdown) = (self.lifetime, self.shutdown);
        async move {
            conn::drive(
                conn.as_mut(),
                |c| c.graceful_shutdown(),
                || {},
                activity,
                lifetime,
                shutdown,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests;
