//! The verified-token cache: a repeat request with the same bearer token does no signature
//! work and, most of the time, no assertion minting either.
//!
//! Keyed by the token itself and compared in full on every hit (as Envoy's JWT cache does), so
//! no two tokens can share an entry. An entry lives until the token's `exp` and holds the
//! [`AuthContext`] plus the last internal assertion minted for it. The cache is bounded: when
//! full it sweeps expired entries at most once a second, and if still full it stops caching
//! new tokens (they are still verified, just not remembered).
//!
//! An entry also ends when the key that verified it leaves the issuer's key set (a `kid`
//! removed from the JWKS after a compromise, noticed by the periodic refresh or an unknown-`kid`
//! fetch): the entry holds a `Weak` to that key ([`super::jwks::JwkKey`]), and the key set is
//! its only owner, so a hit checks the key is still alive with one atomic load (no lock, no
//! lookup in the key set) and a dead key turns the hit into a full verification, which fails.
//!
//! Why not a SHA-256 of the token as the key: hashing a typical 400-byte JWT costs about
//! 240 ns, more than the whole hit may (SPEC §5: 150 ns; `benches/auth.rs`). The price is that
//! the tokens of the last `token_cache_entries` callers sit in memory until they expire, next
//! to the assertion keys the process holds anyway; they are never logged, and the key type
//! has no `Debug`. The map hashes with foldhash seeded per process: only verified tokens are
//! inserted, and a client cannot choose colliding lookups without the seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use dashmap::DashMap;
use http::HeaderValue;
use residency_core::assertion::{AssertionError, Signer};
use residency_core::RegionId;

use super::jwks::JwkKey;
use super::AuthContext;
use crate::metrics as m;

/// Re-mint an assertion when less than this many seconds of it remain, so a node with a few
/// seconds of clock skew never sees an expired one.
pub(crate) const ASSERTION_REFRESH_MARGIN_SECS: u64 = 15;

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
    /// The key that verified a token's signature (`None` for an API key, which the directory
    /// checks on every request).
    signed_by: Option<Weak<JwkKey>>,
    assertion: Mutex<Option<Minted>>,
}

struct Minted {
    region: RegionId,
    token: HeaderValue,
    refresh_at: u64,
}

impl Verified {
    /// Wraps a context verified without a signing key (an API key).
    #[must_use]
    pub fn new(ctx: AuthContext) -> Self {
        Self {
            ctx,
            signed_by: None,
            assertion: Mutex::new(None),
        }
    }

    /// Wraps the context of a token whose signature `key` verified: cached, it is accepted only
    /// while `key` is still in its issuer's key set.
    #[must_use]
    pub fn signed(ctx: AuthContext, key: &Arc<JwkKey>) -> Self {
        Self {
            signed_by: Some(Arc::downgrade(key)),
            ..Self::new(ctx)
        }
    }

    /// Whether a cached entry may still be served at `now`: not expired, and its signing key
    /// (if any) not removed from the key set.
    fn usable(&self, now: u64) -> bool {
        self.ctx.expires_at > now
            && self
                .signed_by
                .as_ref()
                .is_none_or(|key| key.strong_count() > 0)
    }

