//! Tenants, their API tokens (hashed), actions with their versions, and secrets.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{SqliteStore, StoreError, now_ms};

/// An action as listed: its current settings and active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    /// The action's name, unique per tenant.
    pub name: String,
    /// What it does, for people.
    pub description: String,
    /// Whether new runs are accepted.
    pub enabled: bool,
    /// The version new runs use.
    pub active_version: u32,
    /// When it was first uploaded (ms since the epoch).
    pub created_ms: i64,
    /// Limits tighter than the host's, for this action's runs.
    pub limits: crate::config::LimitOverrides,
}

/// One uploaded version of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRecord {
    /// 1, 2, … per action.
    pub version: u32,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Component size in bytes.
    pub size: u64,
    /// What the component imports: the action's permissions.
    pub imports: Vec<String>,
    /// Upload time (ms since the epoch).
    pub created_ms: i64,
}

/// Catalog queries over the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    store: SqliteStore,
}

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    let imports: String = row.get(3)?;
    Ok(VersionRecord {
        version: row.get(0)?,
        hash: row.get(1)?,
        size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        imports: serde_json::from_str(&imports).unwrap_or_default(),
        created_ms: row.get(4)?,
    })
}

fn action_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRecord> {
    let limits: String = row.get(5)?;
    Ok(ActionRecord {
        name: row.get(0)?,
        description: row.get(1)?,
        enabled: row.get(2)?,
        active_version: row.get(3)?,
        created_ms: row.get(4)?,
        limits: serde_json::from_str(&limits).unwrap_or_default(),
    })
}

