//! The request path, as named phases over one per-request context ([`RequestCtx`], in the
//! spirit of pingora's `ProxyHttp`): hygiene → route check → authenticate → resolve →
//! rate limit → prepare upstream request (assertion) → forward → response filter. Read
//! [`Gateway::handle`] top to bottom to follow one request. Each phase is a method with a
//! typed result (`Arc<Verified>`, `(Arc<TenantRecord>, &Region)`, [`Decision`], the upstream
//! request) or a [`GatewayError`], which [`crate::error`] turns into a problem+json response;
//! a rate-limited request is one of those errors ([`GatewayError::RateLimited`]).
//!
//! Architecture invariants:
//! - client-sent internal headers are removed before anything reads the headers;
//! - only the customer API (`/v1/…`) is forwarded ([`route`]), before any credential work;
//!   `/healthz` and `/openapi.json` are answered by the gateway itself;
//! - reserved identities are refused ([`AuthContext::is_reserved`]: role `system`, a
//!   `system:` subject, or an `apikey:` subject in a JWT), by the credential's kind;
//! - API keys are refused for tenants whose tier does not allow them, by the credential's kind
//!   ([`AuthContext::is_api_key`]), never by the subject's text;
//! - the tenant comes only from the verified credential;
//! - on an active custom domain (by SNI, authority or `Host`) only that domain's tenant is
//!   served (403 `domain_tenant_mismatch` otherwise), and a request whose names disagree
//!   while one is a customer's hostname is refused (421) before any credential work;
//! - the upstream is chosen only among the tenant's home region's upstreams;
//! - bodies are streamed both ways, never buffered or re-encoded;
//! - a request over its tenant's rate limit never reaches a region node ([`crate::ratelimit`]).

pub(crate) mod body;
pub(crate) mod pool;
pub(crate) mod route;
pub(crate) mod tls;
pub(crate) mod upstream;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use residency_config::gateway::{GatewayConfig, Limits};
use residency_core::assertion::now_secs;
use residency_core::headers::{ASSERTION, REGION, REQUEST_ID};
use residency_core::TenantStatus;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::cache::{self, TokenCache, Verified};
use crate::auth::jwt::JwtVerifier;
use crate::auth::{self as authn, api_key, AuthContext, Credential};
use crate::directory::{Directory, DirectoryError, TenantRecord};
use crate::error::GatewayError;
use crate::headers;
use crate::listener::TlsServerName;
use crate::metrics as m;
use crate::ratelimit::{self, Decision, RateLimiter};
use body::LimitedBody;
use pool::{SendError, UpstreamBody};
use residency_core::TenantId;
use upstream::{Region, Regions, Upstream};

/// The body of every gateway response: a region node's stream, or a gateway-made body.
pub(crate) type ResponseBody = Either<UpstreamBody, Full<Bytes>>;

/// Everything the request path needs, shared by all connections.
pub(crate) struct Gateway {
    jwt: JwtVerifier,
    cache: TokenCache,
    directory: Arc<Directory>,
    regions: Regions,
    limits: Limits,
    ratelimit: RateLimiter,
    /// `POST /v1/signups`, answered here before routing (`[signup]`).
    signups: Option<Arc<crate::signup::Signups>>,
    /// `[log] access`: one access log line per request.
    access_log: bool,
    /// Request metrics of requests answered before a region was known (`region="none"`).
    unrouted: m::RequestMetrics,
}

