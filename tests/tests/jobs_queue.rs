//! The region's job queue (`jobs`, migration `0004_jobs.sql`) on a real region database, as
//! the app role: isolation like every customer table, and `claim_jobs`, the one function that
//! crosses tenants, handing out ids only, each due job to one claimer, leases that expire.

use integration_tests::{connect, Node, NodeOptions, RegionDb};
use tokio_postgres::Client;
use uuid::Uuid;

async fn as_tenant(app: &mut Client, tenant: Uuid, sql: &str) -> u64 {
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&tenant.to_string()],
    )
    .await
    .unwrap();
    let n = tx.execute(sql, &[]).await.unwrap();
    tx.commit().await.unwrap();
    n
}

async fn job(app: &mut Client, tenant: Uuid, kind: &str, delay_s: i32) -> Uuid {
    let id = Uuid::new_v4();
    let sql = format!(
        "INSERT INTO jobs (tenant_id, id, kind, subject_id, run_at) VALUES \
         ('{tenant}', '{id}', '{kind}', '{}', now() + interval '{delay_s} seconds')",
        Uuid::new_v4()
    );
    assert_eq!(as_tenant(app, tenant, &sql).await, 1);
    id
}

/// `(tenant, job, attempts)` of what one claim got.
async fn claim(
    c: &Client,
    kind: &str,
    worker: &str,
    lease_ms: i32,
    n: i32,
) -> Vec<(Uuid, Uuid, i32)> {
    c.query(
        "SELECT job_tenant, job_id, job_attempts FROM claim_jobs($1, $2, $3, $4)",
        &[&kind, &worker, &lease_ms, &n],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn setup() -> (RegionDb, Node, Uuid, Uuid) {
    let db = RegionDb::create("eu").await;
    let node = Node::start(&db, "eu", NodeOptions::default()).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    node.provision(a, "alpha").await;
    node.provision(b, "beta").await;
    (db, node, a, b)
}

#[tokio::test]
async fn jobs_are_isolated_like_every_customer_table() {
    let (db, _node, a, b) = setup().await;
    let mut app = connect(&db.app_url).await;
    job(&mut app, a, "execution", 0).await;

    // B's setting: nothing of A's. No setting: nothing at all.
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&b.to_string()],
    )
    .await
    .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "B sees A's jobs");
    tx.rollback().await.unwrap();
    let n: i64 = app
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "jobs visible without a tenant setting");

    // The attack: the app role turns on the claim flag itself. The policy that honours it
    // applies to the owner only (inside claim_jobs), so nothing shows.
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT set_config('app.job_claim', 'on', true)", &[])
        .await
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the claim flag opened the queue to the app role");
    let err = tx
        .execute(
            "UPDATE jobs SET lease_owner = 'x', lease_until = now() WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .unwrap();
    assert_eq!(err, 0);
    tx.rollback().await.unwrap();

    // WITH CHECK: under B's setting, no job for A can be written.
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&b.to_string()],
    )
    .await
    .unwrap();
    let refused = tx
        .execute(
            "INSERT INTO jobs (tenant_id, id, kind, subject_id) VALUES ($1, $2, 'execution', $2)",
            &[&a, &Uuid::new_v4()],
        )
        .await;
    assert!(refused.is_err(), "a job was written for another tenant");
}

#[tokio::test]
async fn claims_hand_out_due_jobs_once_with_ids_only_and_leases_expire() {
    let (db, _node, a, b) = setup().await;
    let mut app = connect(&db.app_url).await;
    let ja = job(&mut app, a, "execution", 0).await;
    let jb = job(&mut app, b, "execution", 0).await;
    let later = job(&mut app, a, "execution", 3600).await;
    let other = job(&mut app, b, "webhook_delivery", 0).await;

    // Across tenants, due jobs of the kind only; the claim flag is off again afterwards.
    let tx = app.transaction().await.unwrap();
    let got = tx
        .query(
            "SELECT job_tenant, job_id, job_attempts FROM claim_jobs('execution', 'w1', 60000, 10)",
            &[],
        )
        .await
        .unwrap();
    let mut ids: Vec<(Uuid, Uuid, i32)> =
        got.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    ids.sort();
    let mut want = vec![(a, ja, 1), (b, jb, 1)];
    want.sort();
    assert_eq!(ids, want);
    assert!(!ids.iter().any(|(_, j, _)| *j == later || *j == other));
    let flag: String = tx
        .query_one(
            "SELECT coalesce(current_setting('app.job_claim', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(flag, "", "the claim flag outlived the claim");
    let n: i64 = tx
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "after a claim the caller sees jobs without a tenant setting"
    );
    // Ids and counters only: the columns asked for are all there is to ask for.
    let cols: Vec<String> = got[0]
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(cols, ["job_tenant", "job_id", "job_attempts"]);
    tx.commit().await.unwrap();

    // Leased: a second claimer gets nothing.
    assert!(claim(&app, "execution", "w2", 60000, 10).await.is_empty());
    // The holder's lease is visible in its tenant's transaction.
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .unwrap();
    let owner: Option<String> = tx
        .query_one("SELECT lease_owner FROM jobs WHERE id = $1", &[&ja])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner.as_deref(), Some("w1"));
    tx.rollback().await.unwrap();

    // An expired lease (a crashed worker) is claimed again, its attempts counted.
    let short = job(&mut app, a, "expiring", 0).await;
    assert_eq!(
        claim(&app, "expiring", "w1", 1, 1).await,
        vec![(a, short, 1)]
    );
    app.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
    assert_eq!(
        claim(&app, "expiring", "w2", 60000, 1).await,
        vec![(a, short, 2)]
    );

    // Bad arguments are refused, not guessed.
    for bad in [
        "SELECT * FROM claim_jobs('execution', '', 1000, 1)",
        "SELECT * FROM claim_jobs('execution', 'w', 0, 1)",
        "SELECT * FROM claim_jobs('execution', 'w', 1000, 0)",
    ] {
        assert!(app.query(bad, &[]).await.is_err(), "{bad}");
    }

    // Depth per kind: the leased execution jobs, the due webhook job.
    let depth: Vec<(String, i64, i64)> = app
        .query(
            "SELECT job_kind, due, leased FROM job_queue_depth() ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        depth,
        vec![
            ("execution".to_owned(), 0, 2),
            ("expiring".to_owned(), 0, 1),
            ("webhook_delivery".to_owned(), 1, 0)
        ]
    );
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let (db, _node, a, b) = setup().await;
    let mut app = connect(&db.app_url).await;
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(job(&mut app, if i % 2 == 0 { a } else { b }, "execution", 0).await);
    }
    // The first claimer holds its rows locked in an open transaction; the second skips them
    // instead of waiting, and takes the rest.
    let mut first = connect(&db.app_url).await;
    let tx = first.transaction().await.unwrap();
    let got1: Vec<Uuid> = tx
        .query(
            "SELECT job_id FROM claim_jobs('execution', 'w1', 60000, 4)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let got2: Vec<Uuid> = claim(&app, "execution", "w2", 60000, 100)
        .await
        .into_iter()
        .map(|(_, j, _)| j)
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(got1.len(), 4);
    assert_eq!(got2.len(), 6);
    let mut union: Vec<Uuid> = got1.iter().chain(&got2).copied().collect();
    union.sort();
    union.dedup();
    assert_eq!(union.len(), 10, "a job was claimed twice");
    all.sort();
    assert_eq!(union, all);
}
