//! The request path, as named phases over one request (pingora style): hygiene → limits →
//! auth → directory → rate limit → route → forward. Each phase either hands a typed value to
//! the next (`Arc<Verified>`, `&TenantRecord`, `&Arc<Region>`, `&Upstream`) or stops with a
//! [`GatewayError`], which [`crate::error`] turns into a problem+json response.
//!
//! Architecture invariants:
//! - client-sent internal headers are removed before anything reads the headers;
//! - only the customer API (`/v1/…`) is forwarded ([`route`]), before any credential work;
//! - reserved identities (role `system`, `system:`/`apikey:` subjects in a JWT) are refused;
//! - the tenant comes only from the verified credential;
//! - the upstream is chosen only among the tenant's home region's upstreams;
//! - bodies are streamed both ways, never buffered or re-encoded;
//! - a request over its tenant's rate limit never reaches a region node ([`crate::ratelimit`]).

pub mod body;
pub mod route;
pub mod tls;
pub mod upstream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use residency_config::assertion::{is_reserved_identity, now_secs, SYSTEM_ROLE};
use residency_config::gateway::{GatewayConfig, Limits};
use residency_config::headers::{is_valid_request_id, ASSERTION, REGION, REQUEST_ID};
use tokio_util::sync::CancellationToken;

use crate::auth::cache::{self, TokenCache, Verified};
use crate::auth::jwt::JwtVerifier;
use crate::auth::{self as authn, api_key, Credential};
use crate::directory::Directory;
use crate::error::GatewayError;
use crate::metrics as m;
use crate::ratelimit::{self, Decision, RateLimiter};
use crate::{headers, metrics::status_class};
use body::LimitedBody;
use upstream::{Region, Regions};

/// The body of every gateway response: a region node's stream, or a gateway-made body.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Everything the request path needs, shared by all connections.
pub struct Gateway {
    jwt: JwtVerifier,
    cache: TokenCache,
    directory: Arc<Directory>,
    regions: Regions,
    limits: Limits,
    ratelimit: RateLimiter,
}

impl Gateway {
    /// Loads keys, the directory and the regions; background work (directory sync) stops
    /// with `shutdown`.
    ///
    /// # Errors
    /// A startup error naming what could not be loaded.
    pub async fn build(cfg: &GatewayConfig, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let regions =
            Regions::from_config(&cfg.regions, &cfg.limits).map_err(anyhow::Error::msg)?;
        let directory = Arc::new(
            crate::directory::from_config(&cfg.directory, &regions.ids(), shutdown).await?,
        );
        let jwt = JwtVerifier::load(&cfg.issuers, cfg.claims.clone()).await?;
        Ok(Self {
            jwt,
            cache: TokenCache::new(cfg.limits.token_cache_entries),
            directory,
            regions,
            limits: cfg.limits.clone(),
            ratelimit: RateLimiter::new(&cfg.rate_limit)?,
        })
    }

    /// The JWT verifier (for background key refresh).
    #[must_use]
    pub fn jwt(&self) -> &JwtVerifier {
        &self.jwt
    }

    /// The directory (shared with the admin API).
    #[must_use]
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The configured regions and their upstreams (shared with health checks and the admin
    /// API).
    #[must_use]
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// Handles one client request end to end. Never fails: errors become problem responses.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        headers::sanitize_request(&mut parts.headers);
        let request_id = request_id(&parts.headers);
        if parts.method == Method::GET && parts.uri.path() == "/healthz" {
            return healthy(&request_id).map(Either::Right);
        }
        let mut region: Option<Arc<Region>> = None;
        let mut rate: Option<Decision> = None;
        let forwarded = self.forward(parts, body, &request_id, start, &mut region, &mut rate);
        let mut resp = match forwarded.await {
            Ok(resp) => resp,
            Err(err) => {
                self.record_error(&err, region.as_deref());
                err.into_response(&request_id).map(Either::Right)
            }
        };
        let h = resp.headers_mut();
        h.insert(REQUEST_ID, request_id);
        if let Some(decision) = &rate {
            ratelimit::insert_headers(h, decision);
        }
        let label = match &region {
            Some(r) => {
                h.insert(REGION, r.header().clone());
                r.label().clone()
            }
            None => metrics::SharedString::const_str("none"),
        };
        let class = status_class(resp.status().as_u16());
        metrics::counter!(m::REQUESTS_TOTAL, "region" => label.clone(), "status_class" => class)
            .increment(1);
        metrics::histogram!(m::REQUEST_DURATION_SECONDS, "region" => label)
            .record(start.elapsed().as_secs_f64());
        resp
    }

