//! One connection's lifetime after accept: when it is closed gracefully, and how long it may
//! drain. Used by the kit's [`super::serve`] and by the gateway's public listener.
//!
//! - Idle: no request in flight and none ended for `idle_timeout` → graceful close (`GOAWAY`
//!   for HTTP/2; an idle HTTP/1 keep-alive connection is closed at once). [`Tracked`] counts
//!   the requests in flight, from the service call until the response body is done or
//!   dropped, with two atomics and one clock read per request; no lock, no timer per request.
//!   Only the connection's own timer looks at them, when it fires.
//! - Age: past its maximum age (less a per-connection jitter of up to 10 %, so connections
//!   opened together do not all reconnect together) → graceful close.
//! - Shutdown of the listener → graceful close.
//! - Parking (optional, [`Lifetime::park_after`]): no request in flight for that long → the
//!   connection is asked to park (the caller's `park`), i.e. to end its HTTP side and keep
//!   only its socket until the next request; what that means is the caller's (the gateway's
//!   public listener parks idle HTTP/1 connections, see `gateway/src/listener.rs`).
//!
//! After a graceful close starts, in-flight requests have `shutdown_grace` to finish; then
//! the connection is dropped.
//!
//! A graceful close for shutdown or age does not close an HTTP/1 keep-alive connection
//! while it is idle: a client may be sending its next request at that very moment, and a
//! request written to a connection that closes unread is lost to the client (it sees a reset
//! or an EOF instead of an answer, though the server never read it). Instead the connection
//! stays open for [`HTTP1_DRAIN_WINDOW`] (at most the grace time): every response it sends
//! from then on carries `Connection: close`, so the client sees the end of the connection
//! in an answer, and hyper closes it after that answer. A connection still idle when the
//! window ends is closed then. HTTP/2 connections get `GOAWAY` at once, which names the last
//! stream served, so nothing is lost there. (Envoy drains HTTP/1 the same way.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long an HTTP/1 connection stays open after a graceful close for shutdown or age
/// starts, so that a request the client is sending just then is answered (with
/// `Connection: close`) instead of lost; bounded by the grace time.
pub const HTTP1_DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// The protocol of a connection's requests, as far as seen: none yet, HTTP/1, HTTP/2.
const PROTOCOL_UNKNOWN: u8 = 0;
const PROTOCOL_HTTP1: u8 = 1;
const PROTOCOL_HTTP2: u8 = 2;

/// The requests in flight on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// Microseconds from `opened` to the end of the last request (0: none yet).
    last_end_us: AtomicU64,
    /// `PROTOCOL_*` of the last request.
    protocol: AtomicU8,
    /// A graceful close has started: HTTP/1 responses carry `Connection: close`.
    draining: AtomicBool,
}

impl Activity {
    /// A connection opened (accepted) at `opened`, with nothing in flight.
    #[must_use]
    pub fn new(opened: Instant) -> Arc<Self> {
        Arc::new(Self {
            opened,
            in_flight: AtomicU32::new(0),
            last_end_us: AtomicU64::new(0),
            protocol: AtomicU8::new(PROTOCOL_UNKNOWN),
            draining: AtomicBool::new(false),
        })
    }

    /// Whether the connection carries HTTP/2 (known from its first request).
    fn is_http2(&self) -> bool {
        self.protocol.load(Ordering::Acquire) == PROTOCOL_HTTP2
    }

    /// Whether responses must carry `Connection: close` from now on.
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// When the connection opened.
    #[must_use]
    pub fn opened(&self) -> Instant {
        self.opened
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Since when nothing has been in flight, or `None` while something is.
    #[must_use]
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let us = self.last_end_us.load(Ordering::Acquire);
        Some(self.opened + Duration::from_micros(us))
    }
}

