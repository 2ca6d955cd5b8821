//! The tenant transaction: the only way request handlers reach the database.
//!
//! [`Db::tenant`] checks a connection out of the pool, opens a transaction, sets
//! `app.tenant_id` and `app.role` with `set_config(..., true)` (transaction-local, so nothing
//! survives into the next request on the same pooled connection), checks that the tenant is
//! provisioned in this region, resolves the caller's role and permissions, and only then runs
//! the handler's queries. `BEGIN`, the settings and the role resolution are pipelined: written
//! together, answered in one round trip, run by the server in that order. The transaction
//! commits when the handler returns `Ok`; on `Err`, on panic, or when the request future is
//! dropped, it rolls back (`Open` sends `ROLLBACK` when dropped unfinished, as
//! tokio-postgres' own `Transaction` does).
//!
//! [`Db::read`] is the same transaction started `READ ONLY`, for handlers that only read: the
//! server refuses any write in it, so committing it and rolling it back have the same effect
//! (none; the settings and the move lock end either way). Its `COMMIT` (or `ROLLBACK` on
//! `Err`) is therefore written behind the handler's last query without waiting for the
//! answer: the response leaves one round trip earlier, and the connection's next user queues
//! behind the end of this transaction on the wire.
//!
//! [`Db::read_rows`] (one statement: the generic get and list) and `Db::principal` (no
//! statement: `GET /v1/me`) write the whole read-only transaction at once — `BEGIN READ
//! ONLY`, the settings, the role resolution, the statement, `COMMIT` — and read the answers
//! together: one round trip. The statement runs before the role is known, so its rows are
//! returned only after the tenant is found provisioned and the role holds the permission.
//!
//! Row-Level Security does the isolation; this module makes sure the setting it relies on is
//! always present, and always the verified tenant's.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use residency_core::TenantId;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tracing::Instrument;
use uuid::Uuid;

use super::pool::{PgPool, STATEMENT_CACHE_SIZE};
use crate::error::ApiError;
use crate::rbac::{self, Permission, SystemRole};

/// Who is calling, as established by the verified gateway assertion.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant, from the assertion's `tid` only.
    pub tenant: TenantId,
    /// The subject (`sub`).
    pub subject: String,
    /// The role claim; empty means "use the member record".
    pub role_claim: String,
    /// The request id, recorded in audit events.
    pub request_id: String,
}

/// The caller's resolved role.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// Role name (system or custom).
    pub role: String,
    /// Permissions of that role, as stored (catalogue order for every role written here).
    pub permissions: Vec<Permission>,
}

impl Principal {
    /// Fails with 403 unless this role grants `permission`.
    fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.permissions.contains(&permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "role {} lacks the permission {permission}",
                self.role
            )))
        }
    }

    /// The principal RESOLVE's row names: 404 when the tenant is not provisioned here, 403
    /// when the credential names no role of it.
    fn resolved(row: &Row) -> Result<Self, ApiError> {
        if !row.get::<_, bool>("provisioned") {
            return Err(ApiError::NotFound("tenant"));
        }
        let permissions: Option<Vec<Permission>> = stored_permissions(row, "permissions")?;
        match (row.get::<_, Option<String>>("role"), permissions) {
            (Some(role), Some(permissions)) => Ok(Self { role, permissions }),
            _ => Err(ApiError::Forbidden(
                "the credential names no role of this customer and its subject is not a member"
                    .into(),
            )),
        }
    }
}

/// Reads a `roles.permissions` column (`Vec<Permission>`, or `Option<…>` when it may be NULL).
/// A name outside the catalogue is a corrupt row: a 500 whose detail is logged, never a
/// panic, a grant, or a 503 (the default mapping of a decoding error).
///
/// # Errors
/// [`ApiError::Unexpected`] naming the column and the unknown name.
pub(crate) fn stored_permissions<'r, T>(row: &'r Row, column: &str) -> Result<T, ApiError>
where
    T: tokio_postgres::types::FromSql<'r>,
{
    row.try_get(column)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("roles.{column}: {e}")))
}

/// A transaction scoped to one tenant. Its `query*`/`execute` methods use the connection's
/// prepared-statement cache; everything else derefs to the tokio-postgres client, whose
/// session is inside this transaction until it ends.
pub struct Tx<'c> {
    tx: Open<'c>,
    statements: &'c Mutex<HashMap<Box<str>, Statement>>,
    caller: Caller,
    principal: Principal,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The open transaction of a pooled connection: `BEGIN` has been (or is about to be) written.