    /// The internal assertion for the region of `signer` at `now`: the cached one while it
    /// has more than [`ASSERTION_REFRESH_MARGIN_SECS`] left and is for the same region, else a
    /// new one minted with `signer` (the home region's, from the proxy).
    ///
    /// # Errors
    /// [`AssertionError`] when minting fails.
    pub(crate) fn assertion_for(
        &self,
        signer: &Signer,
        now: u64,
    ) -> Result<HeaderValue, AssertionError> {
        // The lock is held only for a compare and, about once a minute, one HMAC: never across
        // an `.await`.
        let mut slot = self
            .assertion
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = slot.as_ref() {
            if m.refresh_at > now && m.region == *signer.region() {
                return Ok(m.token.clone());
            }
        }
        let (token, exp) = signer.mint(self.ctx.tenant, &self.ctx.subject, &self.ctx.role, now)?;
        let token = HeaderValue::try_from(token)
            .map_err(|_| AssertionError::Key("minted assertion is not a header value".into()))?;
        *slot = Some(Minted {
            region: signer.region().clone(),
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

    /// The entry for `key` if present, not expired at `now`, and its signing key still in the
    /// key set; an entry that is not is dropped.
    #[must_use]
    pub fn get(&self, key: &TokenKey<'_>, now: u64) -> Option<Arc<Verified>> {
        let hit = self.map.get(key.0).map(|e| Arc::clone(e.value()))?;
        if hit.usable(now) {
            Some(hit)
        } else {
            self.map.remove_if(key.0, |_, v| !v.usable(now));
            None
        }
    }

    /// Counts a hit in `residency_gateway_token_cache_total`: an atomic add on a handle registered once,
    /// where `metrics::counter!` at the call site would look the series up every time.
    pub fn count_hit(&self) {
        self.hits.increment(1);
    }

    /// Counts a miss in `residency_gateway_token_cache_total`.
    pub(crate) fn count_miss(&self) {
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
                self.map.retain(|_, v| v.usable(now));
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
    use crate::auth::CredentialKind;
    use residency_core::assertion::{AssertionKey, Verifier, MAX_TTL_SECS};
    use residency_core::TenantId;

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

    #[tokio::test]
    async fn a_token_is_dropped_when_its_key_leaves_the_key_set() {
        use crate::auth::jwks::Jwks;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let (jwk1, jwk2) = (ec_jwk("k1"), ec_jwk("k2"));
        let jwks = Jwks::from_test_file(&path, &format!(r#"{{"keys":[{jwk1},{jwk2}]}}"#)).await;
        let cache = TokenCache::new(10);
        let (t1, t2) = (key_of("token-of-k1"), key_of("token-of-k2"));
        cache.insert(
            t1,
            Arc::new(Verified::signed(ctx(1000), &jwks.get("k1").unwrap())),
            50,
        );
        cache.insert(
            t2,
            Arc::new(Verified::signed(ctx(1000), &jwks.get("k2").unwrap())),
            50,
        );
        // An API key context has no signing key: only expiry applies.
        let t3 = key_of("api-key-context");
        cache.insert(t3, Arc::new(Verified::new(ctx(1000))), 50);
        assert!(cache.get(&t1, 60).is_some() && cache.get(&t2, 60).is_some());

        // A refresh with the same document keeps every entry.
        jwks.refresh().await;
        assert!(cache.get(&t1, 61).is_some() && cache.get(&t2, 61).is_some());

        // k2 is removed (compromised): its token is refused long before its exp, k1's is not.
        std::fs::write(&path, format!(r#"{{"keys":[{jwk1}]}}"#)).unwrap();
        jwks.refresh().await;
        assert!(
            cache.get(&t2, 62).is_none(),
            "token of a removed key still cached"
        );
        assert_eq!(cache.len(), 2, "its entry is dropped");
        assert!(cache.get(&t1, 62).is_some());
        assert!(cache.get(&t3, 62).is_some());

        // A full cache's sweep drops the entries of removed keys too.
        let small = TokenCache::new(1);
        small.insert(
            t1,
            Arc::new(Verified::signed(ctx(1000), &jwks.get("k1").unwrap())),
            70,
        );
        std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
        jwks.refresh().await;
        small.insert(t2, Arc::new(Verified::new(ctx(1000))), 71);
        assert!(small.get(&t2, 71).is_some(), "the dead entry made room");
        assert_eq!(small.len(), 1);
    }

    /// A generated P-256 public key as a JWK with `kid`.
    fn ec_jwk(kid: &str) -> String {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine;
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        jwk.to_string()
    }

    fn ctx(exp: u64) -> AuthContext {
        AuthContext {
            kind: CredentialKind::Jwt,
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
        let signer = |region: &str| Signer::new(RegionId::new(region).unwrap(), &key, MAX_TTL_SECS);
        let (eu, us) = (signer("eu"), signer("us"));
        let now = residency_core::assertion::now_secs();
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