impl Gateway {
    /// Loads keys, the directory and the regions; background work (directory sync) stops
    /// with `shutdown`.
    ///
    /// # Errors
    /// A startup error naming what could not be loaded.
    pub(crate) async fn build(
        cfg: &GatewayConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let regions =
            Regions::from_config(&cfg.regions, &cfg.limits).map_err(anyhow::Error::msg)?;
        let directory = Arc::new(
            crate::directory::from_config(
                &cfg.directory,
                &regions.ids(),
                crate::tls::cert_dir(cfg.tls.as_ref()),
                shutdown,
            )
            .await?,
        );
        let jwt = JwtVerifier::load(&cfg.issuers, cfg.claims.clone()).await?;
        Ok(Self {
            jwt,
            cache: TokenCache::new(cfg.limits.token_cache_entries),
            directory,
            regions,
            limits: cfg.limits.clone(),
            ratelimit: RateLimiter::new(&cfg.rate_limit)?,
            signups: crate::signup::Signups::from_config(cfg)?,
            access_log: cfg.log.access,
            unrouted: m::RequestMetrics::new(&metrics::SharedString::const_str("none")),
        })
    }

    /// The JWT verifier (for background key refresh).
    #[must_use]
    pub(crate) fn jwt(&self) -> &JwtVerifier {
        &self.jwt
    }

    /// The directory (shared with the admin API).
    #[must_use]
    pub(crate) fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The configured regions and their upstreams (shared with health checks and the admin
    /// API).
    #[must_use]
    pub(crate) fn regions(&self) -> &Regions {
        &self.regions
    }

    /// Handles one client request end to end, phase by phase, top to bottom. Never fails:
    /// errors become problem responses.
    ///
    /// 1. [`RequestCtx::arrive`] (hygiene): client-sent internal headers removed, request id;
    ///    the two local answers, `GET /healthz` and `GET /openapi.json` (the customer API's
    ///    document), need no credential and end here;
    /// 2. `check_request`: the route (`/v1/…` only) and the declared body length;
    ///    `check_domain`: a customer's hostname (SNI or `Host`) names its tenant, and SNI and
    ///    `Host` agree (else 421);
    /// 3. `authenticate`: the credential, to an [`Arc<Verified>`]; on a customer's hostname
    ///    it must be that customer's (else 403 `domain_tenant_mismatch`);
    /// 4. `resolve`: the tenant's directory record and home [`Region`];
    /// 5. `rate_limit`: the tenant's quota, a [`Decision`];
    /// 6. `upstream_request`: an upstream of the home region, the internal assertion;
    /// 7. `forward`: the call to the region node, body streamed both ways;
    /// 8. `response_filter`: request id, region and rate-limit headers, metrics.
    ///
    /// The phases run inside the `request` span ([`request_span`]); a 5xx the gateway
    /// answers itself is logged once ([`GatewayError::log_server_error`]), and with
    /// `[log] access` every request ends with one access line ([`access_line`]).
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let (mut parts, body) = req.into_parts();
        let mut ctx = RequestCtx::arrive(&mut parts.headers);
        ctx.span = request_span(&ctx.request_id, &parts);
        // With tracing on, a valid client `traceparent` is the parent of the request span.
        residency_http::logging::otlp::adopt_parent(&ctx.span, &parts.headers);
        // What the access line needs from the request, taken before the phases consume it;
        // nothing when the access log is off.
        let access = self
            .access_log
            .then(|| (parts.method.clone(), route::template(parts.uri.path())));
        let local = if parts.method == Method::GET {
            match parts.uri.path() {
                "/healthz" => Some(healthy(&ctx.request_id)),
                OPENAPI_PATH => Some(openapi(&ctx.request_id)),
                _ => None,
            }
        } else {
            None
        };
        let signup = self.signups.as_ref().filter(|_| {
            parts.method == Method::POST && parts.uri.path() == crate::signup::SIGNUP_PATH
        });
        let resp = if let Some(local) = local {
            local.map(Either::Right)
        } else if let Some(signups) = signup {
            let ip = parts
                .extensions
                .get::<crate::listener::ClientAddr>()
                .map(|a| a.0.ip());
            let mut resp = signups
                .handle(ip, parts.headers.get(CONTENT_TYPE), body, &ctx.request_id)
                .await;
            resp.headers_mut()
                .insert(REQUEST_ID, ctx.request_id.clone());
            resp.map(Either::Right)
        } else {
            let span = ctx.span.clone();
            let resp = match self.proxy(&mut ctx, parts, body).instrument(span).await {
                Ok(resp) => resp,
                Err(err) => {
                    record_error(&err, ctx.region);
                    ctx.span.in_scope(|| {
                        err.log_server_error(&ctx.request_id, ctx.region.map(|r| r.id()));
                    });
                    err.into_response(&ctx.request_id).map(Either::Right)
                }
            };
            response_filter(&ctx, &self.unrouted, resp)
        };
        if let Some((method, route)) = access {
            access_line(&ctx, &method, route, &resp);
        }
        resp
    }

