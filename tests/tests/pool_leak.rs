//! A pool of one connection shared by alternating tenants, with injected failures (statement
//! errors mid-transaction, request futures dropped mid-query), through both tenant
//! transactions (`Db::tenant`; `Db::read`, whose end is not awaited; `Db::read_rows`, the
//! whole transaction pipelined in one write): every request's
//! queries see its own tenant and role in the settings, no request ever sees another tenant's
//! row, no tenant setting or open transaction survives a request, and the pool stays healthy.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use integration_tests::{Node, NodeOptions, RegionDb};
use residency_config::node::DatabaseConfig;
use residency_core::TenantId;
use residency_region_node::db::pool;
use residency_region_node::db::tenant_tx::{Caller, Db, Tx};
use residency_region_node::error::ApiError;
use residency_region_node::rbac::Permission;
use uuid::Uuid;

fn caller(t: Uuid) -> Caller {
    Caller {
        tenant: TenantId::from_uuid(t),
        subject: format!("owner-{t}"),
        role_claim: String::new(),
        request_id: "pool-test".into(),
    }
}

type Seen = (Vec<Uuid>, String, String);

/// The three ways into a tenant transaction.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tenant,
    Read,
    ReadRows,
}

/// What [`observe`] sees, as one statement for `Db::read_rows`.
const OBSERVE_ROWS: &str = "SELECT tenant_id, current_setting('app.tenant_id', true), \
     current_setting('app.role', true) FROM configurations";

/// What a handler's queries see: the tenant rows under RLS and the two transaction settings.
fn observe<'t>(tx: &'t Tx<'t>) -> BoxFuture<'t, Result<Seen, ApiError>> {
    async move {
        let rows = tx
            .query("SELECT tenant_id FROM configurations", &[])
            .await?;
        let settings = tx
            .query_one(
                "SELECT current_setting('app.tenant_id', true), current_setting('app.role', true)",
                &[],
            )
            .await?;
        Ok((
            rows.iter().map(|r| r.get(0)).collect(),
            settings.get(0),
            settings.get(1),
        ))
    }
    .boxed()
}

/// A statement error in the middle of the transaction.
fn fails_midway<'t>(tx: &'t Tx<'t>) -> BoxFuture<'t, Result<(), ApiError>> {
    async move {
        tx.query("SELECT tenant_id FROM configurations", &[])
            .await?;
        tx.query("SELECT 1 / 0", &[]).await?;
        Ok(())
    }
    .boxed()
}

/// A query slow enough to be cut off.
fn sleeps<'t>(tx: &'t Tx<'t>) -> BoxFuture<'t, Result<(), ApiError>> {
    async move {
        tx.query("SELECT pg_sleep(0.03)", &[]).await?;
        Ok(())
    }
    .boxed()
}

