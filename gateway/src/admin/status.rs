//! The status page on the admin listener: one server-rendered HTML page for an operator's
//! browser ([`page`]), behind the admin token.
//!
//! - `GET /admin/status`: the page, for `Authorization: Bearer <admin token>` (curl, scripts)
//!   or a session cookie. Without either: 401, with the sign-in form when the client accepts
//!   HTML and a problem otherwise. Nothing about customers, regions or traffic is on a 401.
//! - `POST /admin/status/login` (form field `token`): a valid token starts a session: a random
//!   id (the admin token itself never goes into the browser's cookie jar or any URL) in an
//!   `HttpOnly; SameSite=Strict; Path=/admin/status` cookie valid for [`SESSION_TTL`], then a
//!   same-origin refresh to the page. A wrong token: 401 and the form again.
//! - `POST /admin/status/logout`: ends the session.
//! - `GET /admin/status/audit`: the HTML report of the last audit this gateway ran
//!   (`GET /admin/v1/audit`), 404 before the first.
//!
//! The cookie carries no `Secure` flag: the admin listener has no TLS (it binds to a private
//! address); put it behind a TLS-terminating proxy to reach it over a network. Sessions live
//! in memory ([`MAX_SESSIONS`] at most; a restart signs everyone out).
//!
//! Request and error rates come from the gateway's own `residency_gateway_requests_total`:
//! [`Rates`] keeps a ring of snapshots taken every [`SNAPSHOT_EVERY`] for the last minute, and
//! the page shows the difference between now and the oldest. Several gateways embedded in one
//! process (tests) share one recorder, so there they see each other's traffic.

mod page;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use residency_audit::routing;
use tokio_util::sync::CancellationToken;

use super::{check_token, sha256, AdminError, AdminState, RouteLabel};

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "residency_admin_session";
/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Sessions held at once; the oldest is dropped for a new one beyond this.
pub(crate) const MAX_SESSIONS: usize = 64;
/// How often the request counters are snapshotted.
pub(crate) const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// The rate window: snapshots older than this are dropped.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The largest login form accepted.
const MAX_FORM_BYTES: usize = 4096;

/// Browser sessions: SHA-256 of each session id and when it ends.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// Starts a session; returns its id (for the cookie only).
    fn start(&self) -> String {
        let mut raw = [0u8; 32];
        // The system RNG does not fail on supported platforms; a zero id would still be
        // unguessable only if it did not, so refuse to go on.
        aws_lc_rs::rand::fill(&mut raw).expect("system random number generator");
        let id = hex::encode(raw);
        let now = Instant::now();
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|_, until| *until > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                live.remove(&oldest);
            }
        }
        live.insert(sha256(id.as_bytes()), now + SESSION_TTL);
        id
    }

    /// Whether `id` names a live session.
    fn valid(&self, id: &str) -> bool {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(&sha256(id.as_bytes()))
            .is_some_and(|until| *until > Instant::now())
    }

    fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&sha256(id.as_bytes()));
    }
}

/// Requests per region, for the rates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Every answer.
    pub(crate) total: u64,
    /// 5xx answers.
    pub(crate) server_errors: u64,
    /// 4xx answers.
    pub(crate) client_errors: u64,
}

/// Counts per region from a Prometheus page of the gateway.
pub(crate) fn counts(page: &str) -> BTreeMap<String, Counts> {
    let metric = crate::metrics::REQUESTS_TOTAL;
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for (region, n) in routing::sum_by_label(page, metric, "region") {
        out.entry(region).or_default().total = n;
    }
    for (region, n) in routing::sum_by_label_where(page, metric, "region", ("status_class", "5xx"))
    {
        out.entry(region).or_default().server_errors = n;
    }
    for (region, n) in routing::sum_by_label_where(page, metric, "region", ("status_class", "4xx"))
    {
        out.entry(region).or_default().client_errors = n;
    }
    out
}

/// The ring of request-counter snapshots of the last minute.
pub(crate) struct Rates {
    prometheus: PrometheusHandle,
    ring: Mutex<VecDeque<(Instant, BTreeMap<String, Counts>)>>,
}

/// Per-second rates of one region over `window`, and its totals since start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegionRate {
    pub(crate) region: String,
    pub(crate) requests_per_sec: f64,
    pub(crate) server_errors_per_sec: f64,
    pub(crate) client_errors_per_sec: f64,
    pub(crate) since_start: Counts,
}