/// One request in flight, until dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // Rounded up, so the connection is never deemed idle a fraction too early.
        let us = u64::try_from(a.opened.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        a.last_end_us.fetch_max(us, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's service, counting its requests in flight in [`Activity`].
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// `inner`, reporting to `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, R, B> Service<Request<R>> for Tracked<S>
where
    S: Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        let in_flight = self.activity.start();
        let http1 = req.version() < Version::HTTP_2;
        let protocol = if http1 {
            PROTOCOL_HTTP1
        } else {
            PROTOCOL_HTTP2
        };
        self.activity.protocol.store(protocol, Ordering::Release);
        TrackedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
            http1,
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's answer; the request stays in flight in its body.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        http1: bool,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        if *this.http1 && in_flight.as_ref().is_some_and(|f| f.0.is_draining()) {
            // hyper closes the connection after a response that says so.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|inner| TrackedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body; its request is in flight until it is dropped.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When a connection is closed gracefully, and how long it may drain then.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Nothing in flight for this long: close.
    pub idle_timeout: Duration,
    /// Older than this: close.
    pub max_age: Duration,
    /// Drain time after a graceful close started.
    pub grace: Duration,
    /// Nothing in flight for this long: ask the connection to park; `None`: never.
    pub park_after: Option<Duration>,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Nothing in flight for `idle_timeout`.
    Idle,
    /// Past its maximum age.
    MaxAge,
    /// The listener shuts down.
    Shutdown,
}

impl CloseCause {
    /// A bounded label for logs.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::MaxAge => "max_age",
            Self::Shutdown => "shutdown",
        }
    }
}

/// How a served connection ended.
pub enum Ended<E> {
    /// The connection finished (on its own or after a graceful close, `cause`).
    Done(Result<(), E>, Option<CloseCause>),
    /// A graceful close (`cause`) did not finish within the grace time; the connection was
    /// dropped.
    DrainTimedOut(CloseCause),
}

impl<E> Ended<E> {
    /// The same ending with the error converted.
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> Ended<F> {
        match self {
            Self::Done(r, cause) => Ended::Done(r.map_err(f), cause),
            Self::DrainTimedOut(cause) => Ended::DrainTimedOut(cause),
        }
    }
}

/// Drives `conn` until it ends, closing it gracefully (`graceful_shutdown`) when it is idle,
/// too old, or `shutdown` is cancelled, and dropping it if that does not finish in time. For
/// age and shutdown, an HTTP/1 connection (or one that has not sent a request yet) is first
/// left open for [`HTTP1_DRAIN_WINDOW`] with `Connection: close` on its responses (see the
/// module documentation).
///
/// With [`Lifetime::park_after`], `park` is called once nothing has been in flight for that
/// long (and again each `park_after` while it stays so); the connection may then end on its
/// own (`Ended::Done(Ok(()), None)`), which the caller tells apart from a client's close.
///
/// `conn` lives on the heap, and the caller's future should hold nothing else large: an async
/// function keeps its arguments for its whole life, so a connection passed by value would be
/// held twice (the argument and the pinned local) in every idle connection's task.
pub async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    park: impl Fn(),
    activity: Arc<Activity>,
    lifetime: Lifetime,
    shutdown: CancellationToken,
) -> Ended<E>
where
    C: Future<Output = Result<(), E>>,
{
    let opened = activity.opened();
    let idle = tokio::time::sleep_until(opened + lifetime.idle_timeout);
    let age = tokio::time::sleep_until(opened + lifetime.max_age);
    // Reset when a graceful close starts; never polled before.
    let drain = tokio::time::sleep_until(opened + lifetime.max_age);
    // Reset when an HTTP/1 connection is left open to drain; never polled before.
    let window = tokio::time::sleep_until(opened + lifetime.max_age);
    let park_after = lifetime.park_after.unwrap_or(lifetime.max_age);
    let parking = tokio::time::sleep_until(opened + park_after);
    let (mut idle, mut age, mut drain, mut window, mut parking) = (
        std::pin::pin!(idle),
        std::pin::pin!(age),
        std::pin::pin!(drain),
        std::pin::pin!(window),
        std::pin::pin!(parking),
    );
    let mut closing: Option<CloseCause> = None;
    let mut in_window = false;
    loop {
        let cause = tokio::select! {
            biased;
            r = conn.as_mut() => return Ended::Done(r, closing),
            () = drain.as_mut(), if closing.is_some() => {
                return Ended::DrainTimedOut(closing.unwrap_or(CloseCause::Shutdown));
            }
            () = window.as_mut(), if in_window => {
                // Closes it now if idle, else after the response being written.
                in_window = false;
                graceful_shutdown(conn.as_mut());
                continue;
            }
            () = shutdown.cancelled(), if closing.is_none() => CloseCause::Shutdown,
            () = age.as_mut(), if closing.is_none() => CloseCause::MaxAge,
            () = parking.as_mut(), if closing.is_none() && lifetime.park_after.is_some() => {
                let now = Instant::now();
                let next = not_idle_until(&activity, park_after, now).unwrap_or_else(|| {
                    // Taken up (or declined) when the connection is polled next.
                    park();
                    now + park_after
                });
                parking.as_mut().reset(next);
                continue;
            }
            () = idle.as_mut(), if closing.is_none() => {
                match not_idle_until(&activity, lifetime.idle_timeout, Instant::now()) {
                    None => CloseCause::Idle,
                    Some(next) => {
                        idle.as_mut().reset(next);
                        continue;
                    }
                }
            }
        };
        let now = Instant::now();
        drain.as_mut().reset(now + lifetime.grace);
        closing = Some(cause);
        if cause == CloseCause::Idle || activity.is_http2() {
            graceful_shutdown(conn.as_mut());
        } else {
            activity.draining.store(true, Ordering::Release);
            window
                .as_mut()
                .reset(now + HTTP1_DRAIN_WINDOW.min(lifetime.grace));
            in_window = true;
        }
    }
}