    /// Phases 2 to 7; each stops the request with a [`GatewayError`] or records what it found
    /// on `ctx`.
    async fn proxy<'g>(
        &'g self,
        ctx: &mut RequestCtx<'g>,
        parts: Parts,
        body: Incoming,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        self.check_request(&parts)?;
        let domain_owner = self.check_domain(&parts)?;
        let verified = self.authenticate(&parts.headers, ctx.now).await?;
        // Borrowed from the context, field by field, so the phases below need no clone of it.
        let verified: &Verified = ctx.verified.insert(verified);
        // A no-op when the span is disabled.
        ctx.span
            .record("tenant", tracing::field::display(&verified.ctx.tenant))
            .record("credential", verified.ctx.kind.as_str());
        if domain_owner.is_some_and(|owner| owner != verified.ctx.tenant) {
            metrics::counter!(m::DOMAIN_REFUSALS_TOTAL, "reason" => "tenant_mismatch").increment(1);
            return Err(GatewayError::DomainTenantMismatch);
        }
        let (tenant, region) = self.resolve(verified, &parts.method).await?;
        ctx.region = Some(region);
        ctx.span
            .record("region", tracing::field::display(region.id()));
        let tenant: &TenantRecord = ctx.tenant.insert(tenant);
        ctx.rate = Some(self.rate_limit(&verified.ctx, tenant, ctx.arrival).await?);
        let (upstream, mut req) =
            self.upstream_request(&ctx.request_id, ctx.now, verified, region, parts, body)?;
        // The client's trace context never reaches the node; with tracing on, the request
        // span's does.
        residency_http::logging::otlp::forward_context(&ctx.span, req.request.headers_mut());
        // Timed for the access line only.
        let sent = self.access_log.then(Instant::now);
        let result = self.forward(region, upstream, req).await;
        ctx.upstream_time = sent.map(|t| t.elapsed());
        result
    }

    /// Route check and limits: only the customer API is forwarded ([`route`]), and a declared
    /// length over the limit is refused before any credential work (a streamed body is cut
    /// off by [`LimitedBody`]).
    fn check_request(&self, parts: &Parts) -> Result<(), GatewayError> {
        route::check(parts.uri.path())?;
        if content_length(&parts.headers).is_some_and(|n| n > self.limits.max_body_bytes) {
            return Err(GatewayError::PayloadTooLarge);
        }
        Ok(())
    }

    /// Custom-domain check, before any credential work: the tenant whose active custom domain
    /// the request names (by TLS server name, URI authority or `Host`), which the
    /// credential must then belong to. When one of those names is a customer's hostname, all
    /// that are present must be the same name: a connection set up for one hostname carries
    /// no request for another (421 Misdirected Request, RFC 9110 §15.5.20). One dashmap
    /// probe per name; nothing when no custom domain exists.
    fn check_domain(&self, parts: &Parts) -> Result<Option<TenantId>, GatewayError> {
        let domains = self.directory.domains();
        if domains.is_empty() {
            return Ok(None);
        }
        let sni = parts
            .extensions
            .get::<TlsServerName>()
            .map(|n| Cow::Borrowed(&*n.0));
        let authority = parts.uri.host().map(normalize_host);
        let host = parts
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(|v| normalize_host(without_port(v)));
        let (mut first, mut differ, mut owner): (Option<&str>, bool, Option<TenantId>) =
            (None, false, None);
        for name in [&sni, &authority, &host].into_iter().flatten() {
            match first {
                Some(f) => differ |= f != name.as_ref(),
                None => first = Some(name.as_ref()),
            }
            if owner.is_none() {
                owner = domains.tenant_of(name);
            }
        }
        if differ && owner.is_some() {
            metrics::counter!(m::DOMAIN_REFUSALS_TOTAL, "reason" => "misdirected").increment(1);
            return Err(GatewayError::Misdirected);
        }
        Ok(owner)
    }

    /// Authentication phase: a cached bearer token, else a verified one (then cached), or an
    /// API key the directory accepts. A reserved identity is refused
    /// ([`AuthContext::is_reserved`]).
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<Arc<Verified>, GatewayError> {
        let result = match authn::extract(headers) {
            Ok(Credential::Bearer(token)) => {
                let key = cache::key_of(token);
                if let Some(hit) = self.cache.get(&key, now) {
                    self.cache.count_hit();
                    return Ok(hit);
                }
                self.cache.count_miss();
                match self.jwt.verify(token).await {
                    // Refused before it is cached, so a reserved identity never gets a hit.
                    Ok(verified) if verified.ctx.is_reserved() => return Err(reserved()),
                    Ok(verified) => {
                        let verified = Arc::new(verified);
                        self.cache.insert(key, Arc::clone(&verified), now);
                        Ok(verified)
                    }
                    Err(e) => Err(e),
                }
            }
            // The outer `?` is the directory failing to answer (503), not a refused key.
            Ok(Credential::ApiKey(key)) => match api_key::verify(key, &self.directory, now)? {
                Ok(ctx) if ctx.is_reserved() => return Err(reserved()),
                Ok(ctx) => Ok(self.cache.api_key(ctx, now)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            metrics::counter!(m::AUTH_FAILURES_TOTAL, "reason" => e.metric_label()).increment(1);
        }
        Ok(result?)
    }

    /// Resolve phase: the tenant's directory record, refused when its tier does not allow the
    /// credential's kind or when it is being moved and the method is not safe (reads of a
    /// moving tenant go on, to its source region), and its home region.
    async fn resolve(
        &self,
        verified: &Verified,
        method: &Method,
    ) -> Result<(Arc<TenantRecord>, &Region), GatewayError> {
        let tenant = self.directory.resolve(verified.ctx.tenant).await?;
        if tenant.status == TenantStatus::Moving
            && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            return Err(GatewayError::Directory(DirectoryError::Moving));
        }
        if verified.ctx.is_api_key() && !tenant.tier.allows_api_keys() {
            // The tier may have changed after the key was issued (SPEC §2).
            return Err(GatewayError::Forbidden(
                "api keys require the scale or enterprise tier",
            ));
        }
        let region = self
            .regions
            .get(&tenant.region)
            .ok_or_else(|| GatewayError::RegionNotLoaded(tenant.region.clone()))?;
        Ok((tenant, region))
    }

    /// Rate-limit phase ([`crate::ratelimit`]): after the tenant is known, before any upstream
    /// work; timed by the request's arrival. The decision's headers go on whatever response
    /// follows (`response_filter`); a refusal is [`GatewayError::RateLimited`].
    async fn rate_limit(
        &self,
        auth: &AuthContext,
        tenant: &TenantRecord,
        arrival: Instant,
    ) -> Result<Decision, GatewayError> {
        let decision = self
            .ratelimit
            .check(auth.tenant, tenant.rate_limit_per_min, arrival)
            .await;
        if decision.allowed() {
            Ok(decision)
        } else {
            Err(GatewayError::RateLimited { decision })
        }
    }

    /// Prepare phase: an upstream of the home region, the URI on it, HTTP/1.1, the internal
    /// assertion and request id, and the body behind the size limit.
    fn upstream_request<'r>(
        &self,
        request_id: &HeaderValue,
        now: u64,
        verified: &Verified,
        region: &'r Region,
        mut parts: Parts,
        body: Incoming,
    ) -> Result<(&'r Upstream, UpstreamRequest), GatewayError> {
        let upstream = region.pick().ok_or(GatewayError::NoHealthyUpstream {
            retry_after: region.retry_after_secs(),
        })?;
        let assertion = verified.assertion_for(region.signer(), now)?;
        // Origin form on the node's own connection, with the node as `Host`.
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => http::Uri::from(pq.clone()),
            None => http::Uri::from_static("/"),
        };
        parts.version = Version::HTTP_11;
        parts.headers.insert(HOST, upstream.host().clone());
        parts.headers.insert(ASSERTION, assertion);
        parts.headers.insert(REQUEST_ID, request_id.clone());
        let tripped = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(body, self.limits.max_body_bytes, Arc::clone(&tripped));
        let request = Request::from_parts(parts, body);
        Ok((upstream, UpstreamRequest { request, tripped }))
    }

    /// Forward phase: sends the request on a keep-alive connection of the picked upstream
    /// of the home region (its region's CA and client certificate), within the upstream
    /// timeout. A connect failure ejects the upstream and is a 502, never another region.
    /// Failures are not logged here: the error carries its cause to the one 5xx log line of
    /// [`Gateway::handle`].
    async fn forward(
        &self,
        region: &Region,
        upstream: &Upstream,
        req: UpstreamRequest,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        let UpstreamRequest { request, tripped } = req;
        let call = upstream.pool().send(request);
        match tokio::time::timeout(self.limits.upstream_timeout, call).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(_)) if tripped.load(Ordering::Relaxed) => Err(GatewayError::PayloadTooLarge),
            Ok(Err(SendError::Connect(e))) => {
                region.eject(upstream);
                // A refused TLS handshake (unknown CA, name, client certificate) is a connect
                // error too: 502 and ejection, never another region.
                Err(GatewayError::UpstreamConnect {
                    tls: tls::is_tls_error(&*e),
                    cause: tls::error_chain(&*e),
                })
            }
            Ok(Err(SendError::Request(e))) => Err(GatewayError::UpstreamFailed {
                cause: tls::error_chain(&e),
            }),
            Ok(Ok(mut resp)) => {
                headers::sanitize_response(resp.headers_mut());
                Ok(resp.map(Either::Left))
            }
        }
    }
}

