//! The directory database: organizations, tenants, API keys, history and change
//! notifications, on real Postgres.

use std::time::Duration;

use integration_tests::directory::DirectoryDb;
use residency_config::gateway::{split_api_key, TenantStatus, Tier};
use residency_config::RegionId;
use residency_directory::{
    listen, Change, NewTenant, Store, StoreError, TenantFilter, TenantPatch,
};

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    // A hang guard, not a speed assertion.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no directory change arrived")
        .expect("listener ended")
}

#[tokio::test]
async fn tenants_keys_history_and_filters() {
    let db = DirectoryDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();

    let org = store
        .create_org("admin:test", "Acme", "acme.example", "free")
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_org("admin:test", "Other", "acme.example", "free")
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_org("admin:test", "Bad", "Not A Domain", "free")
            .await,
        Err(StoreError::Invalid {
            field: "domain",
            ..
        })
    ));

    let mut ids = Vec::new();
    for (i, (region, tier)) in [
        ("eu", Tier::Scale),
        ("us", Tier::Starter),
        ("eu", Tier::Growth),
    ]
    .into_iter()
    .enumerate()
    {
        let t = store
            .create_tenant(
                "admin:test",
                &NewTenant {
                    org_id: Some(org.id),
                    name: format!("t{i}"),
                    region: RegionId::new(region).unwrap(),
                    tier,
                    rate_limit_per_min: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(t.status, TenantStatus::Provisioning);
        assert_eq!(t.version, 1);
        ids.push(t.id);
    }
    let active = store
        .update_tenant(
            "admin:ops",
            ids[0],
            &TenantPatch {
                status: Some(TenantStatus::Active),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((active.status, active.version), (TenantStatus::Active, 2));
    let limited = store
        .update_tenant(
            "admin:ops",
            ids[0],
            &TenantPatch {
                tier: Some(Tier::Enterprise),
                rate_limit_per_min: Some(Some(5000)),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (limited.tier, limited.rate_limit_per_min),
        (Tier::Enterprise, Some(5000))
    );
    assert!(matches!(
        store
            .update_tenant("x", uuid::Uuid::new_v4(), &TenantPatch::default())
            .await,
        Err(StoreError::NotFound)
    ));

    // History: who changed what, append-only.
    let h = store.history(ids[0]).await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        (h[0].change.as_str(), h[0].actor.as_str()),
        ("created", "admin:test")
    );
    assert_eq!(h[1].detail["status"]["to"], "active");
    assert_eq!(h[2].detail["tier"]["from"], "scale");
    assert_eq!(h[2].actor, "admin:ops");
    let admin = integration_tests::connect(&db.url).await;
    assert!(admin
        .execute("DELETE FROM tenant_history", &[])
        .await
        .is_err());

    // Filters and keyset pages.
    let eu = store
        .list_tenants(&TenantFilter {
            region: Some("eu".into()),
            limit: 10,
            ..TenantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(eu.len(), 2);
    let page1 = store
        .list_tenants(&TenantFilter {
            limit: 2,
            ..TenantFilter::default()
        })
        .await
        .unwrap();
    let page2 = store
        .list_tenants(&TenantFilter {
            limit: 2,
            after: Some(page1[1].id),
            ..TenantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((page1.len(), page2.len()), (2, 1));
    let starters = store
        .list_tenants(&TenantFilter {
            tier: Some(Tier::Starter),
            limit: 10,
            ..TenantFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(starters.len(), 1);

    // Keys: plaintext once, hash stored, revocation visible in the snapshot.
    let (rec, plaintext) = store
        .create_api_key("admin:test", ids[0], "ci", "developer", None)
        .await
        .unwrap();
    let (prefix, _) = split_api_key(&plaintext).expect("gateway key format");
    assert_eq!(prefix, rec.prefix);
    let listed = serde_json::to_string(&store.list_api_keys(ids[0]).await.unwrap()).unwrap();
    assert!(!listed.contains(&plaintext) && !listed.contains("hash"));
    let entry = store.api_key_by_prefix(prefix).await.unwrap().unwrap();
    assert_eq!(entry.hash, residency_directory::keys::hash(&plaintext));
    assert!(!entry.revoked);
    store
        .revoke_api_key("admin:test", ids[0], rec.id)
        .await
        .unwrap();
    let snap = store.snapshot().await.unwrap();
    assert!(
        snap.api_keys
            .iter()
            .find(|k| k.prefix == prefix)
            .unwrap()
            .revoked
    );
    assert_eq!(snap.tenants.len(), 3);
    // A key of another tenant cannot be revoked through this tenant.
    assert!(matches!(
        store.revoke_api_key("x", ids[1], rec.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .create_api_key("x", uuid::Uuid::new_v4(), "k", "", None)
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn changes_are_notified_and_a_reconnect_asks_for_a_resync() {
    let db = DirectoryDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    let mut rx = listen(db.url.clone());
    assert_eq!(next(&mut rx).await, Change::Resync);

    let t = store
        .create_tenant(
            "a",
            &NewTenant {
                org_id: None,
                name: "n".into(),
                region: RegionId::new("us").unwrap(),
                tier: Tier::Growth,
                rate_limit_per_min: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::Tenant(t.id));
    store
        .update_tenant(
            "a",
            t.id,
            &TenantPatch {
                status: Some(TenantStatus::Suspended),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::Tenant(t.id));
    let (rec, _) = store
        .create_api_key("a", t.id, "k", "developer", None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Change::ApiKey {
            prefix: rec.prefix.clone()
        }
    );

    // Kill the listener's backend: the stream reports the gap and asks for a full resync.
    let admin = integration_tests::connect(&integration_tests::admin_url()).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    assert_eq!(next(&mut rx).await, Change::Disconnected);
    assert_eq!(next(&mut rx).await, Change::Resync);
    store.revoke_api_key("a", t.id, rec.id).await.unwrap();
    assert_eq!(next(&mut rx).await, Change::ApiKey { prefix: rec.prefix });
}

#[tokio::test]
async fn keys_stored_without_a_role_get_the_default_role_on_migration() {
    // A directory as the first release left it, with a key whose role is empty.
    let db = DirectoryDb::create_with(&residency_directory::MIGRATIONS[..1]).await;
    let store = Store::connect(&db.url).await.unwrap();
    let t = store
        .create_tenant(
            "a",
            &NewTenant {
                org_id: None,
                name: "legacy".into(),
                region: RegionId::new("eu").unwrap(),
                tier: Tier::Scale,
                rate_limit_per_min: None,
            },
        )
        .await
        .unwrap();
    let (legacy, _) = store
        .create_api_key("a", t.id, "legacy", "", None)
        .await
        .unwrap();
    let (named, _) = store
        .create_api_key("a", t.id, "named", "viewer", None)
        .await
        .unwrap();
    assert_eq!(legacy.role, "");

    residency_directory::migrate(&db.url).await.unwrap();
    let keys = store.list_api_keys(t.id).await.unwrap();
    let role = |id| keys.iter().find(|k| k.id == id).unwrap().role.clone();
    assert_eq!(role(legacy.id), residency_directory::DEFAULT_API_KEY_ROLE);
    assert_eq!(role(legacy.id), "developer");
    assert_eq!(role(named.id), "viewer");
    // An empty role can no longer be stored.
    assert!(store
        .create_api_key("a", t.id, "empty", "", None)
        .await
        .is_err());
}
