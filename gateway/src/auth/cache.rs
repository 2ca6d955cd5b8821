//! The verified-token cache: a repeat request with the same bearer token does no signature
//! work and, most of the time, no assertion minting either.
//!
//! Keyed by the token itself and compared in full on every hit (as Envoy's JWT cache does), so
//! no two tokens can share an entry. An entry lives until the token's `exp` and holds the
//! [`AuthContext`] plus the last internal assertion minted for it. The cache is bounded: when
//! full it sweeps expired entries at most once a second, and if still full it stops caching
//! new tokens (they are still verified, just not remembered).
//!
//! Why not a SHA-256 of the token as the key: hashing a typical 400-byte JWT costs about
//! 240 ns, more than the whole hit may (SPEC §5: 150 ns; `benches/auth.rs`). The price is that
//! the tokens of the last `token_cache_entries` callers sit in memory until they expire, next
//! to the assertion keys the process holds anyway; they are never logged, and the key type
//! has no `Debug`. The map hashes with foldhash seeded per process: only verified tokens are
//! inserted, and a client cannot choose colliding lookups without the seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use http::HeaderValue;
use residency_config::assertion::AssertionError;
use residency_config::RegionId;

use super::AuthContext;
use crate::metrics as m;
use crate::proxy::upstream::Region;

/// Re-mint an assertion when less than this many seconds of it remain, so a node with a few
/// seconds of clock skew never sees an expired one.
pub const ASSERTION_REFRESH_MARGIN_SECS: u64 = 15;

/// A token as a cache key (borrowed; the cache keeps its own copy on insert). No `Debug`, so
/// a token cannot end up in a log by accident.
#[derive(Clone, Copy)]
pub struct TokenKey<'a>(&'a str);

/// The cache key of a bearer token.
#[must_use]
pub fn key_of(token: &str) -> TokenKey<'_> {
    TokenKey(token)
}

type Hasher = foldhash::fast::RandomState;

/// A verified credential and its cached assertion.
pub struct Verified {
    /// Who is calling.
    pub ctx: AuthContext,
    assertion: Mutex<Option<Minted>>,
}

struct Minted {
    region: RegionId,
    token: HeaderValue,
    refresh_at: u64,
}

impl Verified {
    /// Wraps a freshly verified context.
    #[must_use]
    pub fn new(ctx: AuthContext) -> Self {
        Self {
            ctx,
            assertion: Mutex::new(None),
        }
    }

    /// The internal assertion for `region` at `now`: the cached one while it has more than
    /// [`ASSERTION_REFRESH_MARGIN_SECS`] left and is for the same region, else a new one.
    ///
    /// # Errors
    /// [`AssertionError`] when minting fails.
    pub fn assertion_for(&self, region: &Region, now: u64) -> Result<HeaderValue, AssertionError> {
        // The lock is held only for a compare and, about once a minute, one HMAC: never across
        // an `.await`.
        let mut slot = self
            .assertion
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = slot.as_ref() {
            if m.refresh_at > now && m.region == *region.id() {
                return Ok(m.token.clone());
            }
        }
        let (token, exp) =
            region
                .signer()
                .mint(self.ctx.tenant, &self.ctx.subject, &self.ctx.role, now)?;
        let token = HeaderValue::try_from(token)
            .map_err(|_| AssertionError::Key("minted assertion is not a header value".into()))?;
        *slot = Some(Minted {
            region: region.id().clone(),
            token: token.clone(),
            refresh_at: exp.saturating_sub(ASSERTION_REFRESH_MARGIN_SECS),
        });
        Ok(token)
    }
}