/// One request as the phases learn about it, from arrival to the response filter (pingora's
/// per-request context). The region and upstream are borrowed from the [`Gateway`] (`'g`).
pub(crate) struct RequestCtx<'g> {
    /// The client's request id when well formed, else a new UUIDv7.
    pub request_id: HeaderValue,
    /// When the request arrived: times the rate limiter and the duration metric.
    pub arrival: Instant,
    /// Seconds since the Unix epoch at arrival: credential expiry, assertion lifetime.
    pub now: u64,
    /// The verified credential, with its [`crate::auth::CredentialKind`], once authenticated.
    pub verified: Option<Arc<Verified>>,
    /// The tenant's directory record, once resolved.
    pub tenant: Option<Arc<TenantRecord>>,
    /// The tenant's home region, once resolved.
    pub region: Option<&'g Region>,
    /// The rate limiter's decision, once that phase ran.
    pub rate: Option<Decision>,
    /// The `request` span ([`request_span`]); disabled when `info` is filtered out.
    pub span: tracing::Span,
    /// How long the region node took to answer the head (timed only for the access log).
    pub upstream_time: Option<std::time::Duration>,
}

impl RequestCtx<'_> {
    /// Hygiene, the first phase: client-sent internal headers are removed before anything
    /// reads the headers, then the request id is taken or made.
    pub(crate) fn arrive(headers: &mut HeaderMap) -> Self {
        let arrival = Instant::now();
        headers::sanitize_request(headers);
        Self {
            request_id: request_id(headers),
            arrival,
            now: now_secs(),
            verified: None,
            tenant: None,
            region: None,
            rate: None,
            span: tracing::Span::none(),
            upstream_time: None,
        }
    }
}

