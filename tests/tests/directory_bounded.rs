//! The gateway's directory in bounded mode (`[directory] mode = "bounded"`), on real Postgres:
//! tenants loaded on their first miss, one query per tenant however many requests wait,
//! CLOCK eviction at `capacity`, notifications for cached tenants, and failing closed.

use std::time::Duration;

use integration_tests::directory::DirectoryDb;
use residency_core::{TenantId, TenantStatus};
use residency_directory::{Store, TenantPatch};
use residency_gateway::directory::pg::PgOptions;
use residency_gateway::directory::{Directory, DirectoryError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Inserts are not the cache's concern: at most this many rows above capacity while inserts
/// are in progress (one per concurrent insert: the miss queries plus the sync task).
const SLACK: usize = 5;

/// Inserts `n` active tenants in region `eu` with plain SQL; their ids.
async fn tenants(db: &DirectoryDb, n: u32) -> Vec<TenantId> {
    let admin = integration_tests::connect(&db.url).await;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    admin
        .execute(
            "INSERT INTO tenants (id, name, region, tier, status) \
             SELECT id, 'bounded', 'eu', 'scale', 'active' FROM unnest($1::uuid[]) AS id",
            &[&ids],
        )
        .await
        .unwrap();
    ids.into_iter().map(TenantId::from_uuid).collect()
}

async fn bounded(db: &DirectoryDb, capacity: usize, timeout: Duration) -> Directory {
    let opts = PgOptions {
        url: db.reader_url.clone(),
        max_stale: Duration::from_secs(600),
        negative_ttl: Duration::from_secs(60),
        negative_entries: 1000,
        timeout,
        capacity: Some(capacity),
    };
    // A hang guard: the first (empty) load of a bounded directory reads no tenant.
    let d = Directory::postgres(opts, Duration::from_secs(30), CancellationToken::new())
        .await
        .unwrap();
    assert!(d.health().loaded, "the bounded directory did not start");
    d
}

/// Polls `check` until it holds (a hang guard, not a speed assertion).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_tenant_resolves_and_the_cache_stays_within_capacity() {
    let db = DirectoryDb::create().await;
    let ids = tenants(&db, 1000).await;
    let d = bounded(&db, 100, Duration::from_secs(5)).await;
    assert_eq!(
        d.stats().tenants,
        0,
        "bounded mode loads no tenant at start"
    );
    for round in 0..2 {
        for id in &ids {
            let r = d.resolve(*id).await;
            assert_eq!(
                r.map(|r| r.status),
                Ok(TenantStatus::Active),
                "round {round}"
            );
            let s = d.stats();
            assert!(s.tenants <= 100 + SLACK, "{s:?}");
        }
    }
    let s = d.stats();
    assert_eq!(s.capacity, Some(100));
    // Every resolve of the second round missed too (1000 tenants cycled through 100 slots).
    assert!(s.evictions >= 1900 - 100, "{s:?}");
    assert_eq!(s.miss_queries, 2000, "{s:?}");
    // A hot tenant stays: hit between inserts, it keeps its reference bit set.
    let hot = ids[0];
    d.resolve(hot).await.unwrap();
    let before = d.stats().miss_queries;
    for id in &ids[1..500] {
        d.resolve(*id).await.unwrap();
        d.resolve(hot).await.unwrap();
    }
    assert_eq!(
        d.stats().miss_queries,
        before + 499,
        "the hot tenant was evicted"
    );
}

#[tokio::test]
async fn concurrent_misses_for_one_tenant_issue_one_query() {
    let db = DirectoryDb::create().await;
    let ids = tenants(&db, 1).await;
    let d = std::sync::Arc::new(bounded(&db, 100, Duration::from_secs(60)).await);
    // Hold the miss query inside Postgres until every caller has arrived.
    let mut admin = integration_tests::connect(&db.url).await;
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (d, id) = (std::sync::Arc::clone(&d), ids[0]);
            tokio::spawn(async move { d.resolve(id).await.map(|r| r.status) })
        })
        .collect();
    until("49 callers joined the first one's query", async || {
        d.stats().miss_joins >= 49
    })
    .await;
    lock.commit().await.unwrap();
    for c in callers {
        assert_eq!(c.await.unwrap(), Ok(TenantStatus::Active));
    }
    let s = d.stats();
    assert_eq!((s.miss_queries, s.miss_joins), (1, 49), "{s:?}");
}

