//! The directory database: organizations, tenants, API keys, history and change
//! notifications, on real Postgres.

use std::time::Duration;

use integration_tests::directory::DirectoryDb;
use residency_core::RegionId;
use residency_core::{split_api_key, TenantStatus, Tier};
use residency_directory::{
    listen, Change, NewTenant, Store, StoreError, TenantFilter, TenantPatch, TenantRecord,
};

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    // A hang guard, not a speed assertion.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no directory change arrived")
        .expect("listener ended")
}

/// Creates a tenant through `store` as `actor` (no rate limit of its own).
async fn new_tenant(
    store: &Store,
    actor: &str,
    org_id: Option<residency_core::OrgId>,
    name: &str,
    region: &str,
    tier: Tier,
) -> TenantRecord {
    store
        .create_tenant(
            actor,
            &NewTenant {
                org_id,
                name: name.into(),
                region: RegionId::new(region).unwrap(),
                tier,
                rate_limit_per_min: None,
            },
        )
        .await
        .unwrap()
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
        let t = new_tenant(
            &store,
            "admin:test",
            Some(org.id),
            &format!("t{i}"),
            region,
            tier,
        )
        .await;
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
            .create_api_key("x", uuid::Uuid::new_v4(), "k", "developer", None)
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

    let t = new_tenant(&store, "a", None, "n", "us", Tier::Growth).await;
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

/// Runs `sql` and expects Postgres to refuse it for lack of privilege.
async fn refused(client: &tokio_postgres::Client, who: &str, sql: &str) {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{who} ran {sql:?}: it must be refused"),
        Err(e) => assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{who} {sql:?}: {e:?}"
        ),
    }
}

/// A tenant and a key written through the admin's (writer) store.
async fn seed(writer: &Store) -> (uuid::Uuid, uuid::Uuid) {
    let t = new_tenant(writer, "admin:test", None, "roles", "eu", Tier::Growth).await;
    let (key, _) = writer
        .create_api_key("admin:test", t.id, "ci", "developer", None)
        .await
        .unwrap();
    (t.id, key.id)
}

/// Reads the next raw NOTIFY payload on `channel` from a connection of `url`.
async fn raw_notifications(url: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use futures_util::StreamExt;
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", residency_directory::CHANNEL))
        .await
        .unwrap();
    // The client must outlive the subscription.
    std::mem::forget(client);
    rx
}

#[tokio::test]
async fn the_reader_reads_and_listens_but_cannot_change_anything() {
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    let (tenant, key) = seed(&writer).await;

    // What the gateway's cache does: full loads, point reads, LISTEN.
    let reader = Store::connect(&db.reader_url).await.unwrap();
    assert!(reader
        .tenants()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id.as_uuid() == tenant));
    assert!(reader
        .api_keys()
        .await
        .unwrap()
        .iter()
        .any(|k| k.id == key.to_string()));
    let mut changes = listen(db.reader_url.clone());
    assert_eq!(next(&mut changes).await, Change::Resync);
    let mut raw = raw_notifications(&db.reader_url).await;
    let (_, created) = writer
        .create_api_key("admin:test", tenant, "second", "developer", None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut changes).await,
        Change::ApiKey {
            prefix: created.split('_').nth(1).unwrap().to_owned()
        }
    );
    // The payload names the key by id and public prefix: no hash, no secret.
    let payload: serde_json::Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(10), raw.recv())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut fields: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "kind", "prefix"], "{payload}");
    assert!(!payload
        .to_string()
        .contains(residency_core::split_api_key(&created).unwrap().1));

    let client = integration_tests::connect(&db.reader_url).await;
    for sql in [
        "INSERT INTO tenants (id, name, region, tier, status) VALUES (gen_random_uuid(), 'x', 'eu', 'scale', 'active')".to_owned(),
        format!("UPDATE tenants SET status = 'suspended' WHERE id = '{tenant}'"),
        format!("DELETE FROM tenants WHERE id = '{tenant}'"),
        format!("INSERT INTO api_keys (id, tenant_id, name, prefix, hash) VALUES (gen_random_uuid(), '{tenant}', 'x', 'abcdefgh12', repeat('a', 64))"),
        format!("UPDATE api_keys SET revoked_at = NULL WHERE id = '{key}'"),
        format!("DELETE FROM api_keys WHERE id = '{key}'"),
        "INSERT INTO organizations (id, name, domain) VALUES (gen_random_uuid(), 'x', 'x.example')".to_owned(),
        "INSERT INTO tenant_history (tenant_id, actor, change, region, status, tier, version) VALUES (gen_random_uuid(), 'x', 'created', 'eu', 'active', 'scale', 1)".to_owned(),
        "TRUNCATE api_keys".to_owned(),
        "CREATE TABLE reader_was_here (x int)".to_owned(),
    ] {
        refused(&client, "the reader", &sql).await;
    }
    drop(changes);
}

