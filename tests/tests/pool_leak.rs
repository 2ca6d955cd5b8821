//! A pool of one connection shared by alternating tenants, with injected failures (statement
//! errors mid-transaction, request futures dropped mid-query): no request ever sees another
//! tenant's row, no tenant setting survives a request, and the pool stays healthy.

use std::time::Duration;

use futures_util::FutureExt;
use integration_tests::{Node, NodeOptions, RegionDb};
use residency_config::node::DatabaseConfig;
use residency_core::TenantId;
use residency_region_node::db::pool;
use residency_region_node::db::tenant_tx::{Caller, Db};
use residency_region_node::error::ApiError;
use uuid::Uuid;

fn caller(t: Uuid) -> Caller {
    Caller {
        tenant: TenantId::from_uuid(t),
        subject: format!("owner-{t}"),
        role_claim: String::new(),
        request_id: "pool-test".into(),
    }
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
        match i % 5 {
            // A statement error in the middle of the transaction.
            3 => {
                let r = dbh
                    .tenant(&caller(t), |tx| {
                        async move {
                            tx.query("SELECT tenant_id FROM configurations", &[])
                                .await?;
                            tx.query("SELECT 1 / 0", &[]).await?;
                            Ok(())
                        }
                        .boxed()
                    })
                    .await;
                assert!(matches!(r, Err(ApiError::Unexpected(_))), "{r:?}");
                injected_errors += 1;
            }
            // The request future is dropped while its query is running.
            4 => {
                let who = caller(t);
                let fut = dbh.tenant(&who, |tx| {
                    async move {
                        tx.query("SELECT pg_sleep(0.03)", &[]).await?;
                        Ok(())
                    }
                    .boxed()
                });
                let r = tokio::time::timeout(Duration::from_millis(5), fut).await;
                assert!(r.is_err(), "the slow query should have been cut off");
                dropped += 1;
            }
            _ => {
                let seen: Vec<Uuid> = dbh
                    .tenant(&caller(t), |tx| {
                        async move {
                            let rows = tx
                                .query("SELECT tenant_id FROM configurations", &[])
                                .await?;
                            Ok(rows.iter().map(|r| r.get(0)).collect())
                        }
                        .boxed()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("request {i} failed: {e:?}"));
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
            let setting: Option<String> = conn
                .client
                .query_one("SELECT current_setting('app.tenant_id', true)", &[])
                .await
                .unwrap()
                .get(0);
            assert!(
                setting.unwrap_or_default().is_empty(),
                "tenant setting leaked past request {i}"
            );
        }
    }
    assert_eq!((ok, injected_errors, dropped), (600, 200, 200));
    let state = pg.state();
    assert!(state.connections <= 1, "{state:?}");
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
