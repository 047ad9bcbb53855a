//! The embedded store: every port of [`fluxo_store`] on one SQLite database (WAL,
//! `synchronous=FULL`), so `fluxo serve` needs no server to install.
//!
//! **One writer, many readers.** Every write runs on one thread that batches whatever
//! is waiting into one transaction — one fsync for many submits, claims and commits
//! (group commit) — each job in its own savepoint. Reads go to a pool of read-only
//! connections (`deadpool-sqlite`), which WAL lets run beside the writer.
//!
//! **Records.** Run records (event, limits and retry snapshots, report, attempts) are
//! MessagePack (`fluxo_core::codec`); catalog settings (limit overrides, retry
//! policies), contacts and outbox payloads are JSON. Every one is decoded strictly: a
//! record that does not decode is a [`StoreErrorKind::Corrupt`] error, never an empty
//! value.
//!
//! **Migrations** are SQL files in `migrations/`, applied in order at open inside a
//! transaction each; the schema version is SQLite's `user_version`.

mod catalog;
mod contacts;
mod ledger;
mod outbox;
mod queue;
mod state;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fluxo_store::{StoreError, StoreErrorKind};
use rusqlite::{Connection, OptionalExtension};

use self::writer::{Writer, sql};

/// Migrations, in order; the schema version is the number applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_outbox_and_state",
        include_str!("../migrations/0001_outbox_and_state.sql"),
    ),
    (
        "0002_catalog_and_runs",
        include_str!("../migrations/0002_catalog_and_runs.sql"),
    ),
    (
        "0003_contacts",
        include_str!("../migrations/0003_contacts.sql"),
    ),
    (
        "0004_limit_overrides",
        include_str!("../migrations/0004_limit_overrides.sql"),
    ),
    (
        "0005_durable_queue",
        include_str!("../migrations/0005_durable_queue.sql"),
    ),
    (
        "0006_review_fixes",
        include_str!("../migrations/0006_review_fixes.sql"),
    ),
    (
        "0007_messages_and_version_kinds",
        include_str!("../migrations/0007_messages_and_version_kinds.sql"),
    ),
    (
        "0008_waiting_runs",
        include_str!("../migrations/0008_waiting_runs.sql"),
    ),
    (
        "0009_hooks_and_run_trees",
        include_str!("../migrations/0009_hooks_and_run_trees.sql"),
    ),
    (
        "0010_runs_by_state",
        include_str!("../migrations/0010_runs_by_state.sql"),
    ),
    (
        "0011_contact_updates",
        include_str!("../migrations/0011_contact_updates.sql"),
    ),
];

/// The default cap on a tenant's state: 1 MiB of keys and values.
pub const DEFAULT_TENANT_STATE_BYTES: u64 = 1 << 20;

/// Where a commit stops dead, for crash tests: the process aborts there, mid-transaction.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After a commit applied contact changes, before it wrote the run's row.
    AbortAfterContacts,
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Bytes of state keys and values one tenant may hold.
    pub tenant_state_bytes: u64,
    /// Read-only connections in the pool.
    pub readers: usize,
    /// KiB of SQLite page cache set as each connection's `cache_size` (the writer and
    /// every reader; default 256). SQLite's own default is 2 000 KiB a connection
    /// (SQLite's heap was most of a server's live heap while thousands of runs waited:
    /// heaptrack, BENCHMARKS.md, workflows). Pages evicted are read again from the
    /// operating system's file cache (migrations run before the cap is set, so an index
    /// they build sorts in SQLite's default cache). 0 is taken as 1 (the server's
    /// configuration refuses 0).
    ///
    /// The cap alone does not bound a connection: the bundled SQLite is built with
    /// `SQLITE_ENABLE_MEMORY_MANAGEMENT` (libsqlite3-sys), so every connection's cache
    /// is one share of a single process-wide budget, and a connection may hold the
    /// pages others do not (measured: a `fluxo serve` writer at 3.2 MB of cache under
    /// a 256 KiB cap while 4 000 runs waited). The store therefore also adds
    /// [`SqliteOptions::heap_budget_bytes`] to SQLite's process-wide soft heap limit
    /// (`PRAGMA soft_heap_limit`, see [`SqliteStore::open`]).
    pub page_cache_kib: u32,
    /// Rows of a tenant waiting to run (queued or retrying) before its submits are
    /// refused: one tenant's flood gets 429s, the others do not.
    pub backlog_per_tenant: u64,
    /// Runs given to a tenant per round of the deficit round robin, in cost units (a
    /// millisecond of wall time or a million fuel units each).
    pub quantum: i64,
    #[doc(hidden)]
    pub failpoint: Option<Failpoint>,
}

