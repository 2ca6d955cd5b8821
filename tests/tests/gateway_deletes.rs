//! End to end: rows hard-deleted from the directory database (a plain SQL `DELETE`, as an
//! operator or a cleanup job would run it) stop working on the gateway, through their
//! `NOTIFY` within a second, and through the resync's sweep when the notification was lost to
//! a partition. Every "within" is a poll against a deadline.

use http::StatusCode;
use integration_tests::gateway::{Stack, WITHIN};
use uuid::Uuid;

/// A new API key for `tenant` through the admin API: `(id, key)`.
async fn new_key(s: &Stack, tenant: &str, name: &str) -> (Uuid, String) {
    let k = s.create_api_key(tenant, name, "developer").await;
    (
        k["id"].as_str().unwrap().parse().unwrap(),
        k["api_key"].as_str().unwrap().to_owned(),
    )
}

/// `GET /v1/me` with an API key: the status.
async fn with_key(s: &Stack, key: &str) -> StatusCode {
    s.get("/v1/me", &[("x-api-key", key)]).await.status
}

/// Deletes rows as the directory's owner, bypassing the admin API (which only revokes).
async fn delete(s: &Stack, sql: &str) {
    let owner = integration_tests::connect(&s.dir.url).await;
    owner.batch_execute(sql).await.unwrap();
}

async fn delete_key(s: &Stack, id: Uuid) {
    delete(s, &format!("DELETE FROM api_keys WHERE id = '{id}'")).await;
}

async fn delete_tenant(s: &Stack, id: &str) {
    let id: Uuid = id.parse().unwrap();
    delete(
        s,
        &format!(
            "BEGIN; DELETE FROM api_keys WHERE tenant_id = '{id}'; \
             DELETE FROM tenants WHERE id = '{id}'; COMMIT"
        ),
    )
    .await;
}

#[tokio::test]
async fn hard_deleted_keys_and_tenants_stop_working_within_a_second() {
    let s = Stack::start().await;
    let t = s.create_tenant("hard-delete", "eu", "scale").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (gone_id, gone) = new_key(&s, &id, "deleted").await;
    let (_, kept) = new_key(&s, &id, "kept").await;
    // Used twice: the second request reuses the key's verified context in the token cache,
    // which must not outlive the directory row.
    for _ in 0..2 {
        assert_eq!(with_key(&s, &gone).await, StatusCode::OK);
    }
    assert_eq!(with_key(&s, &kept).await, StatusCode::OK);
    assert_eq!(s.me(&id).await.status, StatusCode::OK);

    delete_key(&s, gone_id).await;
    s.until("a deleted api key is refused", WITHIN, || async {
        (with_key(&s, &gone).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    // Only that key.
    assert_eq!(with_key(&s, &kept).await, StatusCode::OK);
    assert_eq!(s.me(&id).await.status, StatusCode::OK);

    delete_tenant(&s, &id).await;
    s.until("a deleted tenant is refused", WITHIN, || async {
        let r = s.me(&id).await;
        (r.status == StatusCode::NOT_FOUND).then_some(r)
    })
    .await;
    s.until("the deleted tenant's key is refused", WITHIN, || async {
        (with_key(&s, &kept).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    // Refused as unknown: nothing says the tenant existed.
    let r = s.me(&id).await;
    assert!(
        r.json["type"].as_str().unwrap().ends_with("unknown_tenant"),
        "{r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_resync_after_a_partition_drops_rows_deleted_meanwhile() {
    let s = Stack::start().await;
    let kept = s.create_tenant("resync-kept", "eu", "scale").await;
    let kept = kept["id"].as_str().unwrap().to_owned();
    let gone = s.create_tenant("resync-gone", "us", "scale").await;
    let gone = gone["id"].as_str().unwrap().to_owned();
    let (deleted_key_id, deleted_key) = new_key(&s, &kept, "deleted").await;
    let (_, kept_key) = new_key(&s, &kept, "kept").await;
    let (_, gone_key) = new_key(&s, &gone, "of-deleted-tenant").await;
    for key in [&deleted_key, &kept_key, &gone_key] {
        assert_eq!(with_key(&s, key).await, StatusCode::OK);
    }
    assert_eq!(s.me(&gone).await.status, StatusCode::OK);

    // A silent partition; once the gateway has given up its listening connection, the
    // deletions' notifications reach nobody.
    s.partition_directory().await;
    delete_key(&s, deleted_key_id).await;
    delete_tenant(&s, &gone).await;
    // Meanwhile the gateway serves what it cached (within max_stale): it cannot know.
    assert_eq!(s.me(&gone).await.status, StatusCode::OK);

    s.heal_directory().await;
    // Fresh means the full load and its sweep are done: no waiting beyond this point.
    let r = s.me(&gone).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "deleted tenant after resync: {r:?}"
    );
    assert_eq!(with_key(&s, &gone_key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        with_key(&s, &deleted_key).await,
        StatusCode::UNAUTHORIZED,
        "deleted key after resync"
    );
    // What still exists still works.
    assert_eq!(s.me(&kept).await.status, StatusCode::OK);
    assert_eq!(with_key(&s, &kept_key).await, StatusCode::OK);
    s.stop().await;
}
