//! Request-smuggling guard: refuses HTTP/1 requests whose body framing two parsers could read
//! differently (SPEC §5: "request smuggling (CL+TE) → 400"), before hyper sees them.
//!
//! hyper 1.x, given both `Content-Length` and `Transfer-Encoding`, silently reads the body as
//! chunked and closes afterwards, so the service never learns of the ambiguity. The guard
//! therefore sits between the (TLS) stream and hyper and follows the request framing of
//! every HTTP/1 request as the bytes flow to hyper ([`framing`] decides, this module moves the
//! bytes):
//!
//! - A request head is held until it is complete and checked; body bytes then go to hyper
//!   unchanged, `Content-Length` bodies and chunk data straight from the socket into hyper's
//!   buffer. Only heads, chunk-size lines and trailer lines are parsed; nothing is re-encoded
//!   and nothing is allocated per request.
//! - A refused *head* never reaches hyper. In its place hyper gets a fixed, harmless
//!   `GET / HTTP/1.1` head, which [`GuardedService`] recognises by its position on the
//!   connection (never by its bytes, which a client could send too) and answers with a
//!   problem+json 400 and `connection: close`. hyper thus writes the 400 after the responses
//!   to any earlier pipelined requests, then closes; nothing after the refused head is read.
//! - A refused *chunk* (a bad size line, terminator or trailer) arrives after its head went on
//!   to hyper: hyper's next read fails, the request body ends in an error (so the region node
//!   never receives a complete request), and [`GuardedService`] replaces whatever the service
//!   answered with the same 400.
//! - HTTP/2 has no such ambiguity: a connection negotiated as `h2` by ALPN, or opening with
//!   the HTTP/2 preface, passes through unchanged. Only its frame headers are followed
//!   ([`h2`]), so that a header block left unfinished for longer than the header-read timeout
//!   ends the connection (hyper's HTTP/2 server has no such timeout).
//! - Heads over the header limit or with too many fields are hyper's to refuse (431): the
//!   guard lets them through and stops inspecting; hyper closes the connection after the 431.
//! - The guard enforces the header-read timeout while it holds a partial head (hyper cannot
//!   see a head it has not received), including the first bytes of a connection, and while an
//!   HTTP/2 header block is unfinished.
//! - Before hyper is chosen, [`Guarded::poll_protocol`] reads a connection's first bytes to
//!   tell HTTP/2 (the preface) from HTTP/1, so the listener can serve HTTP/1 with hyper's
//!   own HTTP/1 connection, which it can take apart again.
//! - Parking ([`Parking`]): asked to, between two HTTP/1 requests with nothing held and
//!   everything written flushed, the guard ends hyper's side of the connection: hyper reads
//!   an end of stream (an idle keep-alive connection closed by its client, which hyper ends
//!   quietly), and its shutdown does not reach the socket. The listener then takes the guard
//!   back from hyper's connection and drops that, buffers and all, until the socket has
//!   something to read.

mod framing;
pub(crate) mod h2;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::service::Service;
use residency_core::headers::REQUEST_ID;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use framing::{Framing, Step};
pub(crate) use framing::{Mode, Refusal};
use h2::HeaderBlocks;

use crate::error::GatewayError;

/// What hyper reads in place of a refused head: a request it parses without fuss and that
/// [`GuardedService`] answers with the 400 (were it ever served, it would be a 401).
const STAND_IN_HEAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
/// The buffer for held heads starts this big and grows up to the header limit when needed.
const INITIAL_BUFFER: usize = 4096;

/// [`Shared::park`]: nothing asked.
const PARK_NONE: u8 = 0;
/// [`Shared::park`]: the listener asks the guard to park at its next read.
const PARK_REQUESTED: u8 = 1;
/// [`Shared::park`]: the guard gave hyper an end of stream to park the connection.
const PARKED: u8 = 2;

/// Wraps one accepted connection: `io` for hyper to read and write through, `service` for
/// hyper to call. `mode` says whether HTTP/1 is inspected (plain TCP, or TLS without `h2`).
pub(crate) fn guard<IO, S>(
    io: IO,
    service: S,
    mode: Mode,
    limits: GuardLimits,
    peer: SocketAddr,
) -> (Guarded<IO>, GuardedService<S>) {
    let shared = Arc::new(Shared::default());
    let io = Guarded {
        io,
        framing: Framing::new(mode, limits.max_header_bytes),
        buf: Vec::new(),
        pos: 0,
        ready: 0,
        end: 0,
        phase: Phase::Open,
        received: false,
        h2: HeaderBlocks::new(),
        unflushed: false,
        deadline: Deadline {
            timeout: limits.header_read_timeout,
            opened: Instant::now(),
            sleep: None,
            armed_for: None,
        },
        shared: Arc::clone(&shared),
        peer,
    };
    (
        io,
        GuardedService {
            inner: service,
            shared,
        },
    )
}