/// SQLite heap the budget gives each connection besides its page cache cap, for its
/// schema, prepared statements and lookaside slots. What a connection really holds
/// there is more: 0.38 MiB for a writer just migrated (test
/// `sqlite_heap_stays_within_the_stores_budget`), so under load the caches share what
/// is left and hold less than their caps, pages coming back from the operating
/// system's file cache. The figure is kept because it is the budget the workflows
/// benchmark met its memory, resume and timer goals with (BENCHMARKS.md, workflows).
const CONNECTION_HEAP_BYTES: u64 = 192 << 10;

impl SqliteOptions {
    /// Bytes of SQLite heap this store is budgeted: for the writer and each reader,
    /// its page cache cap plus 192 KiB (a connection's schema, statements and lookaside
    /// come out of it first; under load the caches get the rest). The store adds it to
    /// SQLite's process-wide soft heap limit while it is open.
    #[must_use]
    pub fn heap_budget_bytes(&self) -> u64 {
        let connections = u64::try_from(self.readers.max(1))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let cache = u64::from(self.page_cache_kib.max(1)) << 10;
        connections.saturating_mul(cache.saturating_add(CONNECTION_HEAP_BYTES))
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            tenant_state_bytes: DEFAULT_TENANT_STATE_BYTES,
            readers: 4,
            page_cache_kib: 256,
            backlog_per_tenant: 50_000,
            quantum: 100,
            failpoint: None,
        }
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    readers: deadpool_sqlite::Pool,
    options: SqliteOptions,
    path: PathBuf,
    /// Dropped last: gives the store's budget back after the writer's connection closed
    /// (its thread joined); deadpool closes the readers' on blocking threads, possibly
    /// just after, which a soft limit tolerates.
    _heap: HeapShare,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it, mode 0600, if needed) the database file and migrates it.
    ///
    /// While the store is open, SQLite's soft heap limit (`PRAGMA soft_heap_limit`,
    /// process-wide: it also applies to any other use of the bundled SQLite in the
    /// process) is raised by [`SqliteOptions::heap_budget_bytes`]: from "no limit" to
    /// that budget for the first store, or from an embedder's own limit to that limit
    /// plus the budget; past it SQLite frees unused cache pages before it allocates
    /// more. Dropping the store gives its share back.
    ///
    /// # Errors
    /// When the file cannot be opened or created, was written by a newer Fluxo, or a
    /// migration fails.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        create_private(path)?;
        let connection = Connection::open(path).map_err(sql)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        // Migrations run with SQLite's default cache (an index built over a large table
        // sorts in memory up to it); the cap applies from then on and frees the rest.
        migrate(&connection)?;
        let cache_size = -i64::from(options.page_cache_kib.max(1));
        connection
            .pragma_update(None, "cache_size", cache_size)
            .map_err(sql)?;
        let readers = deadpool_sqlite::Config::new(path)
            .builder(deadpool_sqlite::Runtime::Tokio1)
            .map_err(|error| StoreError::permanent(format!("reader pool: {error}")))?
            .max_size(options.readers.max(1))
            .post_create(deadpool_sqlite::Hook::async_fn(move |connection, _| {
                Box::pin(async move {
                    connection
                        .interact(move |connection| {
                            connection.busy_timeout(std::time::Duration::from_secs(5))?;
                            connection.pragma_update(None, "query_only", true)?;
                            connection.pragma_update(None, "cache_size", cache_size)
                        })
                        .await
                        .map_err(|error| {
                            deadpool_sqlite::HookError::Message(error.to_string().into())
                        })?
                        .map_err(deadpool_sqlite::HookError::Backend)
                })
            }))
            .build()
            .map_err(|error| StoreError::permanent(format!("reader pool: {error}")))?;
        let heap = HeapShare::take(&connection, options.heap_budget_bytes())?;
        Ok(Self {
            inner: Arc::new(Inner {
                _heap: heap,
                writer: Writer::start(connection)?,
                readers,
                options,
                path: path.to_owned(),
            }),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` in the writer's next batch; answers once the batch is on disk.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner.writer.write(work).await
    }

    /// Runs `work` on a read-only connection from the pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self
            .inner
            .readers
            .get()
            .await
            .map_err(|error| StoreError::transient(format!("reader pool: {error}")))?;
        // Busy timeout, `query_only` and the page cache cap were set when the pool
        // opened the connection (its post-create hook).
        connection
            .interact(move |connection| work(connection))
            .await
            .map_err(|error| StoreError::transient(format!("reader: {error}")))?
    }
}

/// SQLite's soft heap limit as the process had it before the first store opened, and
/// the budgets of the stores open now; `None` while no store is open.
static SOFT_HEAP: std::sync::Mutex<Option<(i64, i64)>> = std::sync::Mutex::new(None);

/// One open store's share of SQLite's process-wide soft heap limit
/// (`PRAGMA soft_heap_limit`). While stores are open the limit is what the process had
/// before the first one opened plus their budgets (from "no limit", 0, it is their
/// budgets alone); when the last one closes, the process's own value is restored
/// exactly. An embedder that sets its own limit sets it before opening a store.
/// SQLite caps the soft limit at a hard heap limit when one is set.
struct HeapShare {
    bytes: i64,
}

impl HeapShare {
    /// Adds `bytes` to the limit, through `connection` (any connection: the limit is
    /// the process's).
    fn take(connection: &Connection, bytes: u64) -> Result<Self, StoreError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let mut shares = SOFT_HEAP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (original, total) = match *shares {
            Some(shares) => shares,
            None => (
                connection
                    .pragma_query_value(None, "soft_heap_limit", |row| row.get(0))
                    .map_err(sql)?,
                0,
            ),
        };
        let total = total.saturating_add(bytes);
        set_soft_heap_limit(connection, soft_heap_limit(original, total))?;
        *shares = Some((original, total));
        Ok(Self { bytes })
    }
}

impl Drop for HeapShare {
    fn drop(&mut self) {
        let mut shares = SOFT_HEAP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((original, total)) = *shares else {
            return;
        };
        let total = total.saturating_sub(self.bytes).max(0);
        // Best effort: if no connection can be opened, the limit stays higher than
        // needed, never lower. The bookkeeping drops this share either way (keeping
        // the process's own limit), so the next store's write sets the limit right and
        // the last close can still restore it.
        let written = Connection::open_in_memory()
            .map_err(sql)
            .and_then(|connection| {
                set_soft_heap_limit(&connection, soft_heap_limit(original, total))
            })
            .is_ok();
        *shares = (total > 0 || !written).then_some((original, total));
    }
}

/// The limit with the stores' `total` on top of the process's `original` (0: none);
/// with no store open, `original` itself.
fn soft_heap_limit(original: i64, total: i64) -> i64 {
    if total == 0 {
        original
    } else {
        original.max(0).saturating_add(total)
    }
}

fn set_soft_heap_limit(connection: &Connection, bytes: i64) -> Result<(), StoreError> {
    connection
        .pragma_update(None, "soft_heap_limit", bytes)
        .map_err(sql)
}

/// Creates `path` with mode 0600 when it does not exist (the store holds tenants' data).
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::permanent(format!(
            "creating {}: {error}",
            path.display()
        ))),
    }
}

fn migrate(connection: &Connection) -> Result<(), StoreError> {
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > supported {
        return Err(StoreError::permanent(format!(
            "store schema version {version} is newer than this build's {supported}"
        )));
    }
    for (index, (name, migration)) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let next = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {next}; COMMIT;"
            ))
            .map_err(|error| {
                let _ = connection.execute_batch("ROLLBACK");
                StoreError::new(
                    StoreErrorKind::Permanent,
                    format!("migration {name}: {error}"),
                )
            })?;
    }
    Ok(())
}

/// The schema version this build writes.
#[must_use]
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// One optional row.
fn optional<T>(result: rusqlite::Result<T>) -> Result<Option<T>, StoreError> {
    result.optional().map_err(sql)
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    fluxo_store::now_ms()
}

#[cfg(test)]
mod tests;
