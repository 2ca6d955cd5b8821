//! JSON Web Key Sets: the public keys of one issuer, loaded from a file or fetched over the
//! network ([`super::remote`]: https, or OpenID Connect discovery).
//!
//! The current key set is an immutable snapshot behind an `RwLock<Arc<_>>`; readers clone the
//! `Arc` and never hold the lock across an `.await`. A fetch that fails keeps the last good
//! keys. Fetches caused by an unknown `kid` are single-flight and at most one per cool-down,
//! so a flood of random `kid`s cannot turn into a flood of JWKS requests.
//!
//! A remote set is refreshed in the background: after the response's `Cache-Control: max-age`
//! when it has one, else after the configured refresh interval, and never sooner than the
//! cool-down or later than the refresh interval. A failed fetch is retried after the
//! cool-down.
//!
//! Only signature keys of asymmetric types (EC, RSA, OKP) with a `kid` are kept: a symmetric
//! (`oct`) key in a JWKS is ignored, so a published key can never become an HMAC secret.
//!
//! Key identity: a refresh keeps the very `Arc<JwkKey>` of every key whose JWK is unchanged,
//! and drops the one of every key that left the set or changed under its `kid`. Tokens in the
//! verified-token cache hold a `Weak` to the key that verified them
//! ([`super::cache::Verified::signed`]), so a key gone from the set (rotated out after a
//! compromise) stops its cached tokens on their next use, however far their `exp` is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::remote::{Fetched, Remote};

/// The largest JWKS document accepted.
pub(crate) const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The most keys kept from one document.
pub(crate) const MAX_KEYS: usize = 64;

/// One usable verification key. The key set is its only long-lived owner: a verified-token
/// cache entry holds a `Weak` to it, so nothing else may keep a clone of the `Arc` beyond one
/// verification, or a removed key would stay alive for its tokens.
pub struct JwkKey {
    /// The key.
    pub key: DecodingKey,
    /// Its algorithm family (EC, RSA, Ed).
    pub(crate) family: jsonwebtoken::AlgorithmFamily,
    /// The `alg` the JWK pins, when it does.
    pub alg: Option<Algorithm>,
    /// The JWK it came from: a refresh compares it to keep an unchanged key's identity.
    jwk: Jwk,
}

/// Keys by `kid`.
pub type KeySet = HashMap<String, Arc<JwkKey>>;

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file or URL could not be read.
    #[error("cannot fetch jwks: {0}")]
    Fetch(String),
    /// The document is not a JWKS.
    #[error("invalid jwks document: {0}")]
    Parse(String),
}

/// Parses a JWKS document, keeping only usable signature keys.
///
/// # Errors
/// [`JwksError::Parse`] when the document is not a JWKS.
pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| JwksError::Parse(e.to_string()))?;
    let mut out = KeySet::new();
    for jwk in set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let family = match jwk.algorithm {
            AlgorithmParameters::EllipticCurve(_) => jsonwebtoken::AlgorithmFamily::Ec,
            AlgorithmParameters::RSA(_) => jsonwebtoken::AlgorithmFamily::Rsa,
            AlgorithmParameters::OctetKeyPair(_) => jsonwebtoken::AlgorithmFamily::Ed,
            // Symmetric keys are never accepted from a key set.
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => match ka.to_string().parse::<Algorithm>() {
                Ok(a) if a.family() == family => Some(a),
                // An encryption algorithm, or one that contradicts the key type: unusable.
                _ => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        if out.len() < MAX_KEYS {
            out.insert(
                kid,
                Arc::new(JwkKey {
                    key,
                    family,
                    alg,
                    jwk,
                }),
            );
        }
    }
    Ok(out)
}

/// Where an issuer's keys come from.
pub enum Source {
    /// A file, reread on an unknown `kid` (after the cool-down).
    File(PathBuf),
    /// A JWKS URL or discovery, refreshed in the background.
    Remote(Remote),
}

/// When the last fetch started and how long its answer said it stays fresh.
#[derive(Default)]
struct FetchState {
    started: Option<Instant>,
    /// The answer's freshness (`max-age`); zero after a failure, `None` when it gave none.
    fresh_for: Option<Duration>,
}

/// The key set of one issuer, with refresh.
pub struct Jwks {
    keys: RwLock<Arc<KeySet>>,
    source: Source,
    cooldown: Duration,
    timeout: Duration,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<FetchState>,
}

