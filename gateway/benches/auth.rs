//! Micro-benchmark of the verified-token cache hit (SPEC §5: ≤ 150 ns): what the request path
//! does for a bearer token it has verified before.
//!
//! `cargo bench -p residency-gateway --bench auth`
//!
//! - `token_cache_hit`: the whole path as `Gateway::authenticate` runs it for a cached token:
//!   find the credential in the headers, derive the cache key from the token, probe the cache
//!   (expiry check, signing key still in the key set, `Arc` clone), count the hit on the
//!   installed Prometheus recorder;
//! - `token_cache_hit_10k_tokens`: the same rotating over 10 000 cached tokens, so the map
//!   does not sit in L1 (each request's headers are built just before, warm as after
//!   parsing);
//! - `token_cache_hit_counter_handle` (and `_10k_tokens`): the same with the hit counted on
//!   the cache's registered counter handle (`TokenCache::count_hit`) instead of a
//!   `metrics::counter!` lookup at the call site;
//! - `extract_bearer`, `cache_key`, `cache_probe`, `hit_counter_macro`,
//!   `hit_counter_handle`: the steps alone.
//!
//! The token is a real ES256 JWT of typical size (about 400 bytes: `kid`, `iss`, `aud`,
//! `sub`, tenant, role, `iat`, `exp`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use residency_core::TenantId;
use residency_gateway::auth::cache::{self, TokenCache, Verified};
use residency_gateway::auth::jwks::{self, JwkKey};
use residency_gateway::auth::{self as authn, AuthContext, Credential, CredentialKind};
use residency_gateway::metrics as m;

const NOW: u64 = 1_800_000_000;

fn tenant(n: u32) -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x0190_a5c4_0000_7000_8000_0000_0000_0000 | u128::from(n),
    ))
}

/// A signed ES256 token for tenant `n`, as an identity provider issues it.
fn token(key: &EncodingKey, n: u32) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("idp-2026-04".to_owned());
    let claims = serde_json::json!({
        "iss": "https://login.residency.example/",
        "aud": "residency-api",
        "sub": format!("user-{n:08}@customer.example"),
        "tenant_id": tenant(n).to_string(),
        "role": "developer",
        "iat": NOW - 60,
        "exp": NOW + 3600,
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn headers_with(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("api.residency.example"));
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("acme-sdk/2.4.1 (linux)"),
    );
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h.insert(
        "x-request-id",
        HeaderValue::from_static("0190a5c4-7b1e-7000-8000-00000000abcd"),
    );
    h
}

/// The token as the verifier leaves it: bound to the key (from the issuer's key set) that
/// verified it.
fn verified(n: u32, key: &Arc<JwkKey>) -> Arc<Verified> {
    let ctx = AuthContext {
        kind: CredentialKind::Jwt,
        tenant: tenant(n),
        subject: format!("user-{n:08}@customer.example"),
        role: "developer".to_owned(),
        expires_at: NOW + 3600,
    };
    Arc::new(Verified::signed(ctx, key))
}

/// The issuer's key set with the public half of `pkcs8`.
fn key_set(pkcs8: &[u8]) -> jwks::KeySet {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
    let point = pair.public_key().as_ref();
    let doc = serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "idp-2026-04", "use": "sig", "alg": "ES256",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    }]});
    jwks::parse(doc.to_string().as_bytes()).unwrap()
}

/// How a hit is counted.
#[derive(Clone, Copy)]
enum Count {
    /// `metrics::counter!` at the call site, as `Gateway::authenticate` does today.
    Macro,
    /// The cache's registered handle.
    Handle,
}

/// The cache-hit branch of `Gateway::authenticate`, step for step.
fn authenticate_cached(
    cache: &TokenCache,
    headers: &HeaderMap,
    now: u64,
    count: Count,
) -> Arc<Verified> {
    let Ok(Credential::Bearer(token)) = authn::extract(headers) else {
        unreachable!("the benchmark sends a bearer token")
    };
    let key = cache::key_of(token);
    let hit = cache.get(&key, now).expect("the token is cached");
    match count {
        Count::Macro => {
            metrics::counter!(m::TOKEN_CACHE_TOTAL, "result" => "hit").increment(1);
        }
        Count::Handle => cache.count_hit(),
    }
    hit
}

fn bench(c: &mut Criterion) {
    // The recorder the gateway installs, so counting a hit costs what it costs in production.
    let _prometheus = m::install();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    // Held for the whole run, as the gateway's key set holds it.
    let keys = key_set(pkcs8.as_ref());
    let signing = &keys["idp-2026-04"];

    let cache = TokenCache::new(100_000);
    let tokens: Vec<String> = (0..10_000).map(|n| token(&key, n)).collect();
    for (n, t) in (0u32..).zip(&tokens) {
        cache.insert(cache::key_of(t), verified(n, signing), NOW);
    }
    let one = headers_with(&tokens[1]);
    eprintln!("token length: {} bytes", tokens[1].len());

    for (name, count) in [
        ("token_cache_hit", Count::Macro),
        ("token_cache_hit_counter_handle", Count::Handle),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| black_box(authenticate_cached(&cache, black_box(&one), NOW, count)));
        });
        // The request's headers were just parsed, so they are warm; the cache entry is not.
        let mut i = 0usize;
        c.bench_function(&format!("{name}_10k_tokens"), |b| {
            b.iter_batched(
                || {
                    i = (i + 7919) % tokens.len();
                    headers_with(&tokens[i])
                },
                |h| (authenticate_cached(&cache, &h, NOW, count), h),
                BatchSize::SmallInput,
            );
        });
    }

    c.bench_function("extract_bearer", |b| {
        b.iter(|| black_box(authn::extract(black_box(&one))));
    });
    let token1 = tokens[1].as_str();
    c.bench_function("cache_key", |b| {
        b.iter(|| black_box(cache::key_of(black_box(token1))));
    });
    let key1 = cache::key_of(token1);
    c.bench_function("cache_probe", |b| {
        b.iter(|| black_box(cache.get(black_box(&key1), NOW)));
    });
    c.bench_function("hit_counter_macro", |b| {
        b.iter(|| metrics::counter!(m::TOKEN_CACHE_TOTAL, "result" => "hit").increment(1));
    });
    c.bench_function("hit_counter_handle", |b| b.iter(|| cache.count_hit()));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