/// The request for a region node, and the flag its body sets when the size limit cut it off.
struct UpstreamRequest {
    request: Request<LimitedBody>,
    tripped: Arc<AtomicBool>,
}

/// The last phase, on every response (a region node's or a problem): the request id, the
/// home region, the rate-limit headers once that phase ran, and the request metrics.
fn response_filter(
    ctx: &RequestCtx<'_>,
    unrouted: &m::RequestMetrics,
    mut resp: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let h = resp.headers_mut();
    h.insert(REQUEST_ID, ctx.request_id.clone());
    if let Some(decision) = &ctx.rate {
        ratelimit::insert_headers(h, decision);
    }
    let counted = match ctx.region {
        Some(r) => {
            h.insert(REGION, r.header().clone());
            r.request_metrics()
        }
        None => unrouted,
    };
    counted.record(resp.status().as_u16(), ctx.arrival.elapsed());
    resp
}

/// The `request` span of one request on the public listener: its request id, method and
/// route template ([`route::template`]: never the raw path with its ids, never the query);
/// `tenant`, `credential` and `region` are recorded once known. When `debug` is filtered out
/// for `residency_gateway::proxy` (the default) the span is disabled and none of its fields
/// is computed (the macro checks the level first).
pub(crate) fn request_span(request_id: &HeaderValue, parts: &Parts) -> tracing::Span {
    // `debug`: a span the formatter records costs microseconds per request (its fields are
    // formatted when it is created and at each `record`), a few percent of the whole request
    // path, so it is on only when asked for (`RUST_LOG=info,residency_gateway::proxy=debug`).
    // Off, it costs a few nanoseconds; the access line and the 5xx line carry their own fields.
    macro_rules! span {
        ($($target:tt)*) => {
            tracing::debug_span!(
                $($target)*
                "request",
                request_id = request_id.to_str().unwrap_or_default(),
                method = parts.method.as_str(),
                route = route::template(parts.uri.path()),
                tenant = tracing::field::Empty,
                credential = tracing::field::Empty,
                region = tracing::field::Empty,
            )
        };
    }
    if residency_http::logging::otlp::enabled() && parts.uri.path() == "/healthz" {
        // With tracing on, a load balancer's probe is not exported (its span is logged
        // under `RUST_LOG=residency::untraced=debug`).
        span!(target: residency_http::logging::UNTRACED_TARGET,)
    } else {
        span!()
    }
}

