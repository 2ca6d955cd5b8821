//! Memory of the directory cache per tenant (issue 15: at most 200 bytes per tenant), measured
//! as the growth of this process's resident set while 1,000,000 tenants are cached. Ignored
//! (it takes a few seconds and is a measurement): run each on its own, so one's freed pages
//! do not hide the other's growth:
//!
//! ```text
//! cargo test -p residency-gateway --test directory_memory -- --ignored --nocapture full
//! cargo test -p residency-gateway --test directory_memory -- --ignored --nocapture bounded
//! ```

use std::time::Duration;

use residency_core::{RegionId, TenantId, TenantStatus, Tier};
use residency_gateway::directory::cache::{Cache, Probe};
use residency_gateway::directory::TenantRecord;

const TENANTS: u32 = 1_000_000;

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn tenant(n: u32) -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x0190_a5c4_0000_7000_8000_0000_0000_0000 | u128::from(n),
    ))
}

/// Caches `TENANTS` tenants as a full load does (each row its own record and region string);
/// the growth of the resident set.
fn fill(cache: &Cache) -> u64 {
    let before = rss();
    let read = cache.read_ticket();
    for n in 0..TENANTS {
        let record = TenantRecord {
            region: RegionId::new(if n % 2 == 0 { "eu" } else { "us" }).unwrap(),
            tier: Tier::Scale,
            status: TenantStatus::Active,
            rate_limit_per_min: 1000,
        };
        cache.put_tenant(tenant(n), record, 1, read);
    }
    rss().saturating_sub(before)
}

fn cache() -> Cache {
    let cache = Cache::new(Duration::from_secs(5), 100_000, Duration::from_secs(600));
    cache.mark_fresh();
    cache
}

#[test]
#[ignore = "a measurement: run on its own with --ignored --nocapture"]
fn full_mode_bytes_per_tenant() {
    let cache = cache();
    let grown = fill(&cache);
    assert_eq!(cache.len().0, TENANTS as usize);
    assert!(matches!(cache.tenant(tenant(7)), Probe::Hit(_)));
    let per = grown / u64::from(TENANTS);
    println!(
        "full mode: {TENANTS} tenants, resident set grew {} MiB: {per} B/tenant",
        grown >> 20
    );
    assert!(per <= 200, "{per} B/tenant");
}

#[test]
#[ignore = "a measurement: run on its own with --ignored --nocapture"]
fn bounded_mode_bytes_per_cached_tenant() {
    let capacity = 100_000;
    let cache = cache().with_capacity(capacity);
    let grown = fill(&cache);
    assert!(cache.len().0 <= capacity, "{}", cache.len().0);
    assert_eq!(cache.evictions(), u64::from(TENANTS) - capacity as u64);
    let per = grown / capacity as u64;
    println!(
        "bounded mode: {TENANTS} tenants through capacity {capacity}, resident set grew {} MiB: \
         {per} B/cached tenant, {} evictions",
        grown >> 20,
        cache.evictions()
    );
    assert!(per <= 300, "{per} B/cached tenant");
}