/// Verified tokens.
pub struct TokenCache {
    map: DashMap<Box<str>, Arc<Verified>, Hasher>,
    /// Verified contexts of API keys by subject (`apikey:<id>`), so an API key's minted
    /// assertion is reused like a JWT's. Only consulted after the directory accepted the key on
    /// this very request, so revocation still applies at once.
    api_keys: DashMap<Box<str>, Arc<Verified>, Hasher>,
    capacity: usize,
    last_sweep: AtomicU64,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens. Its hit and miss counters are
    /// registered with the metrics recorder installed now.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(Hasher::default()),
            api_keys: DashMap::with_hasher(Hasher::default()),
            capacity,
            last_sweep: AtomicU64::new(0),
            hits: metrics::counter!(m::TOKEN_CACHE_TOTAL, "result" => "hit"),
            misses: metrics::counter!(m::TOKEN_CACHE_TOTAL, "result" => "miss"),
        }
    }

    /// The shared [`Verified`] for an API key the directory has just accepted: the cached one
    /// while its tenant, subject and role are unchanged and it has not expired at `now`, else a
    /// new one. Reusing it reuses its minted assertion (one HMAC a minute per key instead of
    /// one per request).
    #[must_use]
    pub fn api_key(&self, ctx: AuthContext, now: u64) -> Arc<Verified> {
        if let Some(hit) = self.api_keys.get(ctx.subject.as_str()) {
            let c = &hit.value().ctx;
            if c.expires_at > now && c.tenant == ctx.tenant && c.role == ctx.role {
                return Arc::clone(hit.value());
            }
        }
        if self.api_keys.len() >= self.capacity {
            self.api_keys.clear();
        }
        let subject: Box<str> = ctx.subject.clone().into_boxed_str();
        let verified = Arc::new(Verified::new(ctx));
        self.api_keys.insert(subject, Arc::clone(&verified));
        verified
    }

    /// The entry for `key` if present and not expired at `now`.
    #[must_use]
    pub fn get(&self, key: &TokenKey<'_>, now: u64) -> Option<Arc<Verified>> {
        let hit = self.map.get(key.0).map(|e| Arc::clone(e.value()))?;
        if hit.ctx.expires_at > now {
            Some(hit)
        } else {
            self.map.remove_if(key.0, |_, v| v.ctx.expires_at <= now);
            None
        }
    }

    /// Counts a hit in `gateway_token_cache_total`: an atomic add on a handle registered once,
    /// where `metrics::counter!` at the call site would look the series up every time.
    pub fn count_hit(&self) {
        self.hits.increment(1);
    }

    /// Counts a miss in `gateway_token_cache_total`.
    pub fn count_miss(&self) {
        self.misses.increment(1);
    }

    /// Remembers a verified token until its expiry.
    pub fn insert(&self, key: TokenKey<'_>, verified: Arc<Verified>, now: u64) {
        if self.map.len() >= self.capacity {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if last < now
                && self
                    .last_sweep
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.map.retain(|_, v| v.ctx.expires_at > now);
            }
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(Box::from(key.0), verified);
    }

    /// Entries currently held (expired ones included until swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use residency_config::assertion::{AssertionKey, Verifier};
    use residency_config::TenantId;

    #[test]
    fn api_key_contexts_are_shared_until_they_change_or_expire() {
        let cache = TokenCache::new(16);
        let mut c = ctx(160);
        c.subject = "apikey:k1".into();
        let first = cache.api_key(c.clone(), 100);
        // Same key, a later request (its context carries a later expiry): the same Verified.
        let mut later = c.clone();
        later.expires_at = 170;
        assert!(Arc::ptr_eq(&first, &cache.api_key(later.clone(), 110)));
        // A role change in the directory: a new one.
        let mut role = later.clone();
        role.role = "viewer".into();
        let changed = cache.api_key(role, 111);
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.ctx.role, "viewer");
        // Expired: a new one.
        let mut fresh = later;
        fresh.role = "viewer".into();
        fresh.expires_at = 400;
        assert!(!Arc::ptr_eq(&changed, &cache.api_key(fresh, 300)));
    }

    fn ctx(exp: u64) -> AuthContext {
        AuthContext {
            tenant: TenantId::from_uuid(uuid::Uuid::new_v4()),
            subject: "user-1".into(),
            role: "admin".into(),
            expires_at: exp,
        }
    }

    #[test]
    fn entries_expire_with_the_token() {
        let cache = TokenCache::new(10);
        let k = key_of("token-a");
        cache.insert(k, Arc::new(Verified::new(ctx(100))), 50);
        assert!(cache.get(&k, 99).is_some());
        assert!(cache.get(&k, 100).is_none());
        assert!(cache.is_empty(), "expired entry is dropped on lookup");
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = TokenCache::new(10);
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
        cache.insert(key_of(token), Arc::new(Verified::new(ctx(100))), 50);
        assert!(cache.get(&key_of(token), 60).is_some());
        let owned = token.to_owned();
        assert!(
            cache.get(&key_of(&owned), 60).is_some(),
            "by value, not address"
        );
        for other in [
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2lo",
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2l",
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln ",
            "",
        ] {
            assert!(cache.get(&key_of(other), 60).is_none(), "{other:?}");
        }
    }

    #[test]
    fn full_cache_sweeps_expired_then_stops_caching() {
        let cache = TokenCache::new(2);
        cache.insert(key_of("a"), Arc::new(Verified::new(ctx(10))), 1);
        cache.insert(key_of("b"), Arc::new(Verified::new(ctx(1000))), 1);
        // Full; "a" has expired by t=20 and is swept to make room for "c".
        cache.insert(key_of("c"), Arc::new(Verified::new(ctx(1000))), 20);
        assert!(cache.get(&key_of("c"), 20).is_some());
        assert_eq!(cache.len(), 2);
        // Full of live entries: "d" is not cached.
        cache.insert(key_of("d"), Arc::new(Verified::new(ctx(1000))), 21);
        assert!(cache.get(&key_of("d"), 21).is_none());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn assertion_is_reused_until_refresh_and_per_region() {
        let key = AssertionKey::new("eu-1", "HS256", vec![7; 32]).unwrap();
        let eu = Region::for_tests("eu", &key);
        let us = Region::for_tests("us", &key);
        let now = residency_config::assertion::now_secs();
        let v = Verified::new(ctx(now + 3600));
        let a1 = v.assertion_for(&eu, now).unwrap();
        assert_eq!(v.assertion_for(&eu, now + 10).unwrap(), a1);
        // Within the refresh margin of its expiry a new one is minted.
        let a2 = v
            .assertion_for(&eu, now + 60 - ASSERTION_REFRESH_MARGIN_SECS)
            .unwrap();
        assert_ne!(a2, a1);
        // Another region never reuses the first region's assertion.
        let a3 = v.assertion_for(&us, now + 46).unwrap();
        assert_ne!(a3, a2);
        let claims = Verifier::new(RegionId::new("eu").unwrap(), &[key])
            .verify(a1.to_str().unwrap())
            .unwrap();
        assert_eq!(claims.tenant(), v.ctx.tenant);
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.role, "admin");
    }
}
