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
//! - Parking: an HTTP/1 connection with no request in flight for `park_idle_after` is
//!   parked. The smuggling guard ends hyper's side of it ([`smuggle::Parking`]), hyper's
//!   connection (its read and write buffers, its state) is dropped, and the task keeps only the
//!   guarded socket until the socket has something to read; then a new hyper connection serves
//!   it, with the same request count, activity and lifetime. A parked connection still closes
//!   after `idle_timeout`, and on shutdown or at its maximum age it is answered for the drain
//!   window like a served idle one. Counted in `residency_gateway_connections_parked`. HTTP/2
//!   connections are not parked.
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
use std::future::{poll_fn, Future};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use residency_config::gateway::Limits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
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
use smuggle::{GuardLimits, Guarded, Mode, Protocol};

/// Connection-level settings of one listener.
#[derive(Clone)]
pub(crate) struct ServeOptions {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Time without a request before a connection is closed gracefully.
    pub idle_timeout: Duration,
    /// Time without a request before an HTTP/1 connection is parked.
    pub park_idle_after: Duration,
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
            park_idle_after: limits.park_idle_after,
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
        self.kit_limits().connection_builder()
    }

    /// The same HTTP/1 settings as [`ServeOptions::builder`], for connections known to be
    /// HTTP/1.
    fn http1_builder(&self) -> http1::Builder {
        self.kit_limits().http1_builder()
    }

    fn kit_limits(&self) -> residency_http::serve::Limits {
        residency_http::serve::Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: Some(self.max_header_bytes),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            shutdown_grace: self.shutdown_grace,
            idle_timeout: Some(self.idle_timeout),
            max_connection_age: Some(self.max_connection_age),
        }
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
        + Unpin
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // Lives for the process (one per listener start): hyper-util's connection borrows its
    // builder, and a builder owned by each connection's task would stay in the task for the
    // connection's whole life (with the stream and the service beside it).
    let builder: &'static auto::Builder<TokioExecutor> = Box::leak(Box::new(opts.builder()));
    let http1: &'static http1::Builder = Box::leak(Box::new(opts.http1_builder()));
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
            http1,
            service: service.clone(),
            tls: opts.tls.clone(),
            guard_limits: opts.guard_limits(),
            peer,
            accepted_at: Instant::now(),
            lifetime: Lifetime {
                idle_timeout: opts.idle_timeout,
                max_age: conn::jittered(opts.max_connection_age, jitter.hash_one(accepted)),
                grace: opts.shutdown_grace,
                park_after: Some(opts.park_idle_after),
            },
            shutdown: drain.clone(),
        };
        let slots = (permit, ip_slot);
        let Some(cores) = &cores else {
            connections.spawn(conn.run_counted(Accepted::Registered(stream), slots));
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
            .spawn(connections.track_future(conn.run_counted(Accepted::Moved(stream), slots)));
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
    http1: &'static http1::Builder,
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
        + Unpin
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// Serves the connection (after the TLS handshake, when configured) until it ends, holding
    /// its slots (the listener's permit, its address's slot) and counted in the
    /// open-connections gauge.
    ///
    /// Not an `async fn` (which would keep its arguments twice), and the connection's future
    /// is boxed ([`Conn::serve`]): an idle connection's task holds this block's few captures
    /// and a pointer. (Measured with `size_of_val`, release: the task of an idle TLS
    /// connection was 11.0 KB with everything inline, now 2.1 KB boxed plus this.)
    #[allow(clippy::manual_async_fn)] // On purpose: see above.
    fn run_counted(
        self,
        stream: Accepted,
        slots: (OwnedSemaphorePermit, per_ip::IpSlot),
    ) -> impl Future<Output = ()> + Send {
        async move {
            let stream = match stream {
                Accepted::Registered(s) => s,
                Accepted::Moved(s) => match TcpStream::from_std(s) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the connection on its core");
                        return;
                    }
                },
            };
            metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);
            let peer = self.peer;
            // Only boxed futures and results cross the awaits below: a TLS stream held in a
            // match scrutinee or a binding would be kept beside the connection's future.
            let served = match self.tls.clone() {
                None => Ok(self.serve(stream, Mode::Http1, None)),
                // Boxed: the handshake's state (a whole rustls connection) is dropped with it
                // instead of staying in the task's layout for the connection's life.
                Some(acceptor) => match Box::pin(self.handshake(&acceptor, stream)).await {
                    Ok(tls) => Ok(self.serve_tls(tls)),
                    Err(e) => Err(e),
                },
            };
            let ended = match served {
                Ok(connection) => Ok(connection.await),
                Err(e) => Err(e),
            };
            log_end(peer, ended);
            metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0);
            drop(slots);
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

    /// [`Conn::serve`] for a TLS stream: HTTP/2 when ALPN chose `h2`, the client's server
    /// name on every request.
    fn serve_tls(self, tls: TlsStream<TcpStream>) -> Connection {
        let session = tls.get_ref().1;
        let mode = match session.alpn_protocol() {
            Some(b"h2") => Mode::PassThrough,
            _ => Mode::Http1,
        };
        let sni = session
            .server_name()
            .map(|n| TlsServerName(Arc::from(n.to_ascii_lowercase())));
        self.serve(tls, mode, sni)
    }

    /// Serves `io` (HTTP/1 and HTTP/2, through the smuggling guard) until it ends
    /// ([`serve_guarded`]).
    ///
    /// Not an `async fn`, and the future boxed: everything is built here, and the task keeps
    /// only a pointer to the connection's future while it is open, so nothing the caller held
    /// before (the stream, `self`) is kept beside it by the caller's layout. (The task of an
    /// idle TLS connection measured 11.0 KB with the future inline, `size_of_val`, release.)
    fn serve<IO>(self, io: IO, mode: Mode, sni: Option<TlsServerName>) -> Connection
    where
        IO: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + Sync + 'static,
    {
        let activity = Activity::new(self.accepted_at);
        let service = WithServerName {
            inner: self.service,
            sni,
            peer: self.peer,
        };
        let (io, service) = smuggle::guard(io, service, mode, self.guard_limits, self.peer);
        let service = Tracked::new(service, Arc::clone(&activity));
        let how = Served {
            builder: self.builder,
            http1: self.http1,
            activity,
            lifetime: self.lifetime,
            shutdown: self.shutdown,
        };
        Box::pin(serve_guarded(how, io, service))
    }
}