#[tokio::test]
async fn changes_to_cached_tenants_are_seen_and_unknown_ones_refused() {
    let db = DirectoryDb::create().await;
    let ids = tenants(&db, 4).await;
    let (suspended, moved, deleted, uncached) = (ids[0], ids[1], ids[2], ids[3]);
    let d = bounded(&db, 100, Duration::from_secs(5)).await;
    for id in &ids[..3] {
        d.resolve(*id).await.unwrap();
    }
    let cached = d.stats().tenants;
    assert_eq!(cached, 3);

    let writer = Store::connect(&db.writer_url).await.unwrap();
    writer
        .update_tenant(
            "admin:test",
            suspended.as_uuid(),
            &TenantPatch {
                status: Some(TenantStatus::Suspended),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    let admin = integration_tests::connect(&db.url).await;
    // The move protocol is tested elsewhere; here only the directory row's flip matters.
    admin
        .batch_execute(&format!(
            "ALTER TABLE tenants DISABLE TRIGGER tenants_region_needs_verified_move;
             UPDATE tenants SET region = 'us' WHERE id = '{}';
             DELETE FROM tenants WHERE id = '{}';
             UPDATE tenants SET status = 'suspended' WHERE id = '{}';",
            moved.as_uuid(),
            deleted.as_uuid(),
            uncached.as_uuid()
        ))
        .await
        .unwrap();
    until("the suspension is seen", async || {
        d.resolve(suspended).await == Err(DirectoryError::Suspended)
    })
    .await;
    until("the move is seen", async || {
        d.resolve(moved)
            .await
            .is_ok_and(|r| r.region.as_str() == "us")
    })
    .await;
    until("the deletion is seen", async || {
        d.resolve(deleted).await == Err(DirectoryError::UnknownTenant)
    })
    .await;
    // The notification for a tenant it did not hold was ignored, and its first resolve reads
    // the current row.
    assert_eq!(d.resolve(uncached).await, Err(DirectoryError::Suspended));

    let unknown = TenantId::from_uuid(Uuid::now_v7());
    let queries = d.stats().miss_queries;
    assert_eq!(d.resolve(unknown).await, Err(DirectoryError::UnknownTenant));
    // Remembered as absent: no second query.
    assert_eq!(d.resolve(unknown).await, Err(DirectoryError::UnknownTenant));
    assert_eq!(d.stats().miss_queries, queries + 1);
}

#[tokio::test]
async fn with_the_directory_down_uncached_tenants_fail_closed() {
    let db = DirectoryDb::create().await;
    let ids = tenants(&db, 3).await;
    let (cached, uncached, gone) = (ids[0], ids[1], ids[2]);
    let d = bounded(&db, 100, Duration::from_secs(2)).await;
    d.resolve(cached).await.unwrap();
    d.resolve(gone).await.unwrap();

    // The directory stops answering the gateway's role: logins refused, sessions ended.
    let reader = url::Url::parse(&db.reader_url)
        .unwrap()
        .username()
        .to_owned();
    let admin = integration_tests::connect(&db.url).await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{reader}\" NOLOGIN;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{reader}';"
        ))
        .await
        .unwrap();
    until("the directory is stale", async || !d.stats().fresh).await;
    assert_eq!(
        d.resolve(uncached).await,
        Err(DirectoryError::DirectoryDown)
    );
    assert_eq!(
        d.resolve(cached).await.map(|r| r.status),
        Ok(TenantStatus::Active)
    );
    assert_eq!(
        d.resolve(TenantId::from_uuid(Uuid::now_v7())).await,
        Err(DirectoryError::DirectoryDown)
    );

    // Deleted while the gateway hears nothing: only the resync can drop it.
    admin
        .execute("DELETE FROM tenants WHERE id = $1", &[&gone.as_uuid()])
        .await
        .unwrap();
    assert!(
        d.resolve(gone).await.is_ok(),
        "served from the cache up to max_stale"
    );

    // Back up: the resync refreshes what is cached (dropping what is gone), and the miss loads.
    admin
        .batch_execute(&format!("ALTER ROLE \"{reader}\" LOGIN"))
        .await
        .unwrap();
    until("the directory is fresh", async || d.stats().fresh).await;
    assert_eq!(d.resolve(gone).await, Err(DirectoryError::UnknownTenant));
    // The resync refreshed the cached tenant in place: serving it costs no query.
    let queries = d.stats().miss_queries;
    assert_eq!(
        d.resolve(cached).await.map(|r| r.status),
        Ok(TenantStatus::Active)
    );
    assert_eq!(d.stats().miss_queries, queries);
    assert_eq!(
        d.resolve(uncached).await.map(|r| r.status),
        Ok(TenantStatus::Active)
    );
}

/// End to end: a gateway configured with `mode = "bounded"` serves more tenants than its
/// capacity, each through its first miss, and a suspension of a cached one takes effect.
#[tokio::test]
async fn a_bounded_gateway_serves_more_tenants_than_its_capacity() {
    use http::StatusCode;
    use integration_tests::gateway::{Stack, StackOptions, WITHIN};
    let s = Stack::start_with(StackOptions {
        directory_capacity: 16,
        ..StackOptions::default()
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let t = s
            .create_tenant(&format!("bounded {n}"), "eu", "growth")
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    for round in 0..2 {
        for id in &ids {
            assert_eq!(s.me(id).await.status, StatusCode::OK, "round {round}, {id}");
        }
        // Held: at most the capacity plus the inserts in progress (none by now).
        let ready = s.ops("/readyz").await;
        let held = ready.json["directory"]["tenants_cached"].as_u64();
        assert!(held.is_some_and(|n| n <= 16), "{:?}", ready.json);
    }
    let last = ids.last().unwrap();
    s.admin(
        http::Method::PATCH,
        &format!("/admin/v1/tenants/{last}"),
        Some(&serde_json::json!({ "status": "suspended" })),
    )
    .await;
    s.until("the suspension is seen", WITHIN, || async {
        (s.me(last).await.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    s.stop().await;
}
