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
//!   customer's hostname and for any other name, with 1 000 domains loaded.

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

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
