//! Run records: accepted runs and their reports.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{SqliteStore, StoreError, now_ms};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// It succeeded and its effects were applied.
    Succeeded,
    /// It failed; the report says why.
    Failed,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Queued,
        }
    }

    /// Whether the run is over.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The action's name.
    pub action: String,
    /// The version it is pinned to.
    pub version: u32,
    /// Where it is.
    pub state: RunState,
    /// The error kind when it failed.
    pub error_kind: Option<String>,
    /// The event it runs for.
    pub event: serde_json::Value,
    /// The report, once finished.
    pub report: Option<serde_json::Value>,
    /// When it was accepted (ms since the epoch).
    pub created_ms: i64,
    /// When a worker took it.
    pub started_ms: Option<i64>,
    /// When it finished.
    pub finished_ms: Option<i64>,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this action's runs.
    pub action: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// At most this many (newest first); 50 when absent, 500 at most.
    pub limit: Option<u32>,
}

const COLUMNS: &str =
    "id, action, version, state, error_kind, event, report, created_ms, started_ms, finished_ms";

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let event: String = row.get(5)?;
    let report: Option<String> = row.get(6)?;
    let state: String = row.get(3)?;
    Ok(RunRecord {
        id: row.get(0)?,
        action: row.get(1)?,
        version: row.get(2)?,
        state: RunState::parse(&state),
        error_kind: row.get(4)?,
        event: serde_json::from_str(&event).unwrap_or(serde_json::Value::Null),
        report: report.and_then(|text| serde_json::from_str(&text).ok()),
        created_ms: row.get(7)?,
        started_ms: row.get(8)?,
        finished_ms: row.get(9)?,
    })
}

/// Run queries over the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteRuns {
    store: SqliteStore,
}

impl SqliteRuns {
    /// The runs in `store`.
    #[must_use]
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    /// Records an accepted run.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn insert(
        &self,
        id: &str,
        tenant: &str,
        action: &str,
        version: u32,
        event: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (id, tenant, action, event) = (
            id.to_owned(),
            tenant.to_owned(),
            action.to_owned(),
            event.to_string(),
        );
        self.store
            .with(move |c| {
                c.execute(
                    "INSERT INTO runs (id, tenant, action, version, state, event, created_ms)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)",
                    params![id, tenant, action, version, event, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// Marks a run as taken by a worker.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn start(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.store
            .with(move |c| {
                c.execute(
                    "UPDATE runs SET state = 'running', started_ms = ?2 WHERE id = ?1",
                    params![id, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// Stores a finished run's report.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn finish(
        &self,
        id: &str,
        state: RunState,
        error_kind: Option<&str>,
        report: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (id, error_kind, report) = (
            id.to_owned(),
            error_kind.map(str::to_owned),
            report.to_string(),
        );
        self.store
            .with(move |c| {
                c.execute(
                    "UPDATE runs SET state = ?2, error_kind = ?3, report = ?4, finished_ms = ?5 WHERE id = ?1",
                    params![id, state.as_str(), error_kind, report, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// One of the tenant's runs.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.store
            .with(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {COLUMNS} FROM runs WHERE tenant = ?1 AND id = ?2"),
                    params![tenant, id],
                    run_row,
                )
                .optional()?)
            })
            .await
    }

    /// The tenant's runs, newest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list(
        &self,
        tenant: &str,
        filter: &RunFilter,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let tenant = tenant.to_owned();
        let action = filter.action.clone();
        let state = filter.state.map(RunState::as_str);
        let limit = filter.limit.unwrap_or(50).min(500);
        self.store
            .with(move |c| {
                let mut statement = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM runs WHERE tenant = ?1
                     AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR state = ?3)
                     ORDER BY created_ms DESC, id DESC LIMIT ?4"
                ))?;
                let rows = statement.query_map(params![tenant, action, state, limit], run_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// Counts runs by state (for metrics).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn count_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.store
            .with(|c| {
                let mut statement =
                    c.prepare("SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}
