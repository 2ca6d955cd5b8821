//! The pool of application-role connections, each with its own prepared-statement cache.
//!
//! Before serving, [`check_app_role`] connects once as the configured role and refuses it when
//! it is a superuser, has `BYPASSRLS`, or owns (or is a member of a role that owns) any object
//! in the database: each of those can read every tenant's rows or switch RLS off. A node whose
//! role cannot be checked (database unreachable) does not start either: fail closed, and its
//! supervisor restarts it. Once started, the pool is lazy and survives database outages,
//! recovering without a restart when the database comes back: broken connections are detected
//! by `is_closed` on check-out and on return ([`residency_pg::pool`]) and replaced.
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
use residency_pg::tls::MakeTls;
use residency_pg::Target;
use tokio_postgres::{Client, Statement};

/// Most statements cached per connection; the cache is cleared when full.
pub(crate) const STATEMENT_CACHE_SIZE: usize = 256;

/// A pooled connection: the client and the statements prepared on it.
pub struct PgConnection {
    /// The client.
    pub client: Client,
    /// Statements prepared on this connection, by SQL text. Locked only for map access, never
    /// across an await; a connection serves one request at a time, so it is uncontended.
    pub(crate) statements: Mutex<HashMap<Box<str>, Statement>>,
}

/// bb8 manager wrapping bb8-postgres' manager with the statement cache.
pub struct Manager(PostgresConnectionManager<MakeTls>);

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
        residency_pg::pool::unless_closed(&conn.client).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.client.is_closed()
    }
}

/// The node's connection pool type.
pub(crate) type PgPool = Pool<Manager>;

/// The connection settings of the app role's sessions, with the TLS `database.url` asks for.
fn pg_config(cfg: &DatabaseConfig, application_name: &str) -> anyhow::Result<Target> {
    let mut target = Target::parse_checked(
        cfg.url.expose(),
        cfg.allow_insecure_transport,
        "database.allow_insecure_transport",
    )
    .map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
    let pg = target.config_mut();
    pg.application_name(application_name);
    pg.connect_timeout(cfg.connect_timeout);
    pg.options(format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        cfg.statement_timeout.as_millis(),
        cfg.statement_timeout.as_millis() * 2
    ));
    Ok(target)
}

/// Builds the pool from config without connecting yet.
///
/// # Errors
/// When the URL does not parse or its certificate files cannot be read.
pub fn build(cfg: &DatabaseConfig, application_name: &str) -> anyhow::Result<PgPool> {
    let target = pg_config(cfg, application_name)?;
    let manager = Manager(PostgresConnectionManager::new(
        target.config().clone(),
        target.tls(),
    ));
    Ok(Pool::builder()
        .max_size(cfg.pool_size)
        .connection_timeout(cfg.checkout_timeout)
        // Connections are tested by `is_closed` on check-out and on return, never with a
        // ping: a round trip on every checkout would add to every request. Without the
        // check-out test, each connection that died while idle (the database restarted)
        // failed one request after the recovery.
        .test_on_check_out(true)
        .build_unchecked(manager))
}

/// Whether the database answers a trivial query (for `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    match pool.get().await {
        Ok(conn) => conn.client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Most owned objects named in a refusal; the rest are counted.
const OWNED_SHOWN: usize = 10;

/// Connects once as the role of `database.url` and refuses it when row-level security would
/// not bind it: a superuser, a role with `BYPASSRLS`, or one that owns an object in this
/// database or in the cluster (itself or through a role it is a member of: an owner can
/// `ALTER TABLE … DISABLE ROW LEVEL SECURITY`, drop policies, or redefine what they call).
///
/// # Errors
/// Every reason the role is refused, in one message naming the role and the objects, or why
/// the role could not be checked (the database unreachable). Never the password.
pub async fn check_app_role(cfg: &DatabaseConfig, application_name: &str) -> anyhow::Result<()> {
    let target = pg_config(cfg, application_name)?;
    let role = target.config().get_user().unwrap_or_default().to_owned();
    let (client, conn) = target.connect().await.map_err(|e| {
        anyhow::anyhow!("database.url: to check the privileges of role {role}: {e}")
    })?;
    let conn = tokio::spawn(conn);
    let result = role_problems(&client).await;
    drop(client);
    let _ = conn.await;
    let problems = result.map_err(|e| {
        anyhow::anyhow!("database.url: cannot check the privileges of role {role}: {e}")
    })?;
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "database.url: the node must connect as the application role, and role {role} {}",
            problems.join("; it ")
        )
    }
}

/// What makes the session's role unfit to serve under row-level security (empty: fit).
async fn role_problems(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let me = client
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (superuser, bypassrls): (bool, bool) = (me.get(0), me.get(1));
    let mut problems = Vec::new();
    if superuser {
        // A superuser is a member of every role: listing what its roles own says nothing more.
        problems.push("is a superuser: row-level security does not apply to it".to_owned());
        return Ok(problems);
    }
    if bypassrls {
        problems.push("has BYPASSRLS: row-level security does not apply to it".to_owned());
    }
    // Ownership dependencies of this database's objects and of shared ones (databases,
    // tablespaces), held by the role or by any role it is a member of (it can SET ROLE to it).
    let owned = client
        .query(
            "SELECT pg_describe_object(d.classid, d.objid, d.objsubid),
                    pg_get_userbyid(d.refobjid)::text
             FROM pg_shdepend d
             WHERE d.deptype = 'o' AND d.refclassid = 'pg_authid'::regclass
               AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
               AND pg_has_role(current_user, d.refobjid, 'MEMBER')
             ORDER BY 2, 1",
            &[],
        )
        .await?;
    if !owned.is_empty() {
        let mut names: Vec<String> = owned
            .iter()
            .take(OWNED_SHOWN)
            .map(|r| {
                let (object, owner): (String, String) = (r.get(0), r.get(1));
                format!("{object} (owner {owner})")
            })
            .collect();
        if owned.len() > OWNED_SHOWN {
            names.push(format!("and {} more", owned.len() - OWNED_SHOWN));
        }
        problems.push(format!(
            "owns objects, directly or through a role it is a member of, so it could disable \
             row-level security: {}",
            names.join(", ")
        ));
    }
    Ok(problems)
}
