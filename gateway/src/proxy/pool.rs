//! The keep-alive connections to one region node (one [`Pool`] per upstream), each driven by
//! the task of the client request that uses it, never by a task of its own (pingora's model).
//!
//! hyper-util's pooled client spawns a task per upstream connection and hands every request
//! to it over a channel, so each request woke two tasks besides the client connection's.
//! Here a request takes a parked connection (or opens one), polls that connection's HTTP/1
//! dispatcher itself while it waits for the response head ([`Pool::send`]), then hands the
//! connection to the response body ([`UpstreamBody`]), which keeps polling it while the body
//! streams and parks it again once the body has ended cleanly. Client and upstream I/O of
//! one request are done by one task, as nginx does them in one event-loop callback.
//!
//! A parked connection is polled by no one. Before it is parked it is polled once with a
//! no-op waker: the dispatcher finishes the exchange and asks for the next request, and the
//! wake-ups it registers are no-ops, so a node closing it wakes no stranger's task. When it is
//! taken it is polled again the same way: one the node closed meanwhile is dropped. A request
//! that a reused connection refused before sending a byte (closed at that moment) is sent on
//! another connection; once a byte went out, the error is the client's answer (the request
//! may not be idempotent). Parked connections are taken newest first; one idle longer than
//! [`IDLE_TIMEOUT`] is dropped when the pool is next used, with every older one.
//!
//! A response body dropped before its end (the client went away) drops its connection: what
//! is left of the body would otherwise be read as the next response.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::body::LimitedBody;
use super::tls::NodeConnector;

/// How long a parked connection may wait for its next request (hyper-util's default).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Driver<B> = http1::Connection<MaybeHttpsStream<TokioIo<TcpStream>>, B>;

/// What a request body sent to a node must be (the proxy's is [`LimitedBody`]).
pub(crate) trait SendBody:
    Body<Data = Bytes, Error = Self::E> + Send + Unpin + 'static
{
    /// The body's error.
    type E: Into<Box<dyn std::error::Error + Send + Sync>>;
}

impl<B, E> SendBody for B
where
    B: Body<Data = Bytes, Error = E> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type E = E;
}

/// Why a request got no response from the node.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: TCP connect or TLS handshake failed (the upstream is ejected).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed during the exchange, or the body could not be sent.
    Request(hyper::Error),
}

/// One HTTP/1.1 connection to a node: the sending half and its dispatcher, which whoever
/// waits on the connection polls.
struct Conn<B: SendBody> {
    sender: SendRequest<B>,
    /// `None` once the dispatcher finished (closed, failed); it is never polled again.
    driver: Option<Pin<Box<Driver<B>>>>,
}

impl<B: SendBody> Conn<B> {
    /// Polls the dispatcher: reads, writes, flushes what is due. Forgets it once it ends.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = &mut self.driver {
            if driver.as_mut().poll(cx).is_ready() {
                self.driver = None;
            }
        }
    }

    /// Polls the dispatcher with a no-op waker, registering nothing that could wake a task,
    /// then tells whether the connection can take a request.
    fn settle(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.driver.is_some() && self.sender.is_ready()
    }
}

/// Takes the connections parked longer than [`IDLE_TIMEOUT`] out of `idle` (oldest first, so
/// they are a prefix), for the caller to close once it has let go of the lock.
fn take_expired<B: SendBody>(idle: &mut Vec<Idle<B>>) -> Vec<Idle<B>> {
    let now = Instant::now();
    let fresh = idle.partition_point(|i| now.duration_since(i.since) > IDLE_TIMEOUT);
    idle.drain(..fresh).collect()
}

/// A parked connection and since when it waits.
struct Idle<B: SendBody> {
    conn: Conn<B>,
    since: Instant,
}

/// The keep-alive connections to one node.
pub(crate) struct Pool<B: SendBody = LimitedBody> {
    /// Parked connections, oldest first (taken from the end).
    idle: Mutex<Vec<Idle<B>>>,
    max_idle: usize,
    connector: NodeConnector,
    /// The node's scheme and authority, for the connector.
    origin: Uri,
}

impl<B: SendBody> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl<B: SendBody> Pool<B> {
    /// A pool that opens connections to `origin` with `connector` and parks at most
    /// `max_idle` of them.
    #[must_use]
    pub(crate) fn new(connector: NodeConnector, origin: Uri, max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            connector,
            origin,
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on a parked connection or a new one and
    /// returns the response; its body carries the connection until the body ends.
    ///
    /// # Errors
    /// [`SendError::Connect`] when no connection could be opened, [`SendError::Request`]
    /// when the exchange failed.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> Result<Response<UpstreamBody<B>>, SendError> {
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            let pending = conn.sender.try_send_request(req);
            let mut pending = std::pin::pin!(pending);
            let answer = poll_fn(|cx| {
                conn.drive(cx);
                pending.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(resp) => {
                    let pool = Arc::clone(self);
                    return Ok(resp.map(|body| UpstreamBody {
                        body,
                        conn: Some(conn),
                        pool,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Refused before anything was written: the node had closed it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// The newest parked connection that is still open, if any.
    fn checkout(&self) -> Option<Conn<B>> {
        loop {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let expired = take_expired(&mut idle);
            let newest = idle.pop();
            drop(idle);
            drop(expired);
            let mut conn = newest?.conn;
            if conn.settle() {
                return Some(conn);
            }
        }
    }

    /// Parks `conn` when its exchange completed and it can take another request.
    fn park(&self, mut conn: Conn<B>) {
        if self.max_idle == 0 || !conn.settle() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = take_expired(&mut idle);
        let surplus = if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
            None
        } else {
            Some(conn)
        };
        drop(idle);
        drop((expired, surplus));
    }

    /// Opens a connection (TCP, then TLS for an `https` node).
    async fn connect(&self) -> Result<Conn<B>, SendError> {
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, driver) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(driver)),
        })
    }

    /// Connections parked now (tests).
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A node's response body, streamed to the client; it drives its connection while it is
/// read and parks it in its pool once it has ended.
pub(crate) struct UpstreamBody<B: SendBody = LimitedBody> {
    body: Incoming,
    /// `None` once parked or dropped.
    conn: Option<Conn<B>>,
    pool: Arc<Pool<B>>,
}

impl<B: SendBody> std::fmt::Debug for UpstreamBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}

impl<B: SendBody> UpstreamBody<B> {
    fn park(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.park(conn);
        }
    }
}

impl<B: SendBody> Body for UpstreamBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = &mut this.conn {
            conn.drive(cx);
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.park();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: SendBody> Drop for UpstreamBody<B> {
    fn drop(&mut self) {
        // hyper stops reading a body whose length says it is complete, so a whole body is
        // usually dropped rather than read to `None`; a body cut short takes its connection
        // with it.
        if self.body.is_end_stream() {
            self.park();
        }
    }
}

#[cfg(test)]
mod tests;