/// The access log line of one request (`[log] access`), on target [`ACCESS_TARGET`] at
/// `info`: request id, tenant, region, credential kind, method, route template, status,
/// bytes (the response body's declared length; absent for a streamed body of unknown
/// length), duration until the response head, and the region node's time to answer it.
fn access_line(
    ctx: &RequestCtx<'_>,
    method: &Method,
    route: &'static str,
    resp: &Response<ResponseBody>,
) {
    use http_body::Body as _;
    let verified = ctx.verified.as_ref();
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = ctx.request_id.to_str().unwrap_or_default(),
        tenant = verified.map(|v| tracing::field::display(&v.ctx.tenant)),
        region = ctx.region.map(|r| tracing::field::display(r.id())),
        credential = verified.map(|v| v.ctx.kind.as_str()),
        method = method.as_str(),
        route,
        status = resp.status().as_u16(),
        bytes = resp.body().size_hint().exact(),
        duration_ms = ctx.arrival.elapsed().as_secs_f64() * 1000.0,
        upstream_ms = ctx.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
        "request"
    );
}

/// The target of access log lines: `RUST_LOG=residency::access=off` silences them, and a log
/// pipeline can route them apart.
pub(crate) const ACCESS_TARGET: &str = "residency::access";

/// Upstream errors counted per region (the one log line of a 5xx is
/// [`GatewayError::log_server_error`]).
fn record_error(err: &GatewayError, region: Option<&Region>) {
    let kind = match err {
        GatewayError::UpstreamConnect { .. } => "connect",
        GatewayError::UpstreamFailed { .. } => "io",
        GatewayError::UpstreamTimeout => "timeout",
        GatewayError::NoHealthyUpstream { .. } => "no_upstream",
        _ => return,
    };
    if let Some(r) = region {
        metrics::counter!(m::UPSTREAM_ERRORS_TOTAL, "region" => r.label().clone(), "error_kind" => kind)
            .increment(1);
    }
}

