//! Scale measurement of the audit (not a timed assertion): seeds 1,000,000 rows across the
//! customer tables of one region database with `generate_series` and reports how long the
//! audit takes, before and after `VACUUM ANALYZE` (which enables index-only scans).
//!
//! Run: `cargo test -p integration-tests --test audit_scale -- --ignored --nocapture`

use std::time::Instant;

use integration_tests::{connect, RegionDb};
use residency_audit::{no_progress, run_audit, AuditInput, RegionInput};
use residency_core::{RegionId, TenantId};
use residency_core::{TenantEntry, TenantStatus, Tier};
use uuid::Uuid;

const TENANTS: i64 = 1_000;

#[tokio::test]
#[ignore = "seeds 1M rows; run explicitly to measure"]
async fn audit_of_one_million_rows() {
    let db = RegionDb::create("eu").await;
    let admin = connect(&db.admin_db_url).await;
    let seeded = Instant::now();
    // 1,000 tenants; 10 workflows each; 20 runs per workflow; 3 log lines per run; 189 audit
    // events per tenant: 1,000 + 10,000 + 200,000 + 600,000 + 189,000 = 1,000,000 rows.
    admin
        .batch_execute(&format!(
            "CREATE TEMP TABLE seed AS SELECT gen_random_uuid() AS id, g FROM generate_series(1, {TENANTS}) g;
             INSERT INTO tenants (tenant_id, name, region) SELECT id, 'tenant ' || g, 'eu' FROM seed;
             INSERT INTO workflows (tenant_id, id, name, definition)
                 SELECT s.id, gen_random_uuid(), 'w' || w, '{{}}' FROM seed s, generate_series(1, 10) w;
             INSERT INTO executions (tenant_id, id, workflow_id, status, created_by)
                 SELECT tenant_id, gen_random_uuid(), id, 'succeeded', 'bench' FROM workflows, generate_series(1, 20);
             INSERT INTO execution_logs (tenant_id, execution_id, seq, level, message)
                 SELECT tenant_id, id, s, 'info', 'step' FROM executions, generate_series(1, 3) s;
             INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id)
                 SELECT s.id, gen_random_uuid(), 'bench', 'workflow.run', 'workflow', 'x'
                 FROM seed s, generate_series(1, 189);"
        ))
        .await
        .unwrap();
    let ids: Vec<Uuid> = admin
        .query("SELECT tenant_id FROM tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!(
        "seeded 1,000,000 rows in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let tenants = ids
        .iter()
        .map(|id| TenantEntry {
            id: TenantId::from_uuid(*id),
            name: String::new(),
            region: RegionId::new("eu").unwrap(),
            tier: Tier::Starter,
            status: TenantStatus::Active,
            rate_limit_per_min: None,
        })
        .collect();
    let input = AuditInput::new(
        vec![RegionInput {
            id: RegionId::new("eu").unwrap(),
            display_name: "Europe".into(),
            location: "loopback".into(),
            auditor_url: db.auditor_url.clone(),
            app_role: db.roles[1].clone(),
            upstreams: vec![],
            routing: None,
        }],
        tenants,
    );

    for phase in ["freshly loaded", "after VACUUM ANALYZE"] {
        if phase.starts_with("after") {
            admin.batch_execute("VACUUM ANALYZE").await.unwrap();
        }
        let started = Instant::now();
        let report = run_audit(&input, &no_progress).await;
        let took = started.elapsed();
        assert!(report.clean, "{:#?}", report.violations);
        assert_eq!(report.regions[0].rows_total, 1_000_000);
        assert_eq!(
            report.regions[0].tenants.len(),
            usize::try_from(TENANTS).unwrap()
        );
        println!(
            "audit of 1,000,000 rows / {TENANTS} tenants / 9 tables ({phase}): {:.2} s",
            took.as_secs_f64()
        );
        for t in &report.regions[0].tables {
            println!("  {:<16} {:>8} rows", t.table, t.rows);
        }
    }
    // The plan the auditor gets for the largest table.
    let auditor = connect(&db.auditor_url).await;
    let plan = auditor
        .query(
            "EXPLAIN SELECT tenant_id::text, count(*) FROM execution_logs GROUP BY tenant_id",
            &[],
        )
        .await
        .unwrap();
    for row in plan {
        println!("  plan: {}", row.get::<_, String>(0));
    }
}