/// Unless [`Open::commit`] or [`Open::rollback`] ends it, dropping it writes `ROLLBACK`: an
/// error, a panic or a dropped request future never leaves the transaction, or its
/// transaction-local settings, on the pooled connection. Created before `BEGIN` is written
/// (like tokio-postgres' `TransactionBuilder::start`), so a future dropped between writing
/// `BEGIN` and reading its answer rolls back too; a `ROLLBACK` with no transaction open is a
/// harmless warning.
struct Open<'c> {
    client: &'c Client,
    done: bool,
}

impl<'c> Open<'c> {
    fn new(client: &'c Client) -> Self {
        Self {
            client,
            done: false,
        }
    }

    async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        self.done = true;
        self.client.batch_execute("COMMIT").await
    }

    async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        self.done = true;
        self.client.batch_execute("ROLLBACK").await
    }

    /// Marks the transaction ended by a `COMMIT` or `ROLLBACK` the caller wrote itself.
    fn finished(mut self) {
        self.done = true;
    }

    /// Writes `COMMIT` without awaiting its answer. Only for a `READ ONLY` transaction, whose
    /// commit changes nothing and cannot fail in a way the caller could act on.
    fn commit_unawaited(mut self) {
        self.done = true;
        // Written on the first poll, as in `drop`.
        let _ = self.client.batch_execute("COMMIT").now_or_never();
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            // tokio-postgres writes a request to the connection on the future's first poll
            // (that is what makes its pipelining work), so one poll sends the `ROLLBACK`; its
            // answer is not awaited, and the connection's next user queues behind it.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// The statement for `sql` on this connection, prepared on first use (also the job claim's,
/// `crate::jobs::claim`).
pub(crate) async fn statement(
    client: &Client,
    cache: &Mutex<HashMap<Box<str>, Statement>>,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    // A poisoned cache only means a panic elsewhere mid-insert; the map is still valid.
    let cached = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(sql)
        .cloned();
    if let Some(s) = cached {
        return Ok(s);
    }
    let prepared = client.prepare(sql).await?;
    let mut map = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= STATEMENT_CACHE_SIZE {
        map.clear();
    }
    map.insert(sql.into(), prepared.clone());
    Ok(prepared)
}

impl std::ops::Deref for Tx<'_> {
    type Target = Client;
    fn deref(&self) -> &Self::Target {
        self.tx.client
    }
}

impl Tx<'_> {
    /// Runs a query with a cached prepared statement.
    ///
    /// # Errors
    /// Database errors.
    pub async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = statement(self.tx.client, self.statements, sql).await?;
        self.tx.client.query(&st, params).await
    }

    /// Runs a query expecting exactly one row.
    ///
    /// # Errors
    /// Database errors, or not exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let st = statement(self.tx.client, self.statements, sql).await?;
        self.tx.client.query_one(&st, params).await
    }

    /// Runs a query expecting at most one row.
    ///
    /// # Errors
    /// Database errors, or more than one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = statement(self.tx.client, self.statements, sql).await?;
        self.tx.client.query_opt(&st, params).await
    }

    /// Executes a statement; returns the number of rows affected.
    ///
    /// # Errors
    /// Database errors.
    pub async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let st = statement(self.tx.client, self.statements, sql).await?;
        self.tx.client.execute(&st, params).await
    }

    /// The tenant this transaction is scoped to.
    #[must_use]
    pub fn tenant(&self) -> Uuid {
        self.caller.tenant.as_uuid()
    }

    /// The caller.
    #[must_use]
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The caller's role and permissions.
    #[must_use]
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Fails with 403 unless the caller's role grants `permission`. The argument is a
    /// [`Permission`], so naming a permission outside the catalogue does not compile:
    ///
    /// ```compile_fail,E0599
    /// # fn check(tx: &residency_region_node::db::tenant_tx::Tx<'_>) {
    /// tx.require(residency_region_node::rbac::Permission::WorkflowRead); // misspelt
    /// # }
    /// ```
    ///
    /// ```
    /// # fn check(tx: &residency_region_node::db::tenant_tx::Tx<'_>) {
    /// let _ = tx.require(residency_region_node::rbac::Permission::WorkflowsRead);
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming the missing permission.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        self.principal.require(permission)
    }

    /// Fails with 403 unless the caller may grant `role` with `permissions`: every permission
    /// must be one the caller's own role holds (compared with the caller's actual permission
    /// set, so a custom role is judged by what it holds, not by its name), and only an owner
    /// grants (or copies) the `owner` role. Used for every grant: creating a role (`role` is
    /// the system role it copies), editing one (before and after), assigning one to a member,
    /// and changing a member (its current role).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming the permissions the caller lacks.
    pub(crate) fn require_grantable(
        &self,
        role: &str,
        permissions: &[Permission],
    ) -> Result<(), ApiError> {
        let owner = SystemRole::Owner.name();
        if role == owner && self.principal.role != owner {
            return Err(ApiError::Forbidden(
                "only an owner can grant the owner role".into(),
            ));
        }
        let missing = rbac::not_held(&self.principal.permissions, permissions);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "role {} cannot grant permissions it does not hold: {}",
                self.principal.role,
                rbac::names(&missing).join(", ")
            )))
        }
    }

    /// Appends an audit event in this same transaction, so it exists exactly when the write
    /// it describes commits.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(
        &self,
        action: &str,
        target_type: &str,
        target_id: &str,
        detail: Value,
    ) -> Result<(), ApiError> {
        self.execute(
                "INSERT INTO audit_events (tenant_id, id, actor, action, target_type, target_id, request_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &self.tenant(),
                    &Uuid::now_v7(),
                    &self.caller.subject,
                    &action,
                    &target_type,
                    &target_id,
                    &self.caller.request_id,
                    &detail,
                ],
            )
            .await?;
        Ok(())
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Customer => "customer",
        Scope::System => "system",
    }
}

