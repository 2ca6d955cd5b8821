//! Regions and their upstreams (region nodes): round robin over the upstreams of one region
//! that are healthy: passing their active checks ([`crate::health`], `GET /readyz`) and not
//! passively ejected after a refused connection.
//!
//! Architecture invariant: a [`Region`] only ever hands out its own upstreams. There is no
//! code path from one region to another's upstream list, so there is no cross-region
//! fallback to get wrong: when every upstream of the home region is ejected the answer is 503.
//!
//! Each upstream owns its keep-alive connections ([`super::pool::Pool`]), opened with the
//! connector of its region's TLS settings ([`super::tls::NodeTls`]: plain HTTP, TLS with the
//! region's CA, or mTLS), so one region's CA or client certificate is never used towards
//! another region's nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::HeaderValue;
use residency_config::gateway::{Limits, RegionEntry};
use residency_core::assertion::{AssertionError, AssertionKey, Signer, MAX_TTL_SECS};
use residency_core::RegionId;

use super::pool::Pool;
use super::tls::NodeTls;

/// One region node address and its health.
#[derive(Debug)]
pub(crate) struct Upstream {
    url: String,
    scheme: Scheme,
    authority: Authority,
    /// The authority as the `Host` of requests to this node.
    host: HeaderValue,
    /// Its keep-alive connections.
    pool: Arc<Pool>,
    /// Milliseconds since the region's epoch until which this upstream is skipped.
    ejected_until_ms: AtomicU64,
    /// The verdict of the active checks (starts healthy so a new gateway serves at once).
    healthy: AtomicBool,
    failures: AtomicU32,
    successes: AtomicU32,
    /// Times this upstream was taken out of rotation (passive ejections and failed checks).
    ejections: AtomicU64,
    last_check: Mutex<Option<CheckResult>>,
}

/// The outcome of one active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckResult {
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// Whether `/readyz` answered 2xx in time.
    pub ok: bool,
    /// `200`, `503`, `timeout`, `connect error`... (no addresses or bodies).
    pub detail: String,
}

/// What the admin API shows about one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamHealth {
    /// Base URL.
    pub url: String,
    /// Picked for requests right now.
    pub available: bool,
    /// Passing its active checks.
    pub healthy: bool,
    /// Milliseconds left of a passive ejection.
    pub ejected_for_ms: u64,
    /// Times taken out of rotation since start.
    pub ejections: u64,
    /// The last active check.
    pub last_check: Option<CheckResult>,
}

/// Thresholds of the active checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Consecutive failures that mark an upstream unhealthy.
    pub unhealthy: u32,
    /// Consecutive successes that mark it healthy again.
    pub healthy: u32,
}

impl Upstream {
    fn parse(url: &str, tls: &NodeTls, limits: &Limits) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("upstream {url:?}: {e}"))?;
        let parts = uri.into_parts();
        let scheme = parts.scheme.unwrap_or(Scheme::HTTP);
        let authority = parts
            .authority
            .ok_or_else(|| format!("upstream {url:?} has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("upstream {url:?}: {e}"))?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("upstream {url:?}: {e}"))?;
        let connector = tls.connector(limits.upstream_connect_timeout);
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            scheme,
            authority,
            host,
            pool: Arc::new(Pool::new(connector, origin, limits.upstream_pool_idle)),
            ejected_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            last_check: Mutex::new(None),
        })
    }

    /// The base URL, as configured (without a trailing `/`).
    #[must_use]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether the active checks currently pass.
    #[must_use]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The `Host` of requests to this node.
    #[must_use]
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The keep-alive connections the proxy sends this node's requests on.
    #[must_use]
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The URI of `path_and_query` on this upstream.
    ///
    /// # Errors
    /// Only if the parts cannot form a URI, which valid config rules out.
    pub(crate) fn uri_for(
        &self,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(
                path_and_query
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            )
            .build()
    }
}

/// A residency region: its id, assertion signer and upstreams.
pub(crate) struct Region {
    id: RegionId,
    header: HeaderValue,
    label: metrics::SharedString,
    /// This region's request metrics, registered once.
    requests: crate::metrics::RequestMetrics,
    signer: Signer,
    upstreams: Vec<Upstream>,
    tls: NodeTls,
    next: AtomicUsize,
    eject_for: Duration,
    epoch: Instant,
    /// Interval of the active checks, for `Retry-After` when every upstream fails them.
    check_interval_ms: AtomicU64,
}

