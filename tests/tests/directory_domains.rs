//! Custom domains in the directory database, on real Postgres: one live owner per hostname,
//! removal as a state, history with the actor, notifications, and the reader/writer grants.

use std::time::Duration;

use integration_tests::directory::DirectoryDb;
use residency_core::domain::DomainState;
use residency_core::{RegionId, Tier};
use residency_directory::{listen, Change, DomainVerdict, NewTenant, Store, StoreError};
use uuid::Uuid;

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    // A hang guard, not a speed assertion.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no directory change arrived")
        .expect("listener ended")
}

async fn tenant(store: &Store, name: &str) -> Uuid {
    store
        .create_tenant(
            "admin:test",
            &NewTenant {
                org_id: None,
                name: name.into(),
                region: RegionId::new("eu").unwrap(),
                tier: Tier::Scale,
                rate_limit_per_min: None,
            },
        )
        .await
        .unwrap()
        .id
}

fn verdict(state: DomainState, reason: &str) -> DomainVerdict {
    DomainVerdict {
        state,
        reason: reason.into(),
    }
}

#[tokio::test]
async fn a_hostname_has_one_live_owner_and_every_change_is_in_the_history() {
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    let (a, b) = (tenant(&writer, "a").await, tenant(&writer, "b").await);
    let active = verdict(DomainState::Active, "");

    let d = writer
        .add_domain("admin:test", a, "api.a.example", "a-tls", &active)
        .await
        .unwrap();
    assert_eq!(
        (
            d.state,
            d.tenant_id.as_uuid(),
            d.cert_ref.as_str(),
            d.version
        ),
        (DomainState::Active, a, "a-tls", 1)
    );
    assert!(d.verified_at.is_some());

    // Another tenant, or the same one again: 409 with the same words either way.
    for t in [b, a] {
        match writer
            .add_domain("admin:test", t, "api.a.example", "x", &active)
            .await
        {
            Err(StoreError::Conflict(m)) => assert_eq!(m, "this hostname is already registered"),
            other => panic!("{other:?}"),
        }
    }
    // An unknown tenant is not found; a hostname the schema refuses is invalid.
    assert!(matches!(
        writer
            .add_domain("admin:test", Uuid::now_v7(), "x.example", "x", &active)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        writer
            .add_domain("admin:test", a, "10.0.0.1", "x", &active)
            .await,
        Err(StoreError::Invalid { .. })
    ));

    let failed = writer
        .set_domain_state(
            "admin:ops",
            a,
            "api.a.example",
            &verdict(DomainState::Failed, "expired"),
        )
        .await
        .unwrap();
    assert_eq!(
        (failed.state, failed.reason.as_str(), failed.version),
        (DomainState::Failed, "expired", 2)
    );
    // Only the owner's domain can be verified or removed.
    assert!(matches!(
        writer
            .set_domain_state("admin:test", b, "api.a.example", &active)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        writer.remove_domain("admin:test", b, "api.a.example").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(writer.list_domains(a).await.unwrap().len(), 1);
    assert_eq!(writer.domains().await.unwrap().len(), 1);

    let removed = writer
        .remove_domain("admin:test", a, "api.a.example")
        .await
        .unwrap();
    assert_eq!(removed.state, DomainState::Removed);
    assert!(writer.list_domains(a).await.unwrap().is_empty());
    assert!(writer.domains().await.unwrap().is_empty());
    assert!(matches!(
        writer.remove_domain("admin:test", a, "api.a.example").await,
        Err(StoreError::NotFound)
    ));

    // Free again: b takes it; the row's version keeps growing.
    let again = writer
        .add_domain(
            "admin:test",
            b,
            "api.a.example",
            "b-tls",
            &verdict(DomainState::Pending, "no certificate"),
        )
        .await
        .unwrap();
    assert_eq!(
        (again.tenant_id.as_uuid(), again.state, again.version),
        (b, DomainState::Pending, 4)
    );
    assert!(again.verified_at.is_none());

    let changes = |h: Vec<residency_core::wire::admin::TenantHistoryEntry>| {
        h.into_iter()
            .filter_map(|e| {
                let d = e.detail.get("domain")?.clone();
                Some((e.actor, d["from"].clone(), d["to"].clone()))
            })
            .collect::<Vec<_>>()
    };
    let s = |v: &str| serde_json::Value::String(v.into());
    assert_eq!(
        changes(writer.history(a).await.unwrap()),
        vec![
            ("admin:test".into(), serde_json::Value::Null, s("active")),
            ("admin:ops".into(), s("active"), s("failed")),
            ("admin:test".into(), s("failed"), s("removed")),
        ]
    );
    assert_eq!(
        changes(writer.history(b).await.unwrap()),
        vec![("admin:test".into(), serde_json::Value::Null, s("pending"))]
    );
}

#[tokio::test]
async fn domain_changes_are_notified_by_hostname() {
    let db = DirectoryDb::create().await;
    let store = Store::connect(&db.writer_url).await.unwrap();
    let a = tenant(&store, "a").await;
    let mut rx = listen(db.reader_url.clone());
    assert_eq!(next(&mut rx).await, Change::Resync);
    let host = || Change::Domain {
        hostname: "api.a.example".into(),
    };
    store
        .add_domain(
            "admin:test",
            a,
            "api.a.example",
            "a",
            &verdict(DomainState::Active, ""),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, host());
    store
        .remove_domain("admin:test", a, "api.a.example")
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, host());
    // An operator's plain DELETE is heard too.
    let owner = integration_tests::connect(&db.url).await;
    owner
        .execute("DELETE FROM domains WHERE hostname = 'api.a.example'", &[])
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, host());
}

#[tokio::test]
async fn the_reader_only_reads_domains_and_the_writer_cannot_delete_or_rewrite_them() {
    let db = DirectoryDb::create().await;
    let writer = Store::connect(&db.writer_url).await.unwrap();
    let a = tenant(&writer, "a").await;
    writer
        .add_domain(
            "admin:test",
            a,
            "api.a.example",
            "a",
            &verdict(DomainState::Active, ""),
        )
        .await
        .unwrap();
    let reader = Store::connect(&db.reader_url).await.unwrap();
    assert_eq!(reader.domains().await.unwrap().len(), 1);
    assert!(reader
        .add_domain(
            "admin:test",
            a,
            "b.a.example",
            "a",
            &verdict(DomainState::Active, "")
        )
        .await
        .is_err());
    let reader = integration_tests::connect(&db.reader_url).await;
    let writer = integration_tests::connect(&db.writer_url).await;
    for (who, client, sql) in [
        ("reader", &reader, "UPDATE domains SET state = 'removed'"),
        ("reader", &reader, "DELETE FROM domains"),
        ("writer", &writer, "DELETE FROM domains"),
        ("writer", &writer, "TRUNCATE domains"),
        ("writer", &writer, "UPDATE domains SET version = 1"),
        (
            "writer",
            &writer,
            "UPDATE domains SET hostname = 'c.a.example'",
        ),
        (
            "writer",
            &writer,
            "ALTER TABLE domains DISABLE TRIGGER domains_notify",
        ),
    ] {
        let e = client
            .batch_execute(sql)
            .await
            .expect_err(&format!("the {who} ran {sql}"));
        let code = e.code().map(|c| c.code().to_owned());
        assert!(
            matches!(code.as_deref(), Some("42501") | Some("42P01")),
            "{who}: {sql}: {e}"
        );
    }
}
