//! The persistence port's embedded backend: one SQLite database in WAL mode with
//! `synchronous=FULL`, schema migrations versioned in code.
//!
//! Calls run on tokio's blocking pool; the connection is shared behind a mutex (SQLite
//! serializes writers anyway). What lives here: the e-mail outbox and action state.

pub mod catalog;
pub mod contacts;
pub mod outbox;
pub mod port;
pub mod runs;
pub mod state;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

/// A failure of the embedded store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer Fluxo.
    #[error("store schema version {found} is newer than this build's {supported}")]
    TooNew {
        /// The version in the file.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A blocking task could not complete.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<StoreError> for crate::host::BackendError {
    fn from(error: StoreError) -> Self {
        Self(error.to_string())
    }
}

/// Migrations, in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the e-mail outbox and action state.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        message_id TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
    CREATE TABLE state (
        tenant TEXT NOT NULL,
        contact TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_ms INTEGER,
        PRIMARY KEY (tenant, contact, key)
    );",
    // 2: tenants, tokens, actions and their versions, secrets, runs.
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE actions (
        tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        active_version INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE versions (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        imports TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name, version),
        FOREIGN KEY (tenant, name) REFERENCES actions (tenant, name) ON DELETE CASCADE
    );
    CREATE TABLE secrets (
        tenant TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        action TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
        event TEXT NOT NULL,
        report TEXT,
        error_kind TEXT,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        finished_ms INTEGER
    );
    CREATE INDEX runs_by_tenant ON runs (tenant, created_ms);",
    // 3: the embedded contact store.
    "CREATE TABLE contacts (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        record TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    );",
    // 4: per-action limit overrides.
    "ALTER TABLE actions ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';",
];

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::setup(Connection::open(path)?)
    }

    /// A private in-memory database (for tests and one-off runs).
    ///
    /// # Errors
    /// When SQLite cannot start.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(connection: Connection) -> Result<Self, StoreError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&connection)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` with the connection on the blocking pool.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Task(error.to_string()))?
    }
}

fn migrate(connection: &Connection) -> Result<(), StoreError> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let next = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        connection.execute_batch(&format!(
            "BEGIN; {migration}; PRAGMA user_version = {next}; COMMIT;"
        ))?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxo.db");
        drop(SqliteStore::open(&path).unwrap());
        drop(SqliteStore::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