impl Rates {
    /// Takes the first snapshot now and one every [`SNAPSHOT_EVERY`] until `shutdown`.
    pub(crate) fn start(prometheus: PrometheusHandle, shutdown: CancellationToken) -> Arc<Self> {
        let rates = Arc::new(Self {
            prometheus,
            ring: Mutex::new(VecDeque::new()),
        });
        rates.snapshot();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let r = Arc::clone(&rates);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
                tick.tick().await;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = tick.tick() => r.snapshot(),
                    }
                }
            });
        }
        rates
    }

    fn snapshot(&self) {
        let now = Instant::now();
        let counts = counts(&self.prometheus.render());
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.push_back((now, counts));
        // Keep the newest snapshot at least RATE_WINDOW old as the base.
        while ring.len() > 1 && ring[1].0 + RATE_WINDOW <= now {
            ring.pop_front();
        }
    }

    /// Rates from the oldest snapshot (up to a minute old) to now, and the window; `None`
    /// for the window when the oldest is under a second old.
    pub(crate) fn now(&self) -> (Vec<RegionRate>, Option<Duration>) {
        let current = counts(&self.prometheus.render());
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let base = ring.front();
        let window = base
            .map(|(at, _)| at.elapsed())
            .filter(|w| *w >= Duration::from_secs(1));
        let rows = current
            .into_iter()
            .map(|(region, now)| {
                let before = base
                    .and_then(|(_, b)| b.get(&region).copied())
                    .unwrap_or_default();
                let per_sec = |a: u64, b: u64| {
                    window.map_or(0.0, |w| {
                        // Counts stay far below 2^52: the float is exact.
                        #[allow(clippy::cast_precision_loss)]
                        let d = a.saturating_sub(b) as f64;
                        d / w.as_secs_f64()
                    })
                };
                RegionRate {
                    requests_per_sec: per_sec(now.total, before.total),
                    server_errors_per_sec: per_sec(now.server_errors, before.server_errors),
                    client_errors_per_sec: per_sec(now.client_errors, before.client_errors),
                    since_start: now,
                    region,
                }
            })
            .collect();
        (rows, window)
    }
}

/// The session id in the request's cookie, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// Whether the request carries the admin token or a live session.
fn signed_in(st: &AdminState, headers: &HeaderMap) -> bool {
    if headers.contains_key(http::header::AUTHORIZATION) {
        return check_token(st, headers.get(http::header::AUTHORIZATION)).is_ok();
    }
    session_cookie(headers).is_some_and(|id| st.sessions.valid(id))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// An HTML answer with the page's security headers: no caching, no framing, no scripts, no
/// resources from anywhere, forms only to this origin.
fn html(status: StatusCode, body: String, route: &'static str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp.extensions_mut().insert(RouteLabel(route));
    resp
}

/// 401: the sign-in form for a browser, a problem otherwise; nothing else either way.
fn refuse(headers: &HeaderMap, message: Option<&str>, route: &'static str) -> Response {
    if wants_html(headers) {
        html(StatusCode::UNAUTHORIZED, page::login(message), route)
    } else {
        let mut resp = AdminError::Unauthorized(
            "send 'Authorization: Bearer <admin token>' or sign in at /admin/status",
        )
        .into_response();
        resp.extensions_mut().insert(RouteLabel(route));
        resp
    }
}

/// `GET /admin/status`.
pub(crate) async fn status(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "/admin/status";
    if !signed_in(&st, &headers) {
        return refuse(&headers, None, ROUTE);
    }
    let view = page::View::gather(&st).await;
    html(StatusCode::OK, page::status(&view), ROUTE)
}

/// `GET /admin/status/audit`: the last audit's HTML report.
pub(crate) async fn last_audit(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "/admin/status/audit";
    if !signed_in(&st, &headers) {
        return refuse(&headers, None, ROUTE);
    }
    match st.audit.last() {
        Some(last) => html(StatusCode::OK, last.html, ROUTE),
        None => html(
            StatusCode::NOT_FOUND,
            page::message(
                "No audit yet",
                "No audit has run on this gateway since it started. GET /admin/v1/audit runs one.",
            ),
            ROUTE,
        ),
    }
}

/// `POST /admin/status/login` with the form field `token`.
pub(crate) async fn login(State(st): State<Arc<AdminState>>, body: Bytes) -> Response {
    const ROUTE: &str = "/admin/status/login";
    let token = (body.len() <= MAX_FORM_BYTES)
        .then(|| {
            url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.trim().to_owned())
        })
        .flatten()
        .unwrap_or_default();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok();
    if token.is_empty() || check_token(&st, bearer.as_ref()).is_err() {
        return html(
            StatusCode::UNAUTHORIZED,
            page::login(Some("That admin token is not valid.")),
            ROUTE,
        );
    }
    let id = st.sessions.start();
    let mut resp = html(StatusCode::OK, page::signed_in(), ROUTE);
    let cookie = format!(
        "{COOKIE_NAME}={id}; Path=/admin/status; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// `POST /admin/status/logout`.
pub(crate) async fn logout(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        st.sessions.end(id);
    }
    let mut resp = html(
        StatusCode::OK,
        page::login(Some("Signed out.")),
        "/admin/status/logout",
    );
    resp.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static(
            "residency_admin_session=; Path=/admin/status; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_end() {
        let s = Sessions::default();
        let (a, b) = (s.start(), s.start());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a) && s.valid(&b));
        assert!(!s.valid("0000"));
        s.end(&a);
        assert!(!s.valid(&a) && s.valid(&b));
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let ids: Vec<String> = (0..MAX_SESSIONS + 5).map(|_| s.start()).collect();
        assert_eq!(s.live.lock().unwrap().len(), MAX_SESSIONS);
        assert!(s.valid(ids.last().unwrap()));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=b; residency_admin_session=abc; c=d"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(
            COOKIE,
            HeaderValue::from_static("residency_admin_sessionx=abc"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn counts_per_region_and_class() {
        let page = "residency_gateway_requests_total{region=\"eu\",status_class=\"2xx\"} 7\n\
                    residency_gateway_requests_total{region=\"eu\",status_class=\"5xx\"} 2\n\
                    residency_gateway_requests_total{region=\"none\",status_class=\"4xx\"} 3\n";
        let c = counts(page);
        assert_eq!(
            c["eu"],
            Counts {
                total: 9,
                server_errors: 2,
                client_errors: 0
            }
        );
        assert_eq!(c["none"].client_errors, 3);
    }
}