/// A connection's whole service, boxed.
type Connection = Pin<Box<dyn Future<Output = Ended<BoxError>> + Send>>;

/// An accepted connection's stream: registered with this runtime's reactor, or a std stream
/// handed over to be registered on the core that serves it.
enum Accepted {
    Registered(TcpStream),
    Moved(std::net::TcpStream),
}

/// Logs how a connection ended, when that is worth a line.
fn log_end(peer: SocketAddr, ended: Result<Ended<BoxError>, BoxError>) {
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

/// How a connection is served, besides its stream and service.
struct Served {
    builder: &'static auto::Builder<TokioExecutor>,
    http1: &'static http1::Builder,
    activity: Arc<Activity>,
    lifetime: Lifetime,
    shutdown: CancellationToken,
}

/// Serves a guarded connection until it ends, closing it gracefully when idle, too old, or on
/// shutdown ([`conn::drive`]). HTTP/2 (by ALPN or its preface) goes to hyper-util's
/// connection. HTTP/1 is served by hyper's HTTP/1 connection and parked whenever it has been
/// idle for `lifetime.park_after`: hyper's connection ends (the guard gives it an end of
/// stream), is taken apart and dropped, and the guarded stream waits alone
/// ([`wait_parked`]); when the client sends again, a new hyper connection takes over.
///
/// Not an `async fn`: an async function keeps each argument twice (the argument and the
/// binding it is moved into); the block below captures the stream and the service once and
/// works on them in place.
fn serve_guarded<IO, S, B>(
    how: Served,
    mut io: Guarded<IO>,
    mut service: S,
) -> impl Future<Output = Ended<BoxError>> + Send
where
    IO: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let Served {
        builder,
        http1,
        activity,
        lifetime,
        shutdown,
    } = how;
    async move {
        // The first bytes, within the header-read timeout (the guard's). A client that has
        // sent nothing when shutdown starts has the HTTP/1 drain window to begin, as a served
        // idle connection does, and is closed after it.
        let protocol = {
            let mut first = pin!(poll_fn(|cx| io.poll_protocol(cx)));
            tokio::select! {
                biased;
                p = first.as_mut() => p,
                () = shutdown.cancelled() => {
                    let window = conn::HTTP1_DRAIN_WINDOW.min(lifetime.grace);
                    match tokio::time::timeout(window, first).await {
                        Ok(p) => p,
                        Err(_) => return Ended::Done(Ok(()), Some(CloseCause::Shutdown)),
                    }
                }
            }
        };
        match protocol {
            Err(e) => return Ended::Done(Err(e.into()), None),
            Ok(Protocol::Http2) => {
                return Box::pin(async move {
                    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
                    conn::drive(
                        conn.as_mut(),
                        |c| c.graceful_shutdown(),
                        || {},
                        activity,
                        lifetime,
                        shutdown,
                    )
                    .await
                })
                .await;
            }
            Ok(Protocol::Http1) => {}
        }
        loop {
            // Served until parked in a block of its own: the box (moved out of, not yet
            // freed) or a binding living to the end of the loop body would be kept across
            // the park, beside `io`.
            {
                let parked = {
                    let parking = io.parking();
                    // On the heap, so a parked connection's task holds none of it.
                    let mut conn = Box::new(http1.serve_connection(TokioIo::new(io), service));
                    // Boxed: the drive's timers are not kept while the connection is parked.
                    let ended = Box::pin(conn::drive(
                        Pin::new(&mut *conn),
                        |c| c.graceful_shutdown(),
                        || parking.request(),
                        Arc::clone(&activity),
                        lifetime,
                        shutdown.clone(),
                    ))
                    .await;
                    if !matches!(ended, Ended::Done(Ok(()), None)) {
                        return ended.map_err(Into::into);
                    }
                    take_back(*conn)
                };
                match parked {
                    Some((i, s)) => (io, service) = (i, s),
                    // The client closed it.
                    None => return Ended::Done(Ok(()), None),
                }
            }
            metrics::gauge!(m::CONNECTIONS_PARKED).increment(1.0);
            let closed = wait_parked(&io, &activity, &lifetime, &shutdown).await;
            metrics::gauge!(m::CONNECTIONS_PARKED).decrement(1.0);
            if let Some(cause) = closed {
                // TLS `close_notify` and FIN, as hyper would have closed it.
                let _ = tokio::time::timeout(lifetime.grace, io.shutdown()).await;
                return Ended::Done(Ok(()), Some(cause));
            }
        }
    }
}