impl Jwks {
    /// Loads the key set. A file must load; a URL that fails leaves the set empty until a
    /// later fetch succeeds (the IdP being down must not stop the gateway from starting).
    ///
    /// # Errors
    /// [`JwksError`] when a file source cannot be read or parsed.
    pub async fn load(
        source: Source,
        cooldown: Duration,
        timeout: Duration,
    ) -> Result<Self, JwksError> {
        let jwks = Self {
            keys: RwLock::new(Arc::new(KeySet::new())),
            source,
            cooldown,
            timeout,
            last_fetch: tokio::sync::Mutex::new(FetchState::default()),
        };
        let mut last = jwks.last_fetch.lock().await;
        match (jwks.fetch().await, &jwks.source) {
            (Ok((set, fresh_for)), _) => {
                jwks.replace(set);
                *last = FetchState {
                    started: Some(Instant::now()),
                    fresh_for,
                };
            }
            (Err(e), Source::File(_)) => return Err(e),
            (Err(e), Source::Remote(_)) => {
                // No cool-down yet: the first token after the issuer recovers triggers a fetch
                // instead of waiting for the background refresh.
                tracing::warn!(error = %e, "jwks not available at start; will retry");
            }
        }
        drop(last);
        Ok(jwks)
    }

    /// The key for `kid`, if the current set has it.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<Arc<JwkKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Refetches after an unknown `kid`, unless a fetch started less than the cool-down ago.
    /// Concurrent callers wait for the one fetch in flight instead of starting their own.
    pub(crate) async fn refetch_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.started.is_some_and(|t| t.elapsed() < self.cooldown) {
            return;
        }
        self.fetch_and_replace(&mut last).await;
    }

    /// Fetches now (background refresh), single-flight with other fetches.
    pub async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        self.fetch_and_replace(&mut last).await;
    }

    /// Refreshes a remote source until `shutdown`: when the last answer's `max-age` runs
    /// out, bounded to `[cool-down, every]`, or `every` without one; after a failure, the
    /// cool-down. A fetch caused by an unknown `kid` meanwhile postpones the next refresh.
    pub(crate) fn spawn_refresh(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        if !matches!(self.source, Source::Remote(_)) {
            return;
        }
        tokio::spawn(async move {
            let spawned = Instant::now();
            loop {
                let due = self.next_refresh(every, spawned).await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
                let mut last = self.last_fetch.lock().await;
                if self.due(&last, every, spawned) <= Instant::now() {
                    self.fetch_and_replace(&mut last).await;
                }
            }
        });
    }

    async fn next_refresh(&self, every: Duration, spawned: Instant) -> Instant {
        let last = self.last_fetch.lock().await;
        self.due(&last, every, spawned)
    }

    /// When the set is due for a refresh: `fresh_for` bounded to `[cool-down, every]` after
    /// the last fetch (or after `spawned`, when nothing was fetched yet).
    fn due(&self, last: &FetchState, every: Duration, spawned: Instant) -> Instant {
        let wait = last
            .fresh_for
            .unwrap_or(every)
            .clamp(self.cooldown.min(every), every);
        last.started.unwrap_or(spawned) + wait
    }

    async fn fetch_and_replace(&self, last: &mut FetchState) {
        last.started = Some(Instant::now());
        match self.fetch().await {
            Ok((set, fresh_for)) => {
                self.replace(set);
                last.fresh_for = fresh_for;
            }
            Err(e) => {
                tracing::warn!(error = %e, "jwks fetch failed; keeping the last good keys");
                last.fresh_for = Some(Duration::ZERO);
            }
        }
    }

    /// Installs `set`, keeping the `Arc` of every unchanged key so the tokens it verified stay
    /// cached. The keys that left the set (or changed under their `kid`) are dropped with the
    /// old set, which ends every cached token they verified.
    fn replace(&self, mut set: KeySet) {
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let mut removed = 0usize;
        for (kid, old) in current.iter() {
            match set.get_mut(kid) {
                Some(new) if new.jwk == old.jwk => *new = Arc::clone(old),
                _ => removed += 1,
            }
        }
        *current = Arc::new(set);
        drop(current);
        if removed > 0 {
            tracing::info!(
                removed,
                "jwks keys removed or replaced; tokens they verified are no longer accepted"
            );
        }
    }

    /// The key set and how long it stays fresh (a remote answer's `max-age`).
    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), JwksError> {
        let result = match tokio::time::timeout(self.timeout, self.fetch_bytes()).await {
            Ok(r) => r,
            Err(_) => Err(JwksError::Fetch("timed out".to_owned())),
        }
        .and_then(|f| Ok((parse(&f.bytes)?, f.max_age)));
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::JWKS_FETCHES_TOTAL, "result" => label).increment(1);
        result
    }

    async fn fetch_bytes(&self) -> Result<Fetched, JwksError> {
        match &self.source {
            Source::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| JwksError::Fetch(format!("{}: {e}", path.display())))?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(JwksError::Fetch("document larger than 64 KiB".to_owned()));
                }
                Ok(Fetched {
                    bytes: Bytes::from(bytes),
                    max_age: None,
                })
            }
            Source::Remote(remote) => remote.fetch().await,
        }
    }
}

