//! Micro-benchmark of the directory lookup on the request path (SPEC §5: ≤ 100 ns).
//!
//! `cargo bench -p residency-gateway --bench directory`
//!
//! - `resolve_hit`: `Directory::resolve` for a cached active tenant (dashmap probe, `Arc`
//!   clone, status check; the future is ready at its first poll, so no runtime is involved);
//! - `resolve_hit_10k_tenants`: the same rotating over 10 000 tenants, so the map does not
//!   sit in L1;
//! - `api_key_hit`: the API key record by prefix (the SHA-256 that follows is not included);
//! - `domain_hit` / `domain_miss`: the custom-domain probe of the request path for a
//!   customer's hostname and for any other name, with 1 000 domains loaded;
//! - `cache_hit_full_1m` / `cache_hit_full_1m_hot_100k`: the cache probe with 1 000 000
//!   tenants held (full mode), rotating over all of them and over 100 000 of them;
//! - `cache_hit_bounded_100k_of_1m`: the same probe in bounded mode (capacity 100 000, after
//!   1 000 000 tenant ids went through it), rotating over the 100 000 it holds: the hit path
//!   plus the reference bit.

use std::hint::black_box;

use futures_util::FutureExt;
use residency_core::{ApiKeyEntry, DirectoryFile, TenantEntry, TenantStatus, Tier};
use residency_core::{RegionId, TenantId};
use residency_gateway::directory::Directory;

fn tenant(n: u32) -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x0190_a5c4_0000_7000_8000_0000_0000_0000 | u128::from(n),
    ))
}

fn bench(c: &mut criterion::Criterion) {
    let eu = RegionId::new("eu").unwrap();
    let mut file = DirectoryFile::default();
    for n in 0..10_000 {
        file.tenants.push(TenantEntry {
            id: tenant(n),
            name: String::new(),
            region: eu.clone(),
            tier: Tier::Scale,
            status: TenantStatus::Active,
            rate_limit_per_min: None,
        });
    }
    file.api_keys.push(ApiKeyEntry {
        id: "k".into(),
        tenant: tenant(1),
        prefix: "abcdefgh1234".into(),
        hash: "0".repeat(64),
        role: String::new(),
        expires_at: None,
        revoked: false,
    });
    for n in 0..1_000 {
        file.domains.push(residency_core::domain::DomainEntry {
            hostname: format!("api.customer{n}.example"),
            tenant: tenant(n),
            cert_ref: None,
        });
    }
    let d = Directory::from_file(file, &[eu]).unwrap();
    let one = tenant(1);
    c.bench_function("resolve_hit", |b| {
        b.iter(|| black_box(d.resolve(black_box(one)).now_or_never()));
    });
    let mut n = 0u32;
    c.bench_function("resolve_hit_10k_tenants", |b| {
        b.iter(|| {
            n = (n + 7919) % 10_000;
            black_box(d.resolve(tenant(n)).now_or_never())
        });
    });
    let cache = residency_gateway::directory::cache::Cache::new(
        std::time::Duration::from_secs(5),
        10,
        std::time::Duration::from_secs(60),
    );
    cache.mark_fresh();
    cache.put_tenant(
        one,
        residency_gateway::directory::TenantRecord {
            region: RegionId::new("eu").unwrap(),
            tier: Tier::Scale,
            status: TenantStatus::Active,
            rate_limit_per_min: 1000,
        },
        1,
        cache.read_ticket(),
    );
    c.bench_function("cache_probe_hit", |b| {
        b.iter(|| black_box(cache.tenant(black_box(one))));
    });
    c.bench_function("domain_hit", |b| {
        b.iter(|| black_box(d.domains().tenant_of(black_box("api.customer7.example"))));
    });
    c.bench_function("domain_miss", |b| {
        b.iter(|| black_box(d.domains().tenant_of(black_box("gateway.example.com"))));
    });
    c.bench_function("api_key_hit", |b| {
        b.iter(|| black_box(d.api_key(black_box("abcdefgh1234"))));
    });
}

fn record() -> residency_gateway::directory::TenantRecord {
    residency_gateway::directory::TenantRecord {
        region: RegionId::new("eu").unwrap(),
        tier: Tier::Scale,
        status: TenantStatus::Active,
        rate_limit_per_min: 1000,
    }
}

fn cache_of(n: u32, capacity: Option<usize>) -> residency_gateway::directory::cache::Cache {
    use std::time::Duration;
    let mut cache = residency_gateway::directory::cache::Cache::new(
        Duration::from_secs(5),
        10,
        Duration::from_secs(60),
    );
    if let Some(c) = capacity {
        cache = cache.with_capacity(c);
    }
    cache.mark_fresh();
    let read = cache.read_ticket();
    for i in 0..n {
        cache.put_tenant(tenant(i), record(), 1, read);
    }
    cache
}

/// Hits rotating over `span` tenants from `first` (a prime stride, so neighbours in the map
/// are not neighbours in time).
fn hits(
    c: &mut criterion::Criterion,
    name: &str,
    cache: &residency_gateway::directory::cache::Cache,
    first: u32,
    span: u32,
) {
    use residency_gateway::directory::cache::Probe;
    let mut n = 0u32;
    c.bench_function(name, |b| {
        b.iter(|| {
            n = (n + 7919) % span;
            let probe = cache.tenant(tenant(first + n));
            assert!(matches!(probe, Probe::Hit(_)));
            black_box(probe)
        });
    });
}

fn bench_scale(c: &mut criterion::Criterion) {
    const N: u32 = 1_000_000;
    const CAP: u32 = 100_000;
    let full = cache_of(N, None);
    hits(c, "cache_hit_full_1m", &full, 0, N);
    hits(c, "cache_hit_full_1m_hot_100k", &full, N - CAP, CAP);
    drop(full);
    let bounded = cache_of(N, Some(CAP as usize));
    // After 1 000 000 inserts through 100 000 slots, the last 100 000 are held.
    hits(c, "cache_hit_bounded_100k_of_1m", &bounded, N - CAP, CAP);
}

criterion::criterion_group!(benches, bench, bench_scale);
criterion::criterion_main!(benches);