/// `None` if nothing has been in flight on `activity` for `period` at `now`; otherwise when
/// to look again (while busy, a whole period away at the earliest).
fn not_idle_until(activity: &Activity, period: Duration, now: Instant) -> Option<Instant> {
    match activity.idle_since() {
        Some(since) if since + period <= now => None,
        Some(since) => Some(since + period),
        None => Some(now + period),
    }
}

/// `max_age` less a jitter of up to 10 %, picked by `seed` (a random number).
#[must_use]
pub fn jittered(max_age: Duration, seed: u64) -> Duration {
    // seed % 1001 per mille of 10 %: 0..=100 thousandths of max_age.
    let per_mille = u32::try_from(seed % 1001).unwrap_or(0);
    max_age - max_age / 10_000 * per_mille
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::Empty;

    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_below_the_maximum() {
        let age = Duration::from_secs(3600);
        for seed in [0, 1, 500, 1000, 1001, u64::MAX] {
            let j = jittered(age, seed);
            assert!(j <= age && j >= age * 9 / 10, "{seed}: {j:?}");
        }
        assert_eq!(jittered(age, 0), age);
        assert_eq!(jittered(age, 1000), age * 9 / 10);
    }

    #[tokio::test]
    async fn in_flight_lasts_until_the_body_is_dropped() {
        let opened = Instant::now();
        let activity = Activity::new(opened);
        assert_eq!(activity.idle_since(), Some(opened));
        let svc = Tracked::new(
            hyper::service::service_fn(|_req: Request<Empty<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
            }),
            Arc::clone(&activity),
        );
        let fut = svc.call(Request::new(Empty::new()));
        assert_eq!(activity.idle_since(), None, "called");
        let resp = fut.await.unwrap();
        assert_eq!(
            activity.idle_since(),
            None,
            "response head out, body not done"
        );
        let before_drop = Instant::now();
        drop(resp);
        let since = activity.idle_since().expect("idle once the body is gone");
        assert!(since > opened && since >= before_drop, "{since:?}");
        // A request dropped before it was answered ends too.
        let fut = svc.call(Request::new(Empty::new()));
        assert_eq!(activity.idle_since(), None);
        drop(fut);
        assert!(activity.idle_since().is_some());
    }
}