impl Region {
    /// Builds a region from its config entry, loading its assertion key and TLS files.
    ///
    /// # Errors
    /// A message when the key or a TLS file cannot be loaded or an upstream URL is unusable.
    pub(crate) fn from_config(entry: &RegionEntry, limits: &Limits) -> Result<Self, String> {
        let key = entry
            .assertion
            .load()
            .map_err(|e: AssertionError| format!("region {}: {e}", entry.id))?;
        let tls = NodeTls::from_region(entry)?;
        let upstreams = entry
            .upstreams
            .iter()
            .map(|u| Upstream::parse(u, &tls, limits))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(entry.id.clone(), &key, upstreams, tls, limits))
    }

    fn new(
        id: RegionId,
        key: &AssertionKey,
        upstreams: Vec<Upstream>,
        tls: NodeTls,
        limits: &Limits,
    ) -> Self {
        let eject_for = limits.upstream_eject;
        let label = metrics::SharedString::from(id.as_str().to_owned());
        Self {
            header: HeaderValue::from_str(id.as_str()).expect("region ids are header-safe"),
            requests: crate::metrics::RequestMetrics::new(&label),
            label,
            signer: Signer::new(id.clone(), key, MAX_TTL_SECS),
            id,
            upstreams,
            tls,
            next: AtomicUsize::new(0),
            eject_for,
            epoch: Instant::now(),
            check_interval_ms: AtomicU64::new(0),
        }
    }

    /// The region id.
    #[must_use]
    pub(crate) fn id(&self) -> &RegionId {
        &self.id
    }

    /// The id as a response header value (`x-residency-region`).
    #[must_use]
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// The id as a metric label.
    #[must_use]
    pub(crate) fn label(&self) -> &metrics::SharedString {
        &self.label
    }

    /// The request counters and latency histogram of this region.
    #[must_use]
    pub(crate) fn request_metrics(&self) -> &crate::metrics::RequestMetrics {
        &self.requests
    }

    /// The signer of this region's internal assertions.
    #[must_use]
    pub(crate) fn signer(&self) -> &Signer {
        &self.signer
    }

    /// This region's TLS settings, to build other clients of its nodes (health checks,
    /// provisioning, audit evidence) with the same trust and client certificate.
    #[must_use]
    pub(crate) fn tls(&self) -> &NodeTls {
        &self.tls
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next upstream of this region that passes its checks and is not ejected, round
    /// robin.
    #[must_use]
    pub(crate) fn pick(&self) -> Option<&Upstream> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .find(|u| u.is_healthy() && u.ejected_until_ms.load(Ordering::Relaxed) <= now)
    }

    /// Skips `upstream` for the ejection period after it refused a connection.
    pub(crate) fn eject(&self, upstream: &Upstream) {
        let now = self.now_ms();
        let until =
            now.saturating_add(u64::try_from(self.eject_for.as_millis()).unwrap_or(u64::MAX));
        let before = upstream.ejected_until_ms.swap(until, Ordering::Relaxed);
        if before <= now {
            upstream.ejections.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::metrics::UPSTREAM_EJECTIONS_TOTAL, "region" => self.label.clone(), "cause" => "connect")
                .increment(1);
        }
    }

    /// Seconds until an upstream may be tried again (at least 1): the soonest end of an
    /// ejection, or the next active check when every upstream fails them.
    #[must_use]
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let now = self.now_ms();
        let interval = self.check_interval_ms.load(Ordering::Relaxed);
        let soonest = self
            .upstreams
            .iter()
            .map(|u| {
                let ejected = u
                    .ejected_until_ms
                    .load(Ordering::Relaxed)
                    .saturating_sub(now);
                if u.is_healthy() {
                    ejected
                } else {
                    ejected.max(interval)
                }
            })
            .min()
            .unwrap_or(0);
        soonest.div_ceil(1000).max(1)
    }

    /// This region's upstreams.
    #[must_use]
    pub(crate) fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// Records the interval of the active checks (for `Retry-After`).
    pub(crate) fn set_check_interval(&self, interval: Duration) {
        self.check_interval_ms.store(
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Applies the outcome of an active check of `upstream`: enough consecutive failures
    /// take it out of rotation, enough successes bring it back (and end a passive ejection).
    pub(crate) fn record_check(&self, upstream: &Upstream, result: CheckResult, t: Thresholds) {
        let ok = result.ok;
        *upstream
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        if ok {
            upstream.failures.store(0, Ordering::Relaxed);
            let n = upstream.successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= t.healthy {
                upstream.ejected_until_ms.store(0, Ordering::Relaxed);
                if !upstream.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(region = %self.id, upstream = %upstream.url, "upstream healthy again");
                }
            }
        } else {
            upstream.successes.store(0, Ordering::Relaxed);
            let n = upstream.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= t.unhealthy && upstream.healthy.swap(false, Ordering::Relaxed) {
                upstream.ejections.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::UPSTREAM_EJECTIONS_TOTAL, "region" => self.label.clone(), "cause" => "health_check")
                    .increment(1);
                tracing::warn!(region = %self.id, upstream = %upstream.url, "upstream failed its health checks; skipped");
            }
        }
    }

    /// Health of every upstream, for the admin API.
    #[must_use]
    pub(crate) fn health(&self) -> Vec<UpstreamHealth> {
        let now = self.now_ms();
        self.upstreams
            .iter()
            .map(|u| {
                let ejected_for_ms = u
                    .ejected_until_ms
                    .load(Ordering::Relaxed)
                    .saturating_sub(now);
                UpstreamHealth {
                    url: u.url.clone(),
                    available: u.is_healthy() && ejected_for_ms == 0,
                    healthy: u.is_healthy(),
                    ejected_for_ms,
                    ejections: u.ejections.load(Ordering::Relaxed),
                    last_check: u
                        .last_check
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                }
            })
            .collect()
    }
}

