//! The pool of application-role connections.
//!
//! The pool is built lazily so a node starts (and reports not-ready) while its database is
//! down, and recovers without a restart when the database comes back: broken connections are
//! detected by `is_closed` and replaced.

use bb8::Pool;
use bb8_postgres::PostgresConnectionManager;
use residency_config::node::DatabaseConfig;
use tokio_postgres::NoTls;

/// The node's connection pool type.
pub type PgPool = Pool<PostgresConnectionManager<NoTls>>;

/// Builds the pool from config without connecting yet.
///
/// # Errors
/// When the URL does not parse.
pub fn build(cfg: &DatabaseConfig, application_name: &str) -> anyhow::Result<PgPool> {
    let mut pg: tokio_postgres::Config = cfg
        .url
        .parse()
        .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
    pg.application_name(application_name);
    pg.connect_timeout(cfg.connect_timeout);
    pg.options(format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        cfg.statement_timeout.as_millis(),
        cfg.statement_timeout.as_millis() * 2
    ));
    let manager = PostgresConnectionManager::new(pg, NoTls);
    Ok(Pool::builder()
        .max_size(cfg.pool_size)
        .connection_timeout(cfg.checkout_timeout)
        // Connections are tested by `is_closed` on return; a ping on every checkout would
        // add a round trip to every request.
        .test_on_check_out(false)
        .build_unchecked(manager))
}

/// Whether the database answers a trivial query (for `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    match pool.get().await {
        Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
