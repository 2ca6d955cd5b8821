//! What connection pools of the project share: the check-out test.
//!
//! A pooled connection whose server went away (a restart, a failover, `pg_terminate_backend`)
//! is closed by tokio-postgres as soon as the server says so. The pools (`bb8`) test each
//! connection on check-out with [`unless_closed`]: an atomic load, no round trip, so a
//! connection that died while idle is replaced instead of failing the next request. A silent
//! partition (no FIN, no RST) is not seen here; statement timeouts cover it.

use tokio_postgres::{Client, Error};

/// `Ok` for an open client; the client's own "connection closed" error for a closed one
/// (returned at once: a closed client sends nothing).
///
/// # Errors
/// When the client is closed.
pub async fn unless_closed(client: &Client) -> Result<(), Error> {
    if client.is_closed() {
        client.simple_query("").await.map(|_| ())
    } else {
        Ok(())
    }
}
