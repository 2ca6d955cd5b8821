//! Accept loop and connection handling for the public listener: optional TLS, HTTP/1.1 and
//! HTTP/2 (hyper-util auto), limits, connection lifetimes and graceful drain. The admin
//! listener uses the HTTP kit's plain loop ([`residency_http::serve`]); this one adds the
//! smuggling guard, the per-address cap and connection lifetimes, and builds its connections
//! and TLS handshakes with the kit's [`residency_http::serve::Limits::connection_builder`] and
//! [`residency_http::serve::tls_handshake`].
//!
//! - At most `max_connections` connections are served at once (a semaphore permit is taken
//!   before `accept`, as in mini-redis), the rest wait in the kernel's accept queue.
//! - At most `max_connections_per_ip` of them from one client address ([`per_ip`]): one more
//!   is closed as soon as it is accepted (its permit released at once) and counted in
//!   `residency_gateway_connections_refused_total{reason="per_ip_limit"}`, so one address holding idle
//!   connections cannot make the listener hang for everyone else.
//! - HTTP/1: a client has `header_read_timeout` to send a header block of at most
//!   `max_header_bytes`; beyond that hyper answers 431 and closes. Requests whose body framing
//!   is ambiguous (`Content-Length` with `Transfer-Encoding`, ...) get 400 from [`smuggle`],
//!   which sits between the stream and hyper.
//! - HTTP/2: bounded concurrent streams (excess streams are refused with `REFUSED_STREAM`),
//!   header list size, pending/error resets (rapid reset abuse: `GOAWAY` with
//!   `ENHANCE_YOUR_CALM`), keep-alive pings that close a connection whose peer is gone, and
//!   `header_read_timeout` for a header block (`HEADERS` and its `CONTINUATION`s) or a frame
//!   header the client left unfinished: [`smuggle`] follows the frame headers and ends the
//!   connection.
//! - Lifetimes ([`residency_http::serve::conn`]): a connection with no request in flight for `idle_timeout`, or older
//!   than `max_connection_age` (less up to 10 % jitter), or open when shutdown starts, is
//!   closed gracefully (HTTP/2 `GOAWAY`; HTTP/1 closes once idle or after the current
//!   response) and dropped if its requests have not finished `shutdown_grace` later.
//! - Shutdown: close the listener at once (new connections are refused), then close every
//!   connection gracefully (HTTP/2 `GOAWAY`; HTTP/1 answers with `Connection: close` for up
//!   to [`residency_http::serve::conn::HTTP1_DRAIN_WINDOW`]), wait for up to
//!   `shutdown_grace` for them (a [`TaskTracker`] of the connection tasks).
//!
//! - TLS: the client's server name (SNI) is put on every request of the connection as a
//!   [`TlsServerName`] extension, so the request path can hold a customer's hostname to that
//!   customer's credentials and refuse an SNI/`Host` mismatch.
//!
//! Not handled here: what a request means; that is the service passed in.

pub(crate) mod cores;
pub(crate) mod per_ip;
pub(crate) mod smuggle;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use residency_config::gateway::Limits;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics as m;
use per_ip::PerIp;
use residency_http::serve::conn::{self, Activity, CloseCause, Ended, Lifetime, Tracked};
use smuggle::{GuardLimits, Mode};

/// Connection-level settings of one listener.
#[derive(Clone)]
pub(crate) struct ServeOptions {
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
    pub(crate) fn from_limits(limits: &Limits, tls: Option<TlsAcceptor>) -> Self {
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

    /// The HTTP kit's connection builder (HTTP/1 header-read timeout and 431 limit, HTTP/2
    /// stream, header-list, rapid-reset and keep-alive limits) with these limits.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        residency_http::serve::Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: Some(self.max_header_bytes),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            shutdown_grace: self.shutdown_grace,
            idle_timeout: Some(self.idle_timeout),
            max_connection_age: Some(self.max_connection_age),
        }
        .connection_builder()
    }

    fn guard_limits(&self) -> GuardLimits {
        GuardLimits {
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: self.header_read_timeout,
        }
    }
}

/// Serves `listener` with `service` until `shutdown`, then drains. With `cores`, each
/// connection is served on one of the per-core runtimes ([`cores`]); otherwise it is a task of
/// the current runtime.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    opts: ServeOptions,
    service: S,
    cores: Option<cores::Cores>,
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
    // Lives for the process (one per listener start): hyper-util's connection borrows its
    // builder, and a builder owned by each connection's task would stay in the task for the
    // connection's whole life (with the stream and the service beside it).
    let builder: &'static auto::Builder<TokioExecutor> = Box::leak(Box::new(opts.builder()));
    let connections = TaskTracker::new();
    // Cancelled once the listener is closed: what the connections drain on.
    let drain = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let per_ip = PerIp::new(opts.max_connections_per_ip);
    let jitter = RandomState::new();
    let mut accepted = 0u64;
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
        let Some(ip_slot) = per_ip.admit(peer.ip()) else {
            // Closed at once: the stream and the permit are dropped here.
            metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "per_ip_limit")
                .increment(1);
            tracing::debug!(client.addr = %peer, "connection refused: too many from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        accepted += 1;
        let conn = Conn {
            builder,
            service: service.clone(),
            tls: opts.tls.clone(),
            guard_limits: opts.guard_limits(),
            peer,
            accepted_at: Instant::now(),
            lifetime: Lifetime {
                idle_timeout: opts.idle_timeout,
                max_age: conn::jittered(opts.max_connection_age, jitter.hash_one(accepted)),
                grace: opts.shutdown_grace,
            },
            shutdown: drain.clone(),
        };
        let slots = (permit, ip_slot);
        let Some(cores) = &cores else {
            connections.spawn(conn.run_counted(stream, slots));
            continue;
        };
        // Moved to the chosen runtime's reactor: out of this one as a std stream, registered
        // again on the core's thread.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, client.addr = %peer, "cannot hand the connection to a core");
                continue;
            }
        };
        cores
            .pick(accepted)
            .spawn(connections.track_future(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => conn.run_counted(stream, slots).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the connection on its core");
                    }
                }
            }));
    }
    // The listener closes before any connection starts draining: a client whose connection
    // ends with a drain answer (`Connection: close`) and reconnects must be refused, not
    // land in the backlog of a listener about to close (a reset after its request).
    drop(listener);
    drain.cancel();
    connections.close();
    // Each connection closes gracefully on `shutdown` and drops itself after the grace time.
    if tokio::time::timeout(opts.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over with connections still open");
    }
}