/// Runs a tenant transaction in its span (exported with tracing on; no SQL text, no values),
/// its time recorded in `residency_node_db_transaction_duration_seconds{scope, outcome}`.
async fn observe<T>(
    scope: Scope,
    transaction: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let start = std::time::Instant::now();
    let span = tracing::debug_span!(
        "db.transaction",
        db.system = "postgresql",
        db.scope = scope_name(scope),
    );
    let out = transaction.instrument(span).await;
    let outcome = if out.is_ok() { "commit" } else { "error" };
    metrics::histogram!(crate::metrics::DB_TRANSACTION_SECONDS, "scope" => scope_name(scope), "outcome" => outcome)
        .record(start.elapsed().as_secs_f64());
    out
}

/// An error of a read-only transaction: a write refused there (25006, which
/// [`crate::error::from_db`] maps to 503 `tenant_moving`) is this code's bug, a 500, not a
/// tenant being moved.
fn read_only_error(e: ApiError) -> ApiError {
    match e {
        ApiError::TenantMoving => ApiError::Unexpected(anyhow::anyhow!(
            "a write in a read-only transaction (SQLSTATE 25006)"
        )),
        other => other,
    }
}

/// Whether a transaction may write.
#[derive(Clone, Copy)]
enum Access {
    /// `BEGIN`; the handler's outcome waits for `COMMIT`'s answer.
    ReadWrite,
    /// `BEGIN READ ONLY`; `COMMIT` is written, not awaited.
    ReadOnly,
}

/// How the principal is established for a transaction.
#[derive(Clone, Copy)]
enum Scope {
    /// A customer request: tenant must be provisioned; role from claim or member record.
    Customer,
    /// An internal system call (provisioning): no role lookup, no provisioning check.
    System,
}

/// The database handle held in the application state.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
}

/// Sets the tenant and role, then waits (shared) on the tenant's move lock, the advisory lock
/// (1380275017 = `'RESI'`, `hashtext(tenant id)`): a freeze in progress holds it exclusively
/// ([`FREEZE`]), so this transaction's next statement sees its outcome. A hash collision only
/// makes another tenant's requests wait for a freeze.
const SET_TENANT: &str = "SELECT set_config('app.tenant_id', $1, true), \
     set_config('app.role', $2, true), \
     pg_advisory_xact_lock_shared(1380275017, hashtext($1))";

/// Freezes or thaws the transaction's tenant: waits for every customer transaction of it in
/// flight (their shared lock), then sets the flag; transactions starting after this commits
/// see it. Used by the move endpoints only.
pub(crate) const FREEZE: &str = "SELECT pg_advisory_xact_lock(1380275017, hashtext($1))";

const RESOLVE: &str = "\
WITH chosen AS (
    SELECT r.name, r.permissions FROM roles r
    WHERE CASE WHEN $1 <> '' THEN r.name = $1
               ELSE r.id = (SELECT m.role_id FROM members m WHERE m.subject = $2) END
    LIMIT 1)
SELECT EXISTS (SELECT 1 FROM tenants) AS provisioned,
       coalesce((SELECT frozen FROM tenants), false) AS frozen,
       (SELECT name FROM chosen) AS role,
       (SELECT permissions FROM chosen) AS permissions,
       set_config('app.role', coalesce((SELECT name FROM chosen), ''), true)";