/// The guarded stream and the service of hyper's connection after it ended, if the guard
/// parked it (else the client closed it). Not async, so nothing of hyper's connection is
/// kept in the caller's layout while the connection is parked.
fn take_back<IO, S, B>(conn: http1::Connection<TokioIo<Guarded<IO>>, S>) -> Option<(Guarded<IO>, S)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let parts = conn.into_parts();
    let mut io = parts.io.into_inner();
    if !io.take_parked() {
        return None;
    }
    io.give_back(&parts.read_buf);
    Some((io, parts.service))
}

/// Waits while a connection is parked: `None` when it should be served again (the client
/// sent something, or closed: hyper reads which), or why it is closed instead: idle for
/// `idle_timeout`; on shutdown or at its maximum age, nothing received within the HTTP/1 drain
/// window (what arrives within it is served, and the served connection drains).
async fn wait_parked<IO: ReadReady>(
    io: &Guarded<IO>,
    activity: &Activity,
    lifetime: &Lifetime,
    shutdown: &CancellationToken,
) -> Option<CloseCause> {
    let since = activity.idle_since().unwrap_or_else(Instant::now);
    let mut readable = pin!(poll_fn(|cx| io.get_ref().poll_read_ready(cx)));
    let cause = tokio::select! {
        biased;
        _ = readable.as_mut() => return None,
        () = tokio::time::sleep_until(since + lifetime.idle_timeout) => return Some(CloseCause::Idle),
        () = shutdown.cancelled() => CloseCause::Shutdown,
        () = tokio::time::sleep_until(activity.opened() + lifetime.max_age) => CloseCause::MaxAge,
    };
    let window = conn::HTTP1_DRAIN_WINDOW.min(lifetime.grace);
    match tokio::time::timeout(window, readable).await {
        Ok(_) => None,
        Err(_) => Some(cause),
    }
}

/// A stream that can say when it has something to read without reading it (a parked
/// connection waits so, holding no buffer).
pub(crate) trait ReadReady {
    /// Ready once the socket has bytes (or an end, or an error) to read.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for TlsStream<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A parked connection's TLS session holds no decrypted bytes: hyper was waiting for
        // more when the guard parked it, so everything received had been read.
        self.get_ref().0.poll_read_ready(cx)
    }
}
