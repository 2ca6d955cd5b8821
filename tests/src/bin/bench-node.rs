//! Benchmark fixture: a fresh region database and an in-process region node with one tenant
//! and one configuration, for `bench/node.sh` to load with wrk. Writes `<dir>/fixture.env`
//! (URL, tenant, app/owner/admin URLs, a 60 s assertion refreshed every 30 s into
//! `<dir>/assertion`) and serves until stdin closes or SIGTERM; the database is dropped on exit.

use std::time::Duration;

use integration_tests::{Node, NodeOptions, RegionDb};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// The allocator `region-node`'s binary ships with, since this one serves the node in process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/bench".to_owned());
    std::fs::create_dir_all(&dir)?;
    let db = RegionDb::create("bench").await;
    let node = Node::start(&db, "bench", NodeOptions { pool_size: 16 }).await;
    let tenant = Uuid::new_v4();
    node.provision(tenant, "bench").await;
    let r = node
        .call(
            http::Method::PUT,
            "/v1/configurations/theme",
            tenant,
            "u",
            "owner",
            Some(&serde_json::json!({"value": {"color": "blue"}})),
        )
        .await;
    anyhow::ensure!(r.status.is_success(), "seed failed: {r:?}");
    std::fs::write(
        format!("{dir}/fixture.env"),
        format!(
            "URL={}\nTENANT={tenant}\nAPP_URL={}\nADMIN_DB_URL={}\nDB={}\n",
            node.url("/v1/configurations/theme"),
            db.app_url,
            db.admin_db_url,
            db.name
        ),
    )?;
    let refresh = {
        let dir = dir.clone();
        let node = &node;
        async move {
            loop {
                let _ = std::fs::write(
                    format!("{dir}/assertion"),
                    node.assertion(tenant, "bench", "owner"),
                );
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    };
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 1];
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = refresh => {}
        _ = stdin.read(&mut buf) => {}
        _ = term.recv() => {}
    }
    node.stop().await;
    drop(db);
    Ok(())
}
