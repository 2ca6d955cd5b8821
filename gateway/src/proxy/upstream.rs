//! Regions and their upstreams (region nodes): round robin over the upstreams of one region,
//! with passive ejection of an upstream that refused a connection.
//!
//! Architecture invariant: a [`Region`] only ever hands out its own upstreams. There is no
//! code path from one region to another's upstream list, so there is no cross-region
//! fallback to get wrong: when every upstream of the home region is ejected the answer is 503.
//!
//! Not built yet: active health checks against `/readyz` and TLS/mTLS to nodes (the config
//! refuses `https` upstreams until it is).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::HeaderValue;
use residency_config::assertion::{AssertionError, AssertionKey, Signer, MAX_TTL_SECS};
use residency_config::gateway::RegionEntry;
use residency_config::RegionId;

/// One region node address.
#[derive(Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// Milliseconds since the region's epoch until which this upstream is skipped.
    ejected_until_ms: AtomicU64,
}

impl Upstream {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("upstream {url:?}: {e}"))?;
        let parts = uri.into_parts();
        Ok(Self {
            scheme: parts.scheme.unwrap_or(Scheme::HTTP),
            authority: parts
                .authority
                .ok_or_else(|| format!("upstream {url:?} has no host"))?,
            ejected_until_ms: AtomicU64::new(0),
        })
    }

    /// The URI of `path_and_query` on this upstream.
    ///
    /// # Errors
    /// Only if the parts cannot form a URI, which valid config rules out.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
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
pub struct Region {
    id: RegionId,
    header: HeaderValue,
    label: metrics::SharedString,
    signer: Signer,
    upstreams: Vec<Upstream>,
    next: AtomicUsize,
    eject_for: Duration,
    epoch: Instant,
}

impl Region {
    /// Builds a region from its config entry, loading its assertion key.
    ///
    /// # Errors
    /// A message when the key cannot be loaded or an upstream URL is unusable.
    pub fn from_config(entry: &RegionEntry, eject_for: Duration) -> Result<Self, String> {
        let key = AssertionKey::load(&entry.assertion)
            .map_err(|e: AssertionError| format!("region {}: {e}", entry.id))?;
        let upstreams = entry
            .upstreams
            .iter()
            .map(|u| Upstream::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(entry.id.clone(), &key, upstreams, eject_for))
    }

    fn new(
        id: RegionId,
        key: &AssertionKey,
        upstreams: Vec<Upstream>,
        eject_for: Duration,
    ) -> Self {
        Self {
            header: HeaderValue::from_str(id.as_str()).expect("region ids are header-safe"),
            label: metrics::SharedString::from(id.as_str().to_owned()),
            signer: Signer::new(id.clone(), key, MAX_TTL_SECS),
            id,
            upstreams,
            next: AtomicUsize::new(0),
            eject_for,
            epoch: Instant::now(),
        }
    }

    /// A region with one placeholder upstream, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(id: &str, key: &AssertionKey) -> Self {
        let up = Upstream::parse("http://127.0.0.1:9").expect("valid");
        Self::new(
            RegionId::new(id).expect("valid"),
            key,
            vec![up],
            Duration::from_secs(5),
        )
    }

    /// The region id.
    #[must_use]
    pub fn id(&self) -> &RegionId {
        &self.id
    }

    /// The id as a response header value (`x-residency-region`).
    #[must_use]
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// The id as a metric label.
    #[must_use]
    pub fn label(&self) -> &metrics::SharedString {
        &self.label
    }

    /// The signer of this region's internal assertions.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next upstream of this region that is not ejected, round robin.
    #[must_use]
    pub fn pick(&self) -> Option<&Upstream> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .find(|u| u.ejected_until_ms.load(Ordering::Relaxed) <= now)
    }

    /// Skips `upstream` for the ejection period after it refused a connection.
    pub fn eject(&self, upstream: &Upstream) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.eject_for.as_millis()).unwrap_or(u64::MAX));
        upstream.ejected_until_ms.store(until, Ordering::Relaxed);
    }

    /// Seconds until the first ejected upstream is tried again (at least 1).
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        let now = self.now_ms();
        let soonest = self
            .upstreams
            .iter()
            .map(|u| {
                u.ejected_until_ms
                    .load(Ordering::Relaxed)
                    .saturating_sub(now)
            })
            .min()
            .unwrap_or(0);
        soonest.div_ceil(1000).max(1)
    }
}

/// Every configured region by id.
pub struct Regions {
    by_id: HashMap<RegionId, Arc<Region>>,
}

impl Regions {
    /// Builds all regions.
    ///
    /// # Errors
    /// A message naming the first region that could not be built.
    pub fn from_config(entries: &[RegionEntry], eject_for: Duration) -> Result<Self, String> {
        let by_id = entries
            .iter()
            .map(|e| Ok((e.id.clone(), Arc::new(Region::from_config(e, eject_for)?))))
            .collect::<Result<_, String>>()?;
        Ok(Self { by_id })
    }

    /// The region with `id`.
    #[must_use]
    pub fn get(&self, id: &RegionId) -> Option<&Arc<Region>> {
        self.by_id.get(id)
    }

    /// All region ids.
    #[must_use]
    pub fn ids(&self) -> Vec<RegionId> {
        self.by_id.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(urls: &[&str]) -> Region {
        let key = AssertionKey::new("k", "HS256", vec![1; 32]).unwrap();
        let ups = urls.iter().map(|u| Upstream::parse(u).unwrap()).collect();
        Region::new(
            RegionId::new("eu").unwrap(),
            &key,
            ups,
            Duration::from_secs(5),
        )
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