#[tokio::test]
async fn the_writer_does_what_the_admin_does_and_no_ddl() {
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    // Every admin API write and read, as the writer.
    let org = writer
        .create_org("admin:test", "Roles", "roles.example", "free")
        .await
        .unwrap();
    assert_eq!(writer.list_orgs(None, 10).await.unwrap().len(), 1);
    assert!(writer.org(org.id).await.unwrap().is_some());
    let (tenant, key) = seed(&writer).await;
    let patched = writer
        .update_tenant(
            "admin:test",
            tenant,
            &TenantPatch {
                name: Some("renamed".into()),
                tier: Some(Tier::Scale),
                status: Some(TenantStatus::Active),
                rate_limit_per_min: Some(Some(100)),
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.version, 2);
    writer
        .revoke_api_key("admin:test", tenant, key)
        .await
        .unwrap();
    assert_eq!(writer.list_api_keys(tenant).await.unwrap().len(), 1);
    assert_eq!(writer.history(tenant).await.unwrap().len(), 2);
    assert_eq!(
        writer
            .list_tenants(&TenantFilter {
                limit: 10,
                ..TenantFilter::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );

    let client = integration_tests::connect(&db.writer_url).await;
    for sql in [
        "DROP TABLE api_keys".to_owned(),
        "TRUNCATE tenants CASCADE".to_owned(),
        "TRUNCATE tenant_history".to_owned(),
        "ALTER TABLE tenants ADD COLUMN writer_was_here int".to_owned(),
        "ALTER TABLE tenants DISABLE TRIGGER tenants_history".to_owned(),
        "DROP TRIGGER tenant_history_append_only ON tenant_history".to_owned(),
        "CREATE TABLE writer_was_here (x int)".to_owned(),
        format!("DELETE FROM tenants WHERE id = '{tenant}'"),
        format!("DELETE FROM api_keys WHERE id = '{key}'"),
        "DELETE FROM tenant_history".to_owned(),
        "UPDATE tenant_history SET actor = 'someone else'".to_owned(),
        format!("UPDATE tenants SET version = 1 WHERE id = '{tenant}'"),
        // The writer may update the region column (migration 0005) only inside a move's flip:
        // without a verified move the trigger refuses it as a privilege error.
        format!("UPDATE tenants SET region = 'us' WHERE id = '{tenant}'"),
        format!("UPDATE api_keys SET hash = repeat('b', 64) WHERE id = '{key}'"),
    ] {
        refused(&client, "the writer", &sql).await;
    }
}

#[tokio::test]
async fn reader_and_writer_are_unprivileged_and_own_nothing() {
    let db = DirectoryDb::create().await;
    let admin = integration_tests::connect(&db.url).await;
    for url in [&db.reader_url, &db.writer_url] {
        let user = url::Url::parse(url).unwrap().username().to_owned();
        let row = admin
            .query_one(
                "SELECT r.rolsuper, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole, \
                        (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) \
                   FROM pg_roles r WHERE r.rolname = $1",
                &[&user],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0), "{user} is a superuser");
        assert!(!row.get::<_, bool>(1), "{user} bypasses RLS");
        assert!(
            !row.get::<_, bool>(2) && !row.get::<_, bool>(3),
            "{user} can create"
        );
        assert_eq!(row.get::<_, i64>(4), 0, "{user} owns relations");
    }
    assert_ne!(db.reader_url, db.writer_url, "two roles");
}

#[tokio::test]
async fn a_gateway_on_reader_and_writer_roles_serves_and_administers() {
    use http::StatusCode;
    use integration_tests::gateway::Stack;

    let s = Stack::start().await;
    // The admin api creates a tenant (and provisions it at home) and a key, as the writer.
    let t = s.create_tenant("split-roles", "eu", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let k = s.create_api_key(&id, "ci", "developer").await;
    let key = k["api_key"].as_str().unwrap().to_owned();
    // The public path, fed by the reader's cache and LISTEN, serves both credentials.
    assert_eq!(s.me(&id).await.status, StatusCode::OK);
    let r = s.get("/v1/me", &[("x-api-key", key.as_str())]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // Every gateway connection to the directory is the reader or the writer, and the
    // LISTENing one is the reader.
    let admin = integration_tests::connect(&s.dir.url).await;
    let user = |u: &str| url::Url::parse(u).unwrap().username().to_owned();
    let (reader, writer) = (user(&s.dir.reader_url), user(&s.dir.writer_url));
    let rows = admin
        .query(
            "SELECT usename::text, query FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&s.dir.name],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        seen.iter().all(|(u, _)| *u == reader || *u == writer),
        "gateway connections as other roles: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(u, q)| *u == reader && q.starts_with("LISTEN")),
        "the reader listens: {seen:?}"
    );
    assert!(
        seen.iter().any(|(u, _)| *u == writer),
        "the writer wrote: {seen:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn hard_deletes_are_notified() {
    let db = DirectoryDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    let t = new_tenant(&store, "a", None, "n", "eu", Tier::Scale).await;
    let (key, _) = store
        .create_api_key("a", t.id, "k", "developer", None)
        .await
        .unwrap();
    let mut rx = listen(db.url.clone());
    assert_eq!(next(&mut rx).await, Change::Resync);

    // Plain SQL, as an operator would delete: the gateways' caches must hear of it.
    let owner = integration_tests::connect(&db.url).await;
    owner
        .execute("DELETE FROM api_keys WHERE id = $1", &[&key.id])
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::ApiKey { prefix: key.prefix });
    owner
        .execute("DELETE FROM tenants WHERE id = $1", &[&t.id])
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::Tenant(t.id));
}

#[tokio::test]
async fn keys_stored_without_a_role_get_the_default_role_on_migration() {
    // A directory as the first release left it, with a key whose role is empty.
    let db = DirectoryDb::create_with(&residency_directory::MIGRATIONS[..1]).await;
    let store = Store::connect(&db.url).await.unwrap();
    let t = new_tenant(&store, "a", None, "legacy", "eu", Tier::Scale).await;
    let (legacy, _) = store
        .create_api_key("a", t.id, "legacy", "", None)
        .await
        .unwrap();
    let (named, _) = store
        .create_api_key("a", t.id, "named", "viewer", None)
        .await
        .unwrap();
    assert_eq!(legacy.role, "");

    residency_directory::migrate(&db.owner_url, &db.grant_roles())
        .await
        .unwrap();
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

/// The writer changes a tenant's region only through a move's flip: from `verifying`, with a
/// source and an equal target checksum for every table, holding the move's lease; one move in
/// flight per tenant.
#[tokio::test]
async fn a_region_changes_only_with_a_verified_move() {
    use residency_core::wire::moves::{MovePhase, PlanTable};
    use residency_directory::Lease;
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    let t = new_tenant(&writer, "admin:test", None, "mover", "us", Tier::Scale).await;
    writer
        .update_tenant(
            "admin:test",
            t.id,
            &TenantPatch {
                status: Some(TenantStatus::Active),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    let lease = Lease {
        driver: uuid::Uuid::now_v7(),
        ttl: Duration::from_secs(30),
    };
    let plan = [PlanTable {
        table: "tenants".into(),
        rows: 1,
        estimated_bytes: 10,
    }];
    let m = writer
        .create_move("admin:test", t.id, "us", "eu", &plan, lease)
        .await
        .unwrap();
    assert!(matches!(
        writer
            .create_move("admin:test", t.id, "us", "eu", &plan, lease)
            .await,
        Err(residency_directory::StoreError::Conflict(_))
    ));
    writer.freeze_move("admin:test", &m, lease).await.unwrap();
    assert_eq!(
        writer.tenant(t.id).await.unwrap().unwrap().status,
        TenantStatus::Moving
    );
    writer
        .move_phase(m.id, lease, MovePhase::Verifying)
        .await
        .unwrap();
    // Not verified yet, then verified with different checksums: refused.
    assert!(writer.flip_move("admin:test", &m, lease).await.is_err());
    writer
        .record_checksums(m.id, lease, 0, "1:10", "1:11")
        .await
        .unwrap();
    assert!(writer.flip_move("admin:test", &m, lease).await.is_err());
    // Another driver (no lease) cannot flip a verified move either.
    writer
        .record_checksums(m.id, lease, 0, "1:10", "1:10")
        .await
        .unwrap();
    let stranger = Lease {
        driver: uuid::Uuid::now_v7(),
        ..lease
    };
    assert!(writer.flip_move("admin:test", &m, stranger).await.is_err());
    writer.flip_move("admin:test", &m, lease).await.unwrap();
    let after = writer.tenant(t.id).await.unwrap().unwrap();
    assert_eq!(
        (after.region.as_str(), after.status),
        ("eu", TenantStatus::Active)
    );
    let flip = writer.history(t.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (flip.actor.as_str(), flip.region.as_str()),
        ("admin:test", "eu")
    );
    assert_eq!(
        writer.get_move(m.id).await.unwrap().unwrap().phase,
        MovePhase::Flipped
    );
}

/// A driver that died without giving its lease up blocks a resume only until the lease
/// expires; from then on the new driver holds the move and the old one's writes are refused.
#[tokio::test]
async fn a_dead_drivers_lease_expires_and_its_writes_are_refused() {
    use residency_core::wire::moves::{MovePhase, PlanTable};
    use residency_directory::Lease;
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    let t = new_tenant(&writer, "admin:test", None, "lease", "us", Tier::Scale).await;
    let dead = Lease {
        driver: uuid::Uuid::now_v7(),
        ttl: Duration::from_secs(1),
    };
    let plan = [PlanTable {
        table: "tenants".into(),
        rows: 1,
        estimated_bytes: 10,
    }];
    let m = writer
        .create_move("admin:test", t.id, "us", "eu", &plan, dead)
        .await
        .unwrap();
    let next = Lease {
        driver: uuid::Uuid::now_v7(),
        ttl: Duration::from_secs(30),
    };
    assert!(
        !writer.claim_move(m.id, next).await.unwrap(),
        "the lease is current"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !writer.claim_move(m.id, next).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        writer.move_phase(m.id, dead, MovePhase::Frozen).await,
        Err(residency_directory::StoreError::Conflict(_))
    ));
    writer
        .copy_progress(m.id, next, 0, 1, None, true)
        .await
        .unwrap();
    assert_eq!(
        writer.get_move(m.id).await.unwrap().unwrap().tables[0].rows_copied,
        1
    );
}
