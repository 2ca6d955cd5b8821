//! Micro-benchmark of the local rate-limit check (SPEC §5: ≤ 50 ns).
//!
//! `cargo bench -p residency-gateway --bench ratelimit`
//!
//! - `local_check_at`: the check itself (map probe + GCRA + compare-and-swap) at a given time;
//! - `local_check_at_10k_tenants`: the same rotating over 10 000 tenants, so the map does not
//!   sit in L1;
//! - `clock_from_instant`: turning the request's arrival `Instant` into limiter time, the
//!   only other work the request path adds (it reads the clock once anyway, for its metrics);
//! - `local_check_reading_the_clock`: the check with a fresh `Instant::now()`, for reference;
//! - `instant_now`: the clock read alone, for reference.
//!
//! The quota is so large that no iteration is ever limited, so the measured path is the
//! common one: an allowed request that updates its bucket.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use residency_core::TenantId;
use residency_gateway::ratelimit::local::LocalLimiter;

fn tenant(n: u32) -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x0190_a5c4_0000_7000_8000_0000_0000_0000 | u128::from(n),
    ))
}

fn bench(c: &mut Criterion) {
    let limiter = LocalLimiter::new(Duration::from_secs(60));
    let one = tenant(1);
    // 1e9 per minute is one request per 60 ns, with a burst of a whole minute.
    let quota = 1_000_000_000;
    let mut now = 0u64;
    c.bench_function("local_check_at", |b| {
        b.iter(|| {
            now += 100;
            black_box(limiter.check_at(black_box(one), quota, now))
        });
    });

    let tenants: Vec<TenantId> = (0..10_000).map(tenant).collect();
    let mut i = 0usize;
    c.bench_function("local_check_at_10k_tenants", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            now += 10;
            black_box(limiter.check_at(black_box(tenants[i]), quota, now))
        });
    });

    let arrival = Instant::now();
    c.bench_function("clock_from_instant", |b| {
        b.iter(|| black_box(limiter.clock(black_box(arrival))));
    });

    c.bench_function("local_check_reading_the_clock", |b| {
        b.iter(|| {
            let now = limiter.clock(Instant::now());
            black_box(limiter.check_at(black_box(one), quota, now))
        });
    });

    c.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