/// The server name (SNI) the client sent in its TLS handshake, lowercase: a request
/// extension on every request of that connection (the custom-domain check reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsServerName(pub(crate) Arc<str>);

/// The connection's peer address: a request extension on every request (the signup route's
/// per-IP rate limit reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// Tags every request of one connection with the connection's [`TlsServerName`] and
/// [`ClientAddr`].
#[derive(Clone)]
struct WithServerName<S> {
    inner: S,
    sni: Option<TlsServerName>,
    peer: SocketAddr,
}

impl<S, B> Service<Request<Incoming>> for WithServerName<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(sni) = &self.sni {
            req.extensions_mut().insert(sni.clone());
        }
        req.extensions_mut().insert(ClientAddr(self.peer));
        self.inner.call(req)
    }
}

/// One accepted connection and what serving it needs.
struct Conn<S> {
    builder: &'static auto::Builder<TokioExecutor>,
    service: S,
    tls: Option<TlsAcceptor>,
    guard_limits: GuardLimits,
    peer: SocketAddr,
    accepted_at: Instant,
    lifetime: Lifetime,
    shutdown: CancellationToken,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl<S, B> Conn<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// [`Conn::run`] holding the connection's slots (the listener's permit, its address's
    /// slot) until it ends, counted in the open-connections gauge.
    async fn run_counted(self, stream: TcpStream, slots: (OwnedSemaphorePermit, per_ip::IpSlot)) {
        let _slots = slots;
        metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);
        self.run(stream).await;
        metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0);
    }

    /// Serves `stream` (after the TLS handshake, when configured) until it ends.
    async fn run(self, stream: TcpStream) {
        let peer = self.peer;
        let ended = match self.tls.clone() {
            None => Ok(self.serve(stream, Mode::Http1, None).await),
            // Boxed: the handshake's state (a whole rustls connection) is dropped with it
            // instead of staying in the task's layout for the connection's life.
            Some(acceptor) => match Box::pin(self.handshake(&acceptor, stream)).await {
                Ok(tls) => {
                    let session = tls.get_ref().1;
                    let mode = match session.alpn_protocol() {
                        Some(b"h2") => Mode::PassThrough,
                        _ => Mode::Http1,
                    };
                    let sni = session
                        .server_name()
                        .map(|n| TlsServerName(Arc::from(n.to_ascii_lowercase())));
                    Ok(self.serve(tls, mode, sni).await)
                }
                Err(e) => Err(e),
            },
        };
        match ended {
            Ok(Ended::Done(Ok(()), _)) => {}
            Ok(Ended::Done(Err(e), cause)) => tracing::debug!(
                client.addr = %peer,
                error = %e,
                closed_for = cause.map(CloseCause::label),
                "connection ended with an error"
            ),
            Ok(Ended::DrainTimedOut(cause)) => tracing::debug!(
                client.addr = %peer,
                closed_for = cause.label(),
                "connection dropped with requests in flight after the grace period"
            ),
            Err(e) => tracing::debug!(
                client.addr = %peer,
                error = %e,
                "connection ended with an error"
            ),
        }
    }

    /// The TLS handshake, within the header-read timeout, abandoned on shutdown.
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, BoxError> {
        let timeout = self.guard_limits.header_read_timeout;
        residency_http::serve::tls_handshake(acceptor, stream, timeout, &self.shutdown).await
    }

    /// Serves `io` (HTTP/1 and HTTP/2, through the smuggling guard) until it ends, closing it
    /// gracefully when idle, too old, or on shutdown ([`conn::drive`]).
    ///
    /// Not an `async fn`: everything is built here and only the boxed connection (with the
    /// guard and the stream inside) and the drive's own state live in the task while the
    /// connection is open; an async function would also keep `self` and `io` for the
    /// connection's whole life (the task's future measured 22.5 KB before, 3.9 KB after).
    fn serve<IO>(
        self,
        io: IO,
        mode: Mode,
        sni: Option<TlsServerName>,
    ) -> impl std::future::Future<Output = Ended<BoxError>> + Send
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.accepted_at);
        let service = WithServerName {
            inner: self.service,
            sni,
            peer: self.peer,
        };
        let (io, service) = smuggle::guard(io, service, mode, self.guard_limits, self.peer);
        let service = Tracked::new(service, Arc::clone(&activity));
        let conn = Box::pin(self.builder.serve_connection(TokioIo::new(io), service));
        conn::drive(
            conn,
            |c| c.graceful_shutdown(),
            activity,
            self.lifetime,
            self.shutdown,
        )
    }
}