/// The limits the guard shares with hyper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardLimits {
    /// The largest head inspected; a larger one is left to hyper's 431.
    pub max_header_bytes: usize,
    /// Time to receive a complete head the guard is holding, or a complete HTTP/2 header
    /// block.
    pub header_read_timeout: Duration,
}

/// What the connection and its service know about refusals.
#[derive(Debug, Default)]
struct Shared {
    /// Requests handed to the service so far (HTTP/1 serves them one at a time, in order).
    dispatched: AtomicU64,
    /// `(request number << 8) | refusal code`, or 0.
    refused: AtomicU64,
    /// `PARK_*`: whether the connection is asked to park, or parked.
    park: AtomicU8,
}

impl Shared {
    fn refuse(&self, request: u64, refusal: Refusal) {
        self.refused
            .store((request << 8) | refusal.code(), Ordering::Release);
    }

    fn refusal_for(&self, request: u64) -> Option<Refusal> {
        let v = self.refused.load(Ordering::Acquire);
        if v != 0 && v >> 8 == request {
            Refusal::from_code(v & 0xff)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Following the framing.
    Open,
    /// Handing hyper the stand-in head; `sent` bytes of it so far.
    StandIn { sent: usize },
    /// The stand-in is out: hyper answers it and closes, nothing more is read.
    Stalled,
    /// A body was refused: every read fails.
    Failed(Refusal),
    /// The client closed its side.
    Eof,
}

/// What the header-read deadline runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// An HTTP/1 head (by number of heads before it), or the first bytes of the connection.
    Head(u64),
    /// An unfinished HTTP/2 header block or frame header ([`HeaderBlocks::unfinished`]).
    H2Block(u64),
}

/// The header-read deadline of the head being held.
#[derive(Debug)]
struct Deadline {
    timeout: Duration,
    opened: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// What the timer runs for.
    armed_for: Option<Awaited>,
}

/// The client stream as hyper sees it: only bytes whose framing has been checked.
#[derive(Debug)]
pub(crate) struct Guarded<IO> {
    io: IO,
    framing: Framing,
    /// Received bytes: `pos..ready` checked and waiting for hyper, `ready..end` not yet
    /// checked (a partial head or line).
    buf: Vec<u8>,
    pos: usize,
    ready: usize,
    end: usize,
    phase: Phase,
    /// Whether the client has sent anything yet.
    received: bool,
    /// HTTP/2 frame boundaries, followed once [`Framing::is_h2`].
    h2: HeaderBlocks,
    /// Bytes were written and not flushed since.
    unflushed: bool,
    deadline: Deadline,
    shared: Arc<Shared>,
    peer: SocketAddr,
}

/// The connection's protocol, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// Asks a guarded connection to park (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Parking(Arc<Shared>);

impl Parking {
    /// Asks the guard to park at hyper's next read; it declines unless the connection is then
    /// between two HTTP/1 requests with nothing held and nothing left to flush.
    pub(crate) fn request(&self) {
        let _ = self.0.park.compare_exchange(
            PARK_NONE,
            PARK_REQUESTED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl<IO> Guarded<IO> {
    /// The handle that asks this connection to park.
    pub(crate) fn parking(&self) -> Parking {
        Parking(Arc::clone(&self.shared))
    }

    /// Whether the guard parked the connection (it gave hyper an end of stream for that);
    /// if so, it is ready to be read again.
    pub(crate) fn take_parked(&mut self) -> bool {
        self.shared
            .park
            .compare_exchange(PARKED, PARK_NONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Bytes hyper had read and not used when its connection ended: read again first. (They
    /// passed the guard already.)
    pub(crate) fn give_back(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = bytes.to_vec();
        buf.extend_from_slice(&self.buf[self.pos..self.end]);
        self.ready = self.ready - self.pos + bytes.len();
        self.end = buf.len();
        self.pos = 0;
        self.buf = buf;
    }

    /// The stream under the guard.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Whether hyper may be given an end of stream now to park the connection: between two
    /// HTTP/1 requests (after at least one, so a first head stays under the header-read
    /// timeout), nothing received and not passed on, everything written flushed.
    fn parkable(&self) -> bool {
        self.phase == Phase::Open
            && self.end == 0
            && self.framing.requests() > 0
            && self.framing.expects_head()
            && !self.framing.is_h2()
            && !self.unflushed
    }
}

impl<IO: AsyncRead + Unpin> Guarded<IO> {
    /// Reads the connection's first bytes until they tell its protocol: the HTTP/2 preface,
    /// or anything else (HTTP/1; also the end of the stream). The bytes stay held for hyper.
    /// Within the header-read timeout, as a first head.
    pub(crate) fn poll_protocol(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Protocol>> {
        loop {
            if self.framing.is_h2() {
                return Poll::Ready(Ok(Protocol::Http2));
            }
            if self.phase != Phase::Open {
                return Poll::Ready(Ok(Protocol::Http1));
            }
            match framing::is_preface(&self.buf[self.pos..self.end]) {
                Some(true) => return Poll::Ready(Ok(Protocol::Http2)),
                Some(false) => return Poll::Ready(Ok(Protocol::Http1)),
                None => {}
            }
            // At the end of the stream the phase is `Eof`: HTTP/1 on the next turn.
            ready!(self.fill(cx))?;
        }
    }

    fn read(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match self.shared.park.load(Ordering::Acquire) {
            PARK_REQUESTED if self.parkable() => {
                // hyper sees an idle keep-alive connection end and finishes quietly.
                self.shared.park.store(PARKED, Ordering::Release);
                return Poll::Ready(Ok(()));
            }
            PARK_REQUESTED => self.shared.park.store(PARK_NONE, Ordering::Release),
            PARKED => return Poll::Ready(Ok(())),
            _ => {}
        }
        loop {
            if self.pos < self.ready {
                let n = (self.ready - self.pos).min(out.remaining());
                out.put_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == self.end {
                    self.clear_buffer();
                }
                return Poll::Ready(Ok(()));
            }
            match self.phase {
                Phase::Open => {}
                Phase::StandIn { sent } => {
                    let n = (STAND_IN_HEAD.len() - sent).min(out.remaining());
                    out.put_slice(&STAND_IN_HEAD[sent..sent + n]);
                    self.phase = if sent + n == STAND_IN_HEAD.len() {
                        Phase::Stalled
                    } else {
                        Phase::StandIn { sent: sent + n }
                    };
                    return Poll::Ready(Ok(()));
                }
                // No waker is kept: hyper is woken by the stand-in's response and then closes.
                Phase::Stalled => return Poll::Pending,
                Phase::Failed(refusal) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        refusal.detail(),
                    )))
                }
                Phase::Eof => return Poll::Ready(Ok(())),
            }
            match self.framing.step(&self.buf[self.ready..self.end]) {
                Step::Release(n) => {
                    if self.framing.is_h2() {
                        self.h2.feed(&self.buf[self.ready..self.ready + n]);
                    }
                    self.ready += n;
                    continue;
                }
                Step::Refuse(refusal) => {
                    self.refuse(refusal);
                    continue;
                }
                Step::PassThrough(limit) => return self.pass_through(cx, out, limit),
                Step::NeedMore => {}
            }
            if !ready!(self.fill(cx))? {
                // An unfinished head or line is dropped: hyper just sees the end.
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Reads more of the client's bytes after those held: `true` if some arrived, `false` at
    /// the end of the stream (anything held is dropped, the phase is `Eof`); pending (or the
    /// header-read timeout) as [`Guarded::pending`].
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.make_room() {
            // Unreachable: the framing never holds more than `max_pending` bytes (the first
            // bytes, at most the preface), and the buffer may grow that big.
            return Poll::Ready(Err(io::Error::other("smuggling guard buffer full")));
        }
        let mut into = ReadBuf::new(&mut self.buf[self.end..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut into) {
            Poll::Pending => self.pending(cx).map_ok(|()| false),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = into.filled().len();
                if n == 0 {
                    self.clear_buffer();
                    self.phase = Phase::Eof;
                    return Poll::Ready(Ok(false));
                }
                self.received = true;
                self.end += n;
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Reads body bytes (at most `limit`) from the socket straight into hyper's buffer.
    fn pass_through(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
        limit: u64,
    ) -> Poll<io::Result<()>> {
        let n = if limit >= out.remaining() as u64 {
            let before = out.filled().len();
            match Pin::new(&mut self.io).poll_read(cx, out) {
                Poll::Pending => return self.pending(cx),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => out.filled().len() - before,
            }
        } else {
            // `limit` is less than what `out` has room for, so it fits a `usize`.
            let room = out.initialize_unfilled_to(usize::try_from(limit).unwrap_or(0));
            let mut limited = ReadBuf::new(room);
            match Pin::new(&mut self.io).poll_read(cx, &mut limited) {
                Poll::Pending => return self.pending(cx),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = limited.filled().len();
                    out.advance(n);
                    n
                }
            }
        };
        if n == 0 {
            self.phase = Phase::Eof;
        } else {
            self.received = true;
            self.framing.passed_through(n);
            if self.framing.is_h2() {
                let filled = out.filled();
                self.h2.feed(&filled[filled.len() - n..]);
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The socket has nothing now: wait, unless the head being held is overdue.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.head_overdue(cx) {
            Some(Awaited::Head(_)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            ))),
            Some(Awaited::H2Block(_)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "http/2 header block not received in time",
            ))),
            None => {
                if self.end == 0 {
                    // Nothing held: an idle connection keeps no read buffer (it comes back,
                    // 4 KiB, on the next read), so 10,000 idle clients cost 40 MiB less.
                    self.buf = Vec::new();
                }
                Poll::Pending
            }
        }
    }

    /// What the guard is waiting for, if its deadline has passed; otherwise the timer will
    /// wake `cx`. A head is timed from the connection's start for the first one, from its
    /// first byte for later ones (an idle keep-alive connection is the listener's to time
    /// out). An unfinished HTTP/2 header block is timed from the first time the socket had
    /// nothing more of it.
    fn head_overdue(&mut self, cx: &mut Context<'_>) -> Option<Awaited> {
        let first = self.framing.requests() == 0;
        let partial = self.ready < self.end;
        let awaited = if !self.received || (self.framing.expects_head() && (first || partial)) {
            Some(Awaited::Head(self.framing.requests()))
        } else if self.framing.is_h2() {
            self.h2.unfinished().map(Awaited::H2Block)
        } else {
            None
        };
        let Some(awaited) = awaited else {
            // Unregister a timer left from an earlier head, so it cannot wake the connection.
            self.deadline.sleep = None;
            self.deadline.armed_for = None;
            return None;
        };
        let d = &mut self.deadline;
        if d.armed_for != Some(awaited) {
            let start = match awaited {
                Awaited::Head(_) if first => d.opened,
                _ => Instant::now(),
            };
            let at = start + d.timeout;
            match &mut d.sleep {
                Some(sleep) => sleep.as_mut().reset(at),
                None => d.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            d.armed_for = Some(awaited);
        }
        d.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
            .then_some(awaited)
    }

    fn refuse(&mut self, refusal: Refusal) {
        // A refused head is the next request; a refused body belongs to the current one.
        let request = self.framing.requests() + u64::from(!refusal.in_body());
        tracing::info!(
            client.addr = %self.peer,
            reason = refusal.label(),
            request,
            "refusing a request with ambiguous framing"
        );
        self.shared.refuse(request, refusal);
        self.phase = if refusal.in_body() {
            Phase::Failed(refusal)
        } else {
            Phase::StandIn { sent: 0 }
        };
        self.clear_buffer();
    }

    /// Makes room after `end`: compacts, or grows up to what the framing may hold.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.ready -= self.pos;
            self.pos = 0;
            return true;
        }
        let cap = self.framing.max_pending() + 1;
        if self.buf.len() >= cap {
            return false;
        }
        let len = (self.buf.len() * 2).clamp(INITIAL_BUFFER, cap);
        self.buf.resize(len, 0);
        true
    }

    /// Forgets the buffered bytes; a buffer grown for a large head shrinks back.
    fn clear_buffer(&mut self) {
        self.pos = 0;
        self.ready = 0;
        self.end = 0;
        if self.buf.len() > INITIAL_BUFFER {
            self.buf.truncate(INITIAL_BUFFER);
            self.buf.shrink_to_fit();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = ready!(Pin::new(&mut this.io).poll_flush(cx));
        if flushed.is_ok() {
            this.unflushed = false;
        }
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.park.load(Ordering::Acquire) == PARKED {
            // Parked: hyper's connection ends, the client's does not.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The connection's service, answering refused requests with a 400 in their place.
#[derive(Debug, Clone)]
pub(crate) struct GuardedService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, R, B> Service<Request<R>> for GuardedService<S>
where
    S: Service<Request<R>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<Either<B, Full<Bytes>>>;
    type Error = Infallible;
    type Future = GuardedFuture<S::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        // A request in flight is never parked: hyper reads while it waits for the answer (to
        // notice a client gone), and an end of stream then would abort the request. The
        // listener asks only while nothing is in flight and the guard answers at hyper's next
        // read; this also drops an ask that was somehow still pending.
        let _ = self.shared.park.compare_exchange(
            PARK_REQUESTED,
            PARK_NONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let request = self.shared.dispatched.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(refusal) = self.shared.refusal_for(request) {
            // The stand-in for a refused head: the service never sees it.
            return GuardedFuture::Refused {
                response: Some(refused(refusal, None)),
            };
        }
        GuardedFuture::Served {
            inner: self.inner.call(req),
            shared: Arc::clone(&self.shared),
            request,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response to one request: the service's, or the 400 of a refusal.
    #[project = GuardedFutureProj]
    pub(crate) enum GuardedFuture<F> {
        /// A refused head's 400 (taken when polled).
        Refused { response: Option<Response<Full<Bytes>>> },
        /// The service's answer, replaced by a 400 if the request's body was refused.
        Served { #[pin] inner: F, shared: Arc<Shared>, request: u64 },
    }
}

impl<F, B> Future for GuardedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedFutureProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("GuardedFuture polled after completion")
                .map(Either::Right))),
            GuardedFutureProj::Served {
                inner,
                shared,
                request,
            } => {
                let Ok(resp) = ready!(inner.poll(cx));
                Poll::Ready(Ok(match shared.refusal_for(*request) {
                    Some(refusal) => {
                        let id = resp.headers().get(REQUEST_ID).cloned();
                        refused(refusal, id).map(Either::Right)
                    }
                    None => resp.map(Either::Left),
                }))
            }
        }
    }
}

/// The 400 problem for `refusal`, closing the connection.
fn refused(refusal: Refusal, request_id: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let id = request_id.unwrap_or_else(|| residency_http::RequestId::new().into_header_value());
    let mut resp = GatewayError::BadRequest(refusal.detail()).into_response(&id);
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests;

/// Drives the framing over `data` the way [`GuardedIo`] does, delivering the bytes in pieces
/// whose sizes come from `cuts`, and panics when an invariant breaks: a release of nothing or
/// of more than is pending, a decision deferred while more than `max_pending` bytes are held
/// (the guard's buffer would be full), or a pass-through offered while bytes are pending. For
/// the fuzz target `smuggle_framing` (via [`crate::fuzz`]).
pub(crate) fn fuzz_framing(data: &[u8], cuts: &[u8], h2_alpn: bool) {
    let mode = if h2_alpn {
        framing::Mode::PassThrough
    } else {
        framing::Mode::Http1
    };
    let mut f = framing::Framing::new(mode, 16 * 1024);
    let mut pending: Vec<u8> = Vec::new();
    let mut rest = data;
    let mut cut = cuts.iter().cycle();
    // Each loop either consumes input or releases pending bytes, so it ends.
    for _ in 0..(data.len() * 4 + 16) {
        match f.step(&pending) {
            Step::Release(n) => {
                assert!(
                    n > 0 && n <= pending.len(),
                    "release {n} of {}",
                    pending.len()
                );
                pending.drain(..n);
            }
            Step::Refuse(_) => return,
            Step::PassThrough(limit) => {
                assert!(
                    pending.is_empty(),
                    "pass-through with {} pending",
                    pending.len()
                );
                if rest.is_empty() {
                    return;
                }
                let want = usize::from(*cut.next().unwrap_or(&255)).max(1);
                let n = usize::try_from(limit)
                    .map_or(want, |l| l.min(want))
                    .min(rest.len());
                assert!(n > 0, "pass-through of 0 bytes");
                f.passed_through(n);
                rest = &rest[n..];
            }
            Step::NeedMore => {
                assert!(
                    pending.len() <= f.max_pending(),
                    "holding {} bytes, more than {}",
                    pending.len(),
                    f.max_pending()
                );
                if rest.is_empty() {
                    return;
                }
                // The guard's buffer holds at most `max_pending + 1` bytes.
                let room = f.max_pending() + 1 - pending.len();
                let n = usize::from(*cut.next().unwrap_or(&255))
                    .max(1)
                    .min(rest.len())
                    .min(room);
                pending.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
    panic!("no progress after {} steps", data.len() * 4 + 16);
}
