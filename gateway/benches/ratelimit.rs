//! Micro-benchmark of the local rate-limit check (SPEC §5: ≤ 50 ns).
//!
//! `cargo bench -p residency-gateway --bench ratelimit`
//!
//! - `local_check_at`: the check itself (map probe + GCRA + compare-and-swap) at a given time;
//! - `local_check`: the same plus reading the monotonic clock, as the request path does;
//! - `local_check_10k_tenants`: rotating over 10 000 tenants, so the map does not sit in L1.
//!
//! Times keep the buckets allowed (the quota is large and the clock moves), so the measured
//! path is the common one: an allowed request that updates the bucket.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use residency_config::TenantId;
use residency_gateway::ratelimit::local::LocalLimiter;

fn tenant(n: u32) -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x0190_a5c4_0000_7000_8000_0000_0000_0000 | u128::from(n),
    ))
}

fn bench(c: &mut Criterion) {
    let limiter = LocalLimiter::new(Duration::from_secs(60));
    let one = tenant(1);
    // A quota so large that no iteration is ever limited: 1e9 per minute is one every 60 ns.
    let quota = 1_000_000_000;
    let mut now = 0u64;
    c.bench_function("local_check_at", |b| {
        b.iter(|| {
            now += 100;
            black_box(limiter.check_at(black_box(one), quota, now))
        });
    });

    c.bench_function("local_check", |b| {
        b.iter(|| black_box(limiter.check(black_box(one), quota)));
    });

    let tenants: Vec<TenantId> = (0..10_000).map(tenant).collect();
    for t in &tenants {
        limiter.check(*t, quota);
    }
    let mut i = 0usize;
    c.bench_function("local_check_10k_tenants", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            black_box(limiter.check(black_box(tenants[i]), quota))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
