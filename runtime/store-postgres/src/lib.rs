//! Fluxo's shared store on PostgreSQL: every store port, for several `fluxo serve` nodes
//! on one database. The model is the embedded SQLite store's (the same tables, the same
//! rules, the same conformance suite); what differs is concurrency:
//!
//! - **Transactions** are `READ COMMITTED` with explicit row locks where a
//!   read-modify-write needs one (a contact's record, a tenant's state usage, a run's
//!   row); a serialization failure or deadlock is retried a few times, then reported
//!   transient.
//! - **Claims** take one transaction-scoped advisory lock, so the deficit round robin's
//!   bookkeeping (`tenant_queue`, the `served` counter) moves one claim at a time across
//!   every node — the per-tenant caps hold over the whole cluster. Claims are small
//!   batches of indexed lookups; commits, heartbeats and enqueues never take that lock.
//! - **Wake-ups**: `LISTEN/NOTIFY` as a batched hint (the `hint` module): queued
//!   work is announced at most every 50 ms, off the commit path; claimers still poll.
//! - **Durability**: `synchronous_commit` is set `on` for every connection: a commit
//!   acknowledged is on the primary's disk.
//! - **Migrations** (`migrations/`, in order) run at start under a session advisory lock,
//!   so nodes starting together migrate once; a database migrated by a newer Fluxo is
//!   refused.

mod catalog;
mod contacts;
mod hint;
mod ledger;
mod outbox;
mod queue;
mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod, Runtime};
use fluxo_store::{StoreError, StoreErrorKind};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Migrations, in order; the schema version is the number applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_schema", include_str!("../migrations/0001_schema.sql")),
    (
        "0002_messages_and_version_kinds",
        include_str!("../migrations/0002_messages_and_version_kinds.sql"),
    ),
    (
        "0003_waiting_runs",
        include_str!("../migrations/0003_waiting_runs.sql"),
    ),
    (
        "0004_hooks_and_run_trees",
        include_str!("../migrations/0004_hooks_and_run_trees.sql"),
    ),
    (
        "0005_runs_by_state",
        include_str!("../migrations/0005_runs_by_state.sql"),
    ),
    (
        "0006_contact_updates",
        include_str!("../migrations/0006_contact_updates.sql"),
    ),
];

/// The advisory lock key of migrations (any constant; "fluxomig" in ASCII).
const MIGRATION_LOCK: i64 = 0x666c_7578_6f6d_6967;
/// The advisory lock key of claims ("fluxoclm").
const CLAIM_LOCK: i64 = 0x666c_7578_6f63_6c6d;
/// Tries of a transaction that hit a serialization failure or a deadlock.
const TX_TRIES: u32 = 5;

/// Settings of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in this node's pool.
    pub pool_size: usize,
    /// Bytes of state one tenant may hold.
    pub tenant_state_bytes: u64,
    /// Runs of one tenant waiting to run before its submits are refused.
    pub backlog_per_tenant: u64,
    /// Cost units given to a tenant per round of the deficit round robin.
    pub quantum: i64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            tenant_state_bytes: 1 << 20,
            backlog_per_tenant: 50_000,
            quantum: 100,
        }
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    /// The URL, for the `LISTEN` connection (never printed: it may hold a password).
    url: std::sync::Arc<str>,
    hints: std::sync::Arc<hint::Hints>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A boxed future borrowing a transaction.
pub(crate) type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// A transaction of the pool.
pub(crate) type Tx<'t> = deadpool_postgres::Transaction<'t>;

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), migrates the database (once,
    /// whatever the number of nodes starting), and checks it.
    ///
    /// # Errors
    /// When the database cannot be reached, was migrated by a newer Fluxo, or a
    /// migration fails.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        config.options = Some("-c synchronous_commit=on".to_owned());
        config.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        config.pool = Some(deadpool_postgres::PoolConfig::new(options.pool_size.max(2)));
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|error| StoreError::permanent(format!("postgres pool: {error}")))?;
        let hints = std::sync::Arc::new(hint::Hints::default());
        hint::Hints::spawn_announcer(&hints, pool.clone());
        let store = Self {
            pool,
            options,
            url: url.into(),
            hints,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this database lacks, under a session advisory lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let result = apply_migrations(&mut client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg);
        result.and(unlocked.map(|_| ()))
    }

    /// Whether the database answers and its schema is this Fluxo's (for `/readyz`).
    ///
    /// # Errors
    /// When it does not answer or its schema is not current.
    pub async fn schema_ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let applied: i64 = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM fluxo_migrations",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if applied == known {
            Ok(())
        } else {
            Err(StoreError::transient(format!(
                "the database schema is version {applied}, this Fluxo's is {known}"
            )))
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::transient(format!("postgres pool: {error}")))
    }

    /// Runs `work` in one transaction, retrying it on a serialization failure or a
    /// deadlock.
    pub(crate) async fn tx<T, F>(&self, mut work: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> FnMut(&'t Tx<'t>) -> TxFuture<'t, T> + Send,
    {
        let mut client = self.client().await?;
        let mut tries = 0;
        loop {
            tries += 1;
            let transaction = client.transaction().await.map_err(pg)?;
            let outcome = match work(&transaction).await {
                Ok(value) => transaction.commit().await.map_err(pg).map(|()| value),
                Err(error) => {
                    // Dropping the transaction rolls it back.
                    drop(transaction);
                    Err(error)
                }
            };
            match outcome {
                Err(error) if error.is_transient() && tries < TX_TRIES && retryable_now(&error) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries)))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// Runs a read-only `work` outside an explicit transaction.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c deadpool_postgres::Client) -> TxFuture<'c, T>,
    {
        let client = self.client().await?;
        work(&client).await
    }
}

/// Serialization failures and deadlocks are worth retrying at once; other transient
/// errors (a lost connection) are left to the caller.
fn retryable_now(error: &StoreError) -> bool {
    let message = error.to_string();
    message.contains("could not serialize") || message.contains("deadlock")
}

async fn apply_migrations(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS fluxo_migrations (
                 version INTEGER PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_ms BIGINT NOT NULL
             )",
        )
        .await
        .map_err(pg)?;
    let applied: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM fluxo_migrations",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if applied > known {
        return Err(StoreError::permanent(format!(
            "the database is at schema version {applied}, newer than this Fluxo's {known}: upgrade Fluxo"
        )));
    }
    for (index, (name, migration)) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        if version <= applied {
            continue;
        }
        let transaction = client.transaction().await.map_err(pg)?;
        transaction
            .batch_execute(migration)
            .await
            .map_err(|error| StoreError::permanent(format!("migration {name}: {error}")))?;
        transaction
            .execute(
                "INSERT INTO fluxo_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
                &[&version, name, &now_ms()],
            )
            .await
            .map_err(pg)?;
        transaction.commit().await.map_err(pg)?;
    }
    Ok(())
}

/// A PostgreSQL error as a store error: serialization failures, deadlocks, lost or
/// refused connections are transient; unique violations are conflicts.
pub(crate) fn pg(error: tokio_postgres::Error) -> StoreError {
    let kind = match error.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS =>
        {
            StoreErrorKind::Transient
        }
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreErrorKind::Conflict,
        Some(_) => StoreErrorKind::Permanent,
        None => StoreErrorKind::Transient,
    };
    let message = match error.as_db_error() {
        Some(db) => format!("postgres: {}", db.message()),
        None => format!("postgres: {error}"),
    };
    StoreError::new(kind, message).with_source(error)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    fluxo_store::now_ms()
}

#[cfg(test)]
mod tests;