#[tokio::test]
async fn a_single_connection_never_leaks_a_tenant() {
    let db = RegionDb::create("us").await;
    let node = Node::start(&db, "us", NodeOptions::default()).await;
    let tenants = [Uuid::new_v4(), Uuid::new_v4()];
    for (i, t) in tenants.iter().enumerate() {
        node.provision(*t, &format!("t{i}")).await;
        for k in 0..3 {
            let r = node
                .call(
                    http::Method::PUT,
                    &format!("/v1/configurations/k{k}"),
                    *t,
                    "u",
                    "owner",
                    Some(&serde_json::json!({"value": i})),
                )
                .await;
            assert!(r.status.is_success());
        }
    }

    let cfg: DatabaseConfig = toml_db(&db.app_url);
    let pg = pool::build(&cfg, "pool-leak-test").unwrap();
    let dbh = Db::new(pg.clone());

    let (mut ok, mut injected_errors, mut dropped) = (0, 0, 0);
    for i in 0..1000usize {
        let t = tenants[i % 2];
        // Each kind of tenant transaction meets each outcome below.
        let kind = [Kind::Tenant, Kind::Read, Kind::ReadRows][(i / 5) % 3];
        let read = Permission::ConfigurationsRead;
        match i % 5 {
            // A statement error in the middle of the transaction.
            3 => {
                let r = match kind {
                    Kind::Tenant => dbh.tenant(&caller(t), fails_midway).await,
                    Kind::Read => dbh.read(&caller(t), fails_midway).await,
                    Kind::ReadRows => dbh
                        .read_rows(&caller(t), read, "SELECT 1 / 0", &[])
                        .await
                        .map(drop),
                };
                assert!(matches!(r, Err(ApiError::Unexpected(_))), "{kind:?}: {r:?}");
                injected_errors += 1;
            }
            // The request future is dropped while its query is running.
            4 => {
                let who = caller(t);
                let cut = Duration::from_millis(5);
                let r = match kind {
                    Kind::Tenant => tokio::time::timeout(cut, dbh.tenant(&who, sleeps)).await,
                    Kind::Read => tokio::time::timeout(cut, dbh.read(&who, sleeps)).await,
                    Kind::ReadRows => tokio::time::timeout(
                        cut,
                        dbh.read_rows(&who, read, "SELECT pg_sleep(0.03)", &[]),
                    )
                    .await
                    .map(|r| r.map(drop)),
                };
                assert!(r.is_err(), "the slow query should have been cut off");
                dropped += 1;
            }
            _ => {
                let r = match kind {
                    Kind::Tenant => dbh.tenant(&caller(t), observe).await,
                    Kind::Read => dbh.read(&caller(t), observe).await,
                    Kind::ReadRows => dbh
                        .read_rows(&caller(t), read, OBSERVE_ROWS, &[])
                        .await
                        .map(|rows| {
                            let first = rows.first().expect("the tenant has rows");
                            (
                                rows.iter().map(|r| r.get(0)).collect(),
                                first.get(1),
                                first.get(2),
                            )
                        }),
                };
                let (seen, tenant_setting, role_setting) =
                    r.unwrap_or_else(|e| panic!("request {i} ({kind:?}) failed: {e:?}"));
                // The settings are in the handler's own transaction: set before its queries,
                // the verified tenant, the resolved role (the caller is the tenant's owner).
                assert_eq!(tenant_setting, t.to_string(), "request {i}");
                assert_eq!(role_setting, "owner", "request {i}");
                assert_eq!(seen.len(), 3, "request {i}");
                assert!(
                    seen.iter().all(|s| *s == t),
                    "request {i} saw another tenant's rows: {seen:?}"
                );
                ok += 1;
            }
        }
        // Between requests, the pooled connection carries no tenant.
        if i % 50 == 0 {
            let conn = pg.get().await.expect("pool healthy");
            let row = conn
                .client
                .query_one(
                    "SELECT current_setting('app.tenant_id', true), \
                            current_setting('app.role', true)",
                    &[],
                )
                .await
                .unwrap();
            let (tenant_setting, role_setting): (Option<String>, Option<String>) =
                (row.get(0), row.get(1));
            assert!(
                tenant_setting.unwrap_or_default().is_empty(),
                "tenant setting leaked past request {i}"
            );
            assert!(
                role_setting.unwrap_or_default().is_empty(),
                "role setting leaked past request {i}"
            );
            // A savepoint needs an open transaction block: refused (25P01), the request's
            // transaction did not stay open on the connection.
            let probe = conn.client.batch_execute("SAVEPOINT leak_probe").await;
            assert_eq!(
                probe.as_ref().err().and_then(|e| e.code()),
                Some(&tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION),
                "a transaction survived request {i}: {probe:?}"
            );
        }
    }
    assert_eq!((ok, injected_errors, dropped), (600, 200, 200));
    let state = pg.state();
    assert!(state.connections <= 1, "{state:?}");
}

/// `Db::read` and `Db::read_rows` are read-only transactions: a write in them fails (SQLSTATE
/// 25006) as an internal error, not as the 503 `tenant_moving` that 25006 means in a write
/// transaction, and changes nothing; the same write through `Db::tenant` commits.
#[tokio::test]
async fn a_read_transaction_refuses_writes() {
    let db = RegionDb::create("us").await;
    let node = Node::start(&db, "us", NodeOptions::default()).await;
    let t = Uuid::new_v4();
    node.provision(t, "t").await;
    let cfg: DatabaseConfig = toml_db(&db.app_url);
    let dbh = Db::new(pool::build(&cfg, "read-only-test").unwrap());
    fn put<'t>(tx: &'t Tx<'t>) -> BoxFuture<'t, Result<u64, ApiError>> {
        async move {
            let n = tx
                .execute(
                    "INSERT INTO configurations (tenant_id, key, value, updated_by) \
                     VALUES ($1, 'k', '1', 'test')",
                    &[&tx.tenant()],
                )
                .await?;
            Ok(n)
        }
        .boxed()
    }
    let refused = dbh.read(&caller(t), put).await;
    assert!(
        matches!(refused, Err(ApiError::Unexpected(_))),
        "{refused:?}"
    );
    let refused = dbh
        .read_rows(
            &caller(t),
            Permission::ConfigurationsRead,
            "INSERT INTO configurations (tenant_id, key, value, updated_by) \
             VALUES (current_setting('app.tenant_id')::uuid, 'k', '1', 'test') RETURNING key",
            &[],
        )
        .await;
    assert!(
        matches!(refused, Err(ApiError::Unexpected(_))),
        "{refused:?}"
    );
    fn count<'t>(tx: &'t Tx<'t>) -> BoxFuture<'t, Result<i64, ApiError>> {
        async move {
            let row = tx
                .query_one("SELECT count(*) FROM configurations", &[])
                .await?;
            Ok(row.get::<_, i64>(0))
        }
        .boxed()
    }
    assert_eq!(dbh.read(&caller(t), count).await.unwrap(), 0);
    assert_eq!(dbh.tenant(&caller(t), put).await.unwrap(), 1);
    assert_eq!(dbh.read(&caller(t), count).await.unwrap(), 1);
}

fn toml_db(url: &str) -> DatabaseConfig {
    #[derive(serde::Deserialize)]
    struct W {
        database: DatabaseConfig,
    }
    let w: W = residency_config::load::from_str(
        &format!("[database]\nurl = \"{url}\"\npool_size = 1\ncheckout_timeout = \"5s\"\n"),
        &Vec::new(),
    )
    .unwrap();
    w.database
}