    async fn forward(
        &self,
        mut parts: Parts,
        body: Incoming,
        request_id: &HeaderValue,
        arrival: Instant,
        region_out: &mut Option<Arc<Region>>,
        rate_out: &mut Option<Decision>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        route::check(parts.uri.path())?;
        // Limits: a declared length over the limit is refused before any work; a streamed body
        // is cut off by `LimitedBody`.
        if content_length(&parts.headers).is_some_and(|n| n > self.limits.max_body_bytes) {
            return Err(GatewayError::PayloadTooLarge);
        }
        let now = now_secs();
        let verified = self.authenticate(&parts.headers, now).await?;
        let tenant = self.directory.resolve(verified.ctx.tenant).await?;
        if verified.ctx.subject.starts_with(api_key::SUBJECT_PREFIX)
            && !tenant.tier.allows_api_keys()
        {
            // The tier may have changed after the key was issued (SPEC §2).
            return Err(GatewayError::Forbidden(
                "api keys require the scale or enterprise tier",
            ));
        }
        let region = self.regions.get(&tenant.region).ok_or_else(|| {
            GatewayError::Internal(format!("region {} not loaded", tenant.region))
        })?;
        *region_out = Some(Arc::clone(region));
        // Rate-limit phase (crate::ratelimit): after the tenant is known, before any upstream
        // work; timed by the request's arrival. `handle` puts the decision's headers on
        // whatever response follows.
        let decision = self
            .ratelimit
            .check(verified.ctx.tenant, tenant.rate_limit_per_min, arrival)
            .await;
        *rate_out = Some(decision);
        if !decision.allowed() {
            return Ok(ratelimit::too_many_requests(request_id).map(Either::Right));
        }
        let upstream = region.pick().ok_or(GatewayError::NoHealthyUpstream {
            retry_after: region.retry_after_secs(),
        })?;
        let assertion = verified
            .assertion_for(region, now)
            .map_err(|e| GatewayError::Internal(format!("minting assertion: {e}")))?;
        tracing::debug!(
            request_id = request_id.to_str().unwrap_or_default(),
            tenant = %verified.ctx.tenant,
            region = %region.id(),
            "forwarding"
        );

        parts.uri = upstream
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| GatewayError::Internal(format!("upstream uri: {e}")))?;
        parts.version = Version::HTTP_11;
        parts.headers.remove(HOST);
        parts.headers.insert(ASSERTION, assertion);
        parts.headers.insert(REQUEST_ID, request_id.clone());
        let tripped = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(body, self.limits.max_body_bytes, Arc::clone(&tripped));
        // The home region's own client: its pool, its CA and client certificate.
        let call = region.client().request(Request::from_parts(parts, body));
        match tokio::time::timeout(self.limits.upstream_timeout, call).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(_)) if tripped.load(Ordering::Relaxed) => Err(GatewayError::PayloadTooLarge),
            Ok(Err(e)) if e.is_connect() => {
                region.eject(upstream);
                // A refused TLS handshake (unknown CA, name, client certificate) is a connect
                // error too: 502 and ejection, never another region.
                let tls = tls::is_tls_error(&e);
                let error = tls::error_chain(&e);
                tracing::warn!(region = %region.id(), tls, %error, "upstream connect failed; ejected");
                Err(GatewayError::UpstreamConnect)
            }
            Ok(Err(e)) => {
                tracing::warn!(region = %region.id(), error = %e, "upstream request failed");
                Err(GatewayError::UpstreamFailed)
            }
            Ok(Ok(mut resp)) => {
                headers::sanitize_response(resp.headers_mut());
                Ok(resp.map(Either::Left))
            }
        }
    }

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
                    Ok(verified) if reserved_in_jwt(&verified.ctx) => return Err(reserved()),
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
                Ok(ctx) if ctx.role == SYSTEM_ROLE => return Err(reserved()),
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

    fn record_error(&self, err: &GatewayError, region: Option<&Region>) {
        let kind = match err {
            GatewayError::UpstreamConnect => "connect",
            GatewayError::UpstreamFailed => "io",
            GatewayError::UpstreamTimeout => "timeout",
            GatewayError::NoHealthyUpstream { .. } => "no_upstream",
            GatewayError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                return;
            }
            _ => return,
        };
        if let Some(r) = region {
            metrics::counter!(m::UPSTREAM_ERRORS_TOTAL, "region" => r.label().clone(), "error_kind" => kind)
                .increment(1);
        }
    }
}

/// Whether a verified JWT names an identity reserved for the platform itself: the system
/// role, a `system:` subject (internal calls), or an `apikey:` subject (API keys' own
/// identities, which a JWT must not impersonate).
fn reserved_in_jwt(ctx: &authn::AuthContext) -> bool {
    is_reserved_identity(&ctx.subject, &ctx.role)
        || ctx.subject.starts_with(api_key::SUBJECT_PREFIX)
}

fn reserved() -> GatewayError {
    metrics::counter!(m::AUTH_FAILURES_TOTAL, "reason" => "reserved_identity").increment(1);
    GatewayError::Forbidden("the credential names a reserved identity")
}

/// The client's request id when well formed, else a new UUIDv7.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(is_valid_request_id))
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::now_v7();
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
                .expect("a uuid is a valid header value")
        })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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
