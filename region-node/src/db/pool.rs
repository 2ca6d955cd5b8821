//! The pool of application-role connections, each with its own prepared-statement cache.
//!
//! The pool is built lazily so a node starts (and reports not-ready) while its database is
//! down, and recovers without a restart when the database comes back: broken connections are
//! detected by `is_closed` and replaced.
//!
//! tokio-postgres prepares a statement on every `query(&str, ..)` call, which costs an extra
//! round trip. Each pooled connection therefore keeps the statements it has prepared (bounded,
//! keyed by SQL text); [`super::tenant_tx::Tx`] uses them. Prepared statements live in the
//! session, not the transaction, so they survive rollbacks. Behind PgBouncer in transaction
//! mode this needs its protocol-level prepared statement support (`max_prepared_statements`).

use std::collections::HashMap;
use std::sync::Mutex;

use bb8::{ManageConnection, Pool};
use bb8_postgres::PostgresConnectionManager;
use residency_config::node::DatabaseConfig;
use tokio_postgres::{Client, NoTls, Statement};

/// Most statements cached per connection; the cache is cleared when full.
pub const STATEMENT_CACHE_SIZE: usize = 256;

/// A pooled connection: the client and the statements prepared on it.
pub struct PgConnection {
    /// The client.
    pub client: Client,
    /// Statements prepared on this connection, by SQL text. Locked only for map access, never
    /// across an await; a connection serves one request at a time, so it is uncontended.
    pub statements: Mutex<HashMap<Box<str>, Statement>>,
}

/// bb8 manager wrapping bb8-postgres' manager with the statement cache.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(PgConnection {
            client: self.0.connect().await?,
            statements: Mutex::new(HashMap::new()),
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.client.is_closed()
    }
}

/// The node's connection pool type.
pub type PgPool = Pool<Manager>;

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
    let manager = Manager(PostgresConnectionManager::new(pg, NoTls));
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
        Ok(conn) => conn.client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