fn reserved() -> GatewayError {
    metrics::counter!(m::AUTH_FAILURES_TOTAL, "reason" => "reserved_identity").increment(1);
    GatewayError::Forbidden("the credential names a reserved identity")
}

/// The client's request id when well formed, else a new UUIDv7 (the one rule of
/// [`residency_http::RequestId`], shared with the admin API and the nodes).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    residency_http::RequestId::from_headers_or_new(headers).into_header_value()
}

/// The host of a `Host` header value (`name`, `name:port`, `[v6]:port`), without parsing
/// (and allocating) a URI authority.
fn without_port(value: &str) -> &str {
    if value.starts_with('[') {
        value.find(']').map_or(value, |end| &value[..=end])
    } else {
        value.rsplit_once(':').map_or(value, |(host, _)| host)
    }
}

/// A hostname as the domain table keys it: lowercase, without one trailing dot.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Where the public listener serves the customer API's OpenAPI document (no credential).
const OPENAPI_PATH: &str = "/openapi.json";

/// The customer API's OpenAPI 3.1 document, as checked in at `docs/openapi/customer.json`;
/// the region node's `openapi_document_is_current` test keeps that file equal to what the
/// node's handlers and the `residency_core::wire::customer` types generate.
static CUSTOMER_OPENAPI: &[u8] = include_bytes!("../../../docs/openapi/customer.json");

/// The answer to `GET /openapi.json` on the public listener.
fn openapi(request_id: &HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(CUSTOMER_OPENAPI)));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(REQUEST_ID, request_id.clone());
    resp
}

/// The answer to `GET /healthz` on the public listener (for load balancers; no credential).
fn healthy(request_id: &HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(REQUEST_ID, request_id.clone());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_compared_lowercase_without_a_trailing_dot() {
        assert_eq!(normalize_host("API.A.example."), "api.a.example");
        assert!(matches!(normalize_host("api.a.example"), Cow::Borrowed(_)));
        assert_eq!(without_port("api.a.example:8443"), "api.a.example");
        assert_eq!(without_port("api.a.example"), "api.a.example");
        assert_eq!(without_port("[::1]:443"), "[::1]");
    }

    /// Logs name requests by these templates: a route the customer API adds must be added
    /// there too, or its requests would be logged as `unmatched`.
    #[test]
    fn the_route_templates_are_the_customer_apis_paths() {
        let doc: serde_json::Value = serde_json::from_slice(CUSTOMER_OPENAPI).unwrap();
        let mut paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        let mut templates = route::TEMPLATES.to_vec();
        templates.sort_unstable();
        assert_eq!(templates, paths);
    }

    #[test]
    fn request_ids_are_kept_when_well_formed_else_generated() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("client-id.1"));
        assert_eq!(request_id(&h), "client-id.1");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        let generated = request_id(&h);
        assert_ne!(generated, "bad id with spaces");
        assert!(uuid::Uuid::parse_str(generated.to_str().unwrap()).is_ok());
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