#[cfg(test)]
impl Jwks {
    /// Test helper: writes `doc` to `path` and loads it as a file source (an hour's cool-down,
    /// a 1 s timeout). A test changes the set by rewriting the file and calling
    /// [`Jwks::refresh`].
    pub(crate) async fn from_test_file(path: &std::path::Path, doc: &str) -> Self {
        std::fs::write(path, doc).unwrap();
        Self::load(
            Source::File(path.to_owned()),
            Duration::from_secs(3600),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn keeps_only_asymmetric_signature_keys_with_kid() {
        let doc = format!(
            r#"{{"keys":[{EC_JWK},
            {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
            {{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"EC","crv":"P-256","kid":"liar","alg":"HS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}
            ]}}"#
        );
        let set = parse(doc.as_bytes()).unwrap();
        let kids: Vec<_> = set.keys().map(String::as_str).collect();
        assert_eq!(kids, ["k1"]);
        assert_eq!(set["k1"].alg, Some(Algorithm::ES256));
        assert_eq!(set["k1"].family, jsonwebtoken::AlgorithmFamily::Ec);
    }

    #[tokio::test]
    async fn a_refresh_keeps_unchanged_keys_and_drops_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let other = EC_JWK.replace("\"k1\"", "\"k2\"");
        let jwks = Jwks::from_test_file(&path, &format!("{{\"keys\":[{EC_JWK},{other}]}}")).await;
        let (k1, k2) = (jwks.get("k1").unwrap(), jwks.get("k2").unwrap());
        let (w1, w2) = (Arc::downgrade(&k1), Arc::downgrade(&k2));
        drop((k1, k2));
        // Same document: the same keys.
        jwks.refresh().await;
        assert!(w1.strong_count() > 0 && w2.strong_count() > 0);
        // k2 leaves the set: its key is gone, k1's is the same one.
        std::fs::write(&path, format!("{{\"keys\":[{EC_JWK}]}}")).unwrap();
        jwks.refresh().await;
        assert_eq!(w2.strong_count(), 0);
        assert!(Arc::ptr_eq(
            &w1.upgrade().unwrap(),
            &jwks.get("k1").unwrap()
        ));
        // A changed JWK under the same kid: a new key, the old one is gone.
        let changed = EC_JWK.replace("\"ES256\",", "\"ES256\", \"x5t\":\"changed\",");
        std::fs::write(&path, format!("{{\"keys\":[{changed}]}}")).unwrap();
        jwks.refresh().await;
        assert_eq!(w1.strong_count(), 0);
        assert!(jwks.get("k1").is_some());
    }

    /// The next refresh: the answer's `max-age` within `[cool-down, every]`, `every` without
    /// one, the cool-down after a failure; counted from the last fetch, or from the start of
    /// the refresh task when nothing was fetched.
    #[tokio::test]
    async fn refresh_is_due_after_max_age_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = Jwks::from_test_file(&dir.path().join("jwks.json"), "{\"keys\":[]}").await;
        let (every, cooldown) = (Duration::from_secs(300), Duration::from_secs(3600));
        assert_eq!(jwks.cooldown, cooldown);
        let start = Instant::now();
        let after = |started: Option<Instant>, fresh_for: Option<u64>| {
            let state = FetchState {
                started,
                fresh_for: fresh_for.map(Duration::from_secs),
            };
            jwks.due(&state, every, start) - start
        };
        // The test source's cool-down (an hour) exceeds `every`: `every` bounds both ends.
        assert_eq!(after(Some(start), Some(10)), every);
        let jwks = Jwks {
            cooldown: Duration::from_secs(30),
            ..jwks
        };
        let after = |started: Option<Instant>, fresh_for: Option<u64>| {
            let state = FetchState {
                started,
                fresh_for: fresh_for.map(Duration::from_secs),
            };
            (jwks.due(&state, every, start) - start).as_secs()
        };
        assert_eq!(after(Some(start), None), 300);
        assert_eq!(after(Some(start), Some(120)), 120);
        assert_eq!(after(Some(start), Some(5)), 30);
        assert_eq!(after(Some(start), Some(0)), 30);
        assert_eq!(after(Some(start), Some(86_400)), 300);
        assert_eq!(after(None, Some(120)), 120);
        let later = start + Duration::from_secs(50);
        assert_eq!(after(Some(later), Some(120)), 170);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"{\"nokeys\":1}").is_err());
    }

    #[tokio::test]
    async fn file_source_must_load_and_unknown_kid_refetch_respects_cooldown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let jwks = Jwks::from_test_file(&path, "{\"keys\":[]}").await;
        assert!(jwks.get("k1").is_none());
        // Within the cool-down the file is not reread, even though it changed.
        std::fs::write(&path, format!("{{\"keys\":[{EC_JWK}]}}")).unwrap();
        jwks.refetch_for_unknown_kid().await;
        assert!(jwks.get("k1").is_none());
        // An explicit refresh rereads it.
        jwks.refresh().await;
        assert!(jwks.get("k1").is_some());
        // A broken document keeps the last good keys.
        std::fs::write(&path, "broken").unwrap();
        jwks.refresh().await;
        assert!(jwks.get("k1").is_some());

        assert!(Jwks::load(
            Source::File(dir.path().join("missing.json")),
            Duration::from_secs(30),
            Duration::from_secs(1)
        )
        .await
        .is_err());
    }
}