impl Db {
    /// Wraps a pool.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool (health checks only).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pooled connection, its failures mapped like every query's: a database error through
    /// [`crate::error::from_db`], the checkout timeout as 503. Tenant transactions start
    /// here; so does the job claim (`crate::jobs`), the one query outside them.
    ///
    /// # Errors
    /// As above.
    pub(crate) async fn checkout(
        &self,
    ) -> Result<bb8::PooledConnection<'_, super::pool::Manager>, ApiError> {
        self.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => crate::error::from_db(&e),
            bb8::RunError::TimedOut => ApiError::Unavailable("pool checkout timed out".into()),
        })
    }

    /// Runs `f` in a transaction scoped to the caller's tenant, after checking the tenant is
    /// provisioned here (404 otherwise) and resolving the caller's role (403 when it has none).
    ///
    /// # Errors
    /// The handler's error, or a database error mapped by [`crate::error::from_db`].
    pub async fn tenant<T, F>(&self, caller: &Caller, f: F) -> Result<T, ApiError>
    where
        F: for<'t> FnOnce(&'t Tx<'t>) -> BoxFuture<'t, Result<T, ApiError>>,
    {
        self.run(caller, Scope::Customer, Access::ReadWrite, f)
            .await
    }

    /// [`Db::tenant`] for a handler that only reads: the transaction is `READ ONLY` (a write
    /// in it fails with SQLSTATE 25006) and its end is not awaited (see the module docs).
    ///
    /// # Errors
    /// As [`Db::tenant`].
    pub async fn read<T, F>(&self, caller: &Caller, f: F) -> Result<T, ApiError>
    where
        F: for<'t> FnOnce(&'t Tx<'t>) -> BoxFuture<'t, Result<T, ApiError>>,
    {
        self.run(caller, Scope::Customer, Access::ReadOnly, f).await
    }

    /// Runs `f` for an internal system call (provisioning): the tenant setting is applied the
    /// same way, but the tenant need not exist yet and no role is looked up.
    ///
    /// # Errors
    /// As [`Db::tenant`].
    pub async fn system<T, F>(&self, caller: &Caller, f: F) -> Result<T, ApiError>
    where
        F: for<'t> FnOnce(&'t Tx<'t>) -> BoxFuture<'t, Result<T, ApiError>>,
    {
        self.run(caller, Scope::System, Access::ReadWrite, f).await
    }

    /// One read-only statement in the caller's tenant transaction, the whole transaction in
    /// one round trip: `BEGIN READ ONLY`, the settings, the role resolution, `sql` and
    /// `COMMIT` are written together and answered together. The statement therefore runs
    /// before the role is known; its rows are returned only when the tenant is provisioned
    /// here (404 otherwise) and the role grants `permission` (403 otherwise, the rows
    /// dropped). It runs after the settings, under Row-Level Security, in a transaction that
    /// cannot write, so running it for a caller who may not see its answer reveals nothing
    /// and changes nothing. Used by the generic get and list ([`crate::api::resource`]).
    ///
    /// # Errors
    /// 404, 403, or a database error mapped by [`crate::error::from_db`].
    pub async fn read_rows(
        &self,
        caller: &Caller,
        permission: Permission,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, ApiError> {
        let run = async {
            let (principal, rows) = self.pipelined(caller, Some((sql, params))).await?;
            principal.require(permission)?;
            Ok(rows)
        };
        observe(Scope::Customer, run).await
    }

    /// The caller's principal, from a read-only tenant transaction of one round trip
    /// ([`Db::read_rows`] without a statement): `GET /v1/me`.
    ///
    /// # Errors
    /// As [`Db::read_rows`].
    pub(crate) async fn principal(&self, caller: &Caller) -> Result<Principal, ApiError> {
        observe(Scope::Customer, async {
            Ok(self.pipelined(caller, None).await?.0)
        })
        .await
    }

    /// The pipeline of [`Db::read_rows`]: the principal RESOLVE names and `statement`'s rows
    /// (none without one). Statements are prepared (once per connection) before anything is
    /// written, so the transaction itself is one write.
    async fn pipelined(
        &self,
        caller: &Caller,
        statement_of: Option<(&str, Params<'_>)>,
    ) -> Result<(Principal, Vec<Row>), ApiError> {
        let conn = self.checkout().await?;
        let (client, statements) = (&conn.client, &conn.statements);
        let tenant = caller.tenant.to_string();
        let set = statement(client, statements, SET_TENANT).await?;
        let resolve = statement(client, statements, RESOLVE).await?;
        let query = match statement_of {
            Some((sql, params)) => Some((statement(client, statements, sql).await?, params)),
            None => None,
        };
        let set_params: [&(dyn ToSql + Sync); 2] = [&tenant, &caller.role_claim];
        let tx = Open::new(client);
        // Written in this order on the first poll of the join (see `run`), answered in
        // this order; `COMMIT` ends the transaction whatever the answers were (in an aborted
        // transaction it rolls back), so the connection is clean when the join ends.
        let (_, _, row, rows, ()) = futures_util::future::try_join5(
            client.batch_execute("BEGIN READ ONLY"),
            client.execute(&set, &set_params),
            client.query_one(&resolve, &[&caller.role_claim, &caller.subject]),
            async {
                match &query {
                    Some((st, params)) => client.query(st, params).await,
                    None => Ok(Vec::new()),
                }
            },
            client.batch_execute("COMMIT"),
        )
        .await
        .map_err(|e| read_only_error(e.into()))?;
        tx.finished();
        Ok((Principal::resolved(&row)?, rows))
    }

    /// Runs `f` in the caller's tenant transaction (see the module docs), in its span and
    /// recorded in `residency_node_db_transaction_duration_seconds` ([`observe`]).
    async fn run<T, F>(
        &self,
        caller: &Caller,
        scope: Scope,
        access: Access,
        f: F,
    ) -> Result<T, ApiError>
    where
        F: for<'t> FnOnce(&'t Tx<'t>) -> BoxFuture<'t, Result<T, ApiError>>,
    {
        observe(scope, async move {
            let conn = self.checkout().await?;
            let (client, statements) = (&conn.client, &conn.statements);
            let tenant = caller.tenant.to_string();
            // Prepared outside the transaction (a session-level statement; on the connection's
            // first use only), so that what follows is one write.
            let set = statement(client, statements, SET_TENANT).await?;
            let set_params: [&(dyn ToSql + Sync); 2] = [&tenant, &caller.role_claim];
            // Pipelined: `BEGIN`, the settings and (for a customer) the role resolution are all
            // written before any answer is read, one round trip instead of three. tokio-postgres
            // writes requests in the order their futures are first polled, and `try_join*` polls
            // in argument order; the server runs them in that order, so the settings are inside
            // the transaction and RESOLVE's reads already see them. If `BEGIN` fails, the rest runs
            // in single-statement transactions that end at once (nothing survives them); if the
            // settings fail, the transaction is aborted and RESOLVE fails with it. Either way the
            // error is returned and `tx` rolls back.
            let begin = match access {
                Access::ReadWrite => "BEGIN",
                Access::ReadOnly => "BEGIN READ ONLY",
            };
            let tx = Open::new(client);
            let principal = match scope {
                Scope::System => {
                    futures_util::future::try_join(
                        client.batch_execute(begin),
                        client.execute(&set, &set_params),
                    )
                    .await?;
                    Principal {
                        role: "system".to_owned(),
                        permissions: Vec::new(),
                    }
                }
                Scope::Customer => {
                    let resolve = statement(client, statements, RESOLVE).await?;
                    let (_, _, row) = futures_util::future::try_join3(
                        client.batch_execute(begin),
                        client.execute(&set, &set_params),
                        client.query_one(&resolve, &[&caller.role_claim, &caller.subject]),
                    )
                    .await?;
                    let principal = Principal::resolved(&row)?;
                    if matches!(access, Access::ReadWrite) && row.get::<_, bool>("frozen") {
                        // Being moved: reads go on, any write fails with 25006 (→ 503
                        // tenant_moving, `crate::error::from_db`). A read-only one already does.
                        client.batch_execute("SET TRANSACTION READ ONLY").await?;
                    }
                    principal
                }
            };
            let scoped = Tx {
                tx,
                statements,
                caller: caller.clone(),
                principal,
            };
            let out = f(&scoped).await;
            match (access, out) {
                (Access::ReadOnly, Ok(v)) => {
                    scoped.tx.commit_unawaited();
                    Ok(v)
                }
                // Dropping `scoped` writes `ROLLBACK`, not awaited either.
                (Access::ReadOnly, Err(e)) => Err(read_only_error(e)),
                (Access::ReadWrite, Ok(v)) => {
                    scoped.tx.commit().await?;
                    Ok(v)
                }
                (Access::ReadWrite, Err(e)) => {
                    // Explicit rollback keeps the connection clean; if it fails the connection is
                    // closed and the pool replaces it.
                    let _ = scoped.tx.rollback().await;
                    Err(e)
                }
            }
        })
        .await
    }
}