/// Every configured region by id.
pub(crate) struct Regions {
    by_id: HashMap<RegionId, Arc<Region>>,
}

impl Regions {
    /// Builds all regions.
    ///
    /// # Errors
    /// A message naming the first region that could not be built.
    pub(crate) fn from_config(entries: &[RegionEntry], limits: &Limits) -> Result<Self, String> {
        let by_id = entries
            .iter()
            .map(|e| Ok((e.id.clone(), Arc::new(Region::from_config(e, limits)?))))
            .collect::<Result<_, String>>()?;
        Ok(Self { by_id })
    }

    /// The region with `id`.
    #[must_use]
    pub(crate) fn get(&self, id: &RegionId) -> Option<&Arc<Region>> {
        self.by_id.get(id)
    }

    /// All region ids.
    #[must_use]
    pub(crate) fn ids(&self) -> Vec<RegionId> {
        self.by_id.keys().cloned().collect()
    }

    /// Every region, sorted by id.
    #[must_use]
    pub(crate) fn all(&self) -> Vec<Arc<Region>> {
        let mut v: Vec<_> = self.by_id.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(urls: &[&str]) -> Region {
        let key = AssertionKey::new("k", "HS256", vec![1; 32]).unwrap();
        let tls = NodeTls::plain().unwrap();
        let limits = Limits {
            upstream_eject: Duration::from_secs(5),
            ..Limits::default()
        };
        let ups = urls
            .iter()
            .map(|u| Upstream::parse(u, &tls, &limits).unwrap())
            .collect();
        Region::new(RegionId::new("eu").unwrap(), &key, ups, tls, &limits)
    }

    #[test]
    fn round_robin_skips_ejected_and_reports_retry_after() {
        let r = region(&["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        let a = r.pick().unwrap().authority.clone();
        let b = r.pick().unwrap().authority.clone();
        assert_ne!(a, b);
        let first = &r.upstreams[0];
        r.eject(first);
        for _ in 0..4 {
            assert_eq!(r.pick().unwrap().authority, r.upstreams[1].authority);
        }
        r.eject(&r.upstreams[1]);
        assert!(r.pick().is_none());
        assert!((1..=5).contains(&r.retry_after_secs()));
    }

    #[test]
    fn failed_checks_take_an_upstream_out_until_it_passes_again() {
        let r = region(&["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        r.set_check_interval(Duration::from_secs(3));
        let t = Thresholds {
            unhealthy: 2,
            healthy: 1,
        };
        let check = |ok| CheckResult {
            at: 1,
            ok,
            detail: String::new(),
        };
        let first = &r.upstreams[0];
        r.record_check(first, check(false), t);
        assert!(first.is_healthy(), "one failure is below the threshold");
        r.record_check(first, check(false), t);
        assert!(!first.is_healthy());
        for _ in 0..4 {
            assert_eq!(r.pick().unwrap().authority, r.upstreams[1].authority);
        }
        r.record_check(&r.upstreams[1], check(false), t);
        r.record_check(&r.upstreams[1], check(false), t);
        assert!(r.pick().is_none());
        assert_eq!(r.retry_after_secs(), 3);
        // A passing check brings it back and ends a passive ejection too.
        r.eject(first);
        r.record_check(first, check(true), t);
        assert_eq!(r.pick().unwrap().authority, first.authority);
        let h = r.health();
        assert_eq!(h[0].ejections, 2);
        assert!(h[0].available);
        assert!(!h[1].available);
        assert_eq!(h[1].last_check.as_ref().map(|c| c.ok), Some(false));
    }

    #[test]
    fn uri_keeps_path_and_query() {
        let r = region(&["http://127.0.0.1:8542"]);
        let pq = PathAndQuery::from_static("/v1/workflows?limit=5");
        let uri = r.pick().unwrap().uri_for(Some(&pq)).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:8542/v1/workflows?limit=5"
        );
    }
}