impl SqliteCatalog {
    /// The catalog in `store`.
    #[must_use]
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    /// Creates a tenant; `false` when it already exists.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        let tenant = tenant.to_owned();
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "INSERT INTO tenants (id, created_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![tenant, now_ms()],
                )? == 1)
            })
            .await
    }

    /// Whether the tenant exists.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        let tenant = tenant.to_owned();
        self.store
            .with(move |c| {
                Ok(c.query_row(
                    "SELECT 1 FROM tenants WHERE id = ?1",
                    params![tenant],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
            })
            .await
    }

    /// Stores a token's hash for `tenant`.
    ///
    /// # Errors
    /// When the store fails or the tenant does not exist.
    pub async fn add_token(&self, tenant: &str, hash: &str) -> Result<(), StoreError> {
        let (tenant, hash) = (tenant.to_owned(), hash.to_owned());
        self.store
            .with(move |c| {
                c.execute(
                    "INSERT INTO tokens (hash, tenant, created_ms) VALUES (?1, ?2, ?3)",
                    params![hash, tenant, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// The tenant a token hash belongs to.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn token_tenant(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_owned();
        self.store
            .with(move |c| {
                Ok(c.query_row(
                    "SELECT tenant FROM tokens WHERE hash = ?1",
                    params![hash],
                    |row| row.get(0),
                )
                .optional()?)
            })
            .await
    }

    /// Records a new version of `name` (creating the action on its first upload) and
    /// makes it active; returns the version number.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn add_version(
        &self,
        tenant: &str,
        name: &str,
        description: Option<&str>,
        hash: &str,
        size: u64,
        imports: &[String],
    ) -> Result<u32, StoreError> {
        let (tenant, name, hash) = (tenant.to_owned(), name.to_owned(), hash.to_owned());
        let description = description.map(str::to_owned);
        let imports = serde_json::to_string(imports).unwrap_or_else(|_| "[]".to_owned());
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.store
            .with(move |c| {
                let now = now_ms();
                let transaction = c.transaction()?;
                let next: u32 = transaction.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |row| row.get(0),
                )?;
                transaction.execute(
                    "INSERT INTO actions (tenant, name, description, enabled, active_version, created_ms)
                     VALUES (?1, ?2, COALESCE(?3, ''), 1, ?4, ?5)
                     ON CONFLICT (tenant, name) DO UPDATE SET active_version = ?4,
                         description = COALESCE(?3, description)",
                    params![tenant, name, description, next, now],
                )?;
                transaction.execute(
                    "INSERT INTO versions (tenant, name, version, hash, size, imports, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![tenant, name, next, hash, size, imports, now],
                )?;
                transaction.commit()?;
                Ok(next)
            })
            .await
    }

    /// The tenant's actions, by name.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn actions(&self, tenant: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let tenant = tenant.to_owned();
        self.store
            .with(move |c| {
                let mut statement = c.prepare(
                    "SELECT name, description, enabled, active_version, created_ms, limits FROM actions
                     WHERE tenant = ?1 ORDER BY name",
                )?;
                let rows = statement.query_map(params![tenant], action_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// One action.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn action(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.query_row(
                    "SELECT name, description, enabled, active_version, created_ms, limits FROM actions
                     WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    action_row,
                )
                .optional()?)
            })
            .await
    }

    /// The action's versions, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                let mut statement = c.prepare(
                    "SELECT version, hash, size, imports, created_ms FROM versions
                     WHERE tenant = ?1 AND name = ?2 ORDER BY version",
                )?;
                let rows = statement.query_map(params![tenant, name], version_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// One version.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.query_row(
                    "SELECT version, hash, size, imports, created_ms FROM versions
                     WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                    params![tenant, name, version],
                    version_row,
                )
                .optional()?)
            })
            .await
    }

    /// Sets `enabled`; `false` when there is no such action.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        name: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "UPDATE actions SET enabled = ?3 WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name, enabled],
                )? == 1)
            })
            .await
    }

    /// Sets the action's limit overrides; `false` when there is no such action.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn set_limits(
        &self,
        tenant: &str,
        name: &str,
        limits: &crate::config::LimitOverrides,
    ) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        let limits = serde_json::to_string(limits).unwrap_or_else(|_| "{}".to_owned());
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "UPDATE actions SET limits = ?3 WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name, limits],
                )? == 1)
            })
            .await
    }

    /// Makes `version` the active one; `false` when it does not exist.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn activate(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "UPDATE actions SET active_version = ?3 WHERE tenant = ?1 AND name = ?2
                     AND EXISTS (SELECT 1 FROM versions WHERE tenant = ?1 AND name = ?2 AND version = ?3)",
                    params![tenant, name, version],
                )? == 1)
            })
            .await
    }

    /// Deletes the action and its versions; `false` when there is no such action.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn delete_action(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "DELETE FROM actions WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )? == 1)
            })
            .await
    }

    /// Sets a secret.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn set_secret(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let (tenant, name, value) = (tenant.to_owned(), name.to_owned(), value.to_owned());
        self.store
            .with(move |c| {
                c.execute(
                    "INSERT INTO secrets (tenant, name, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, name) DO UPDATE SET value = ?3",
                    params![tenant, name, value],
                )?;
                Ok(())
            })
            .await
    }

    /// Deletes a secret; `false` when absent.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.store
            .with(move |c| {
                Ok(c.execute(
                    "DELETE FROM secrets WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )? == 1)
            })
            .await
    }

    /// The tenant's secrets, by name.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn secrets(
        &self,
        tenant: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let tenant = tenant.to_owned();
        self.store
            .with(move |c| {
                let mut statement =
                    c.prepare("SELECT name, value FROM secrets WHERE tenant = ?1")?;
                let rows =
                    statement.query_map(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}

impl crate::host::secrets::SecretSource for SqliteCatalog {
    fn secrets<'a>(
        &'a self,
        tenant: &'a str,
    ) -> crate::host::BoxFuture<
        'a,
        Result<std::collections::BTreeMap<String, String>, crate::host::BackendError>,
    > {
        Box::pin(async move {
            SqliteCatalog::secrets(self, tenant)
                .await
                .map_err(Into::into)
        })
    }
}
