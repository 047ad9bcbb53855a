//! The persistence port of the server: what the registry, the scheduler and the API need
//! from a store. The embedded SQLite backend ([`SqliteCatalog`], [`SqliteRuns`])
//! implements it; a distributed backend (PostgreSQL) implements the same traits.

use std::collections::BTreeMap;

use super::StoreError;
use super::catalog::{ActionRecord, SqliteCatalog, VersionRecord};
use super::runs::{RunFilter, RunRecord, RunState, SqliteRuns};
use crate::config::LimitOverrides;
use crate::host::BoxFuture;

type Answer<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Tenants, token hashes, actions and versions, secrets.
pub trait CatalogStore: Send + Sync + 'static {
    /// Creates a tenant; `false` when it exists.
    fn create_tenant<'a>(&'a self, tenant: &'a str) -> Answer<'a, bool>;
    /// Whether the tenant exists.
    fn tenant_exists<'a>(&'a self, tenant: &'a str) -> Answer<'a, bool>;
    /// Stores a token's hash for a tenant.
    fn add_token<'a>(&'a self, tenant: &'a str, hash: &'a str) -> Answer<'a, ()>;
    /// The tenant of a token hash.
    fn token_tenant<'a>(&'a self, hash: &'a str) -> Answer<'a, Option<String>>;
    /// Records a new active version; returns its number.
    fn add_version<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        description: Option<&'a str>,
        hash: &'a str,
        size: u64,
        imports: &'a [String],
    ) -> Answer<'a, u32>;
    /// The tenant's actions.
    fn actions<'a>(&'a self, tenant: &'a str) -> Answer<'a, Vec<ActionRecord>>;
    /// One action.
    fn action<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, Option<ActionRecord>>;
    /// An action's versions.
    fn versions<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, Vec<VersionRecord>>;
    /// One version.
    fn version<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        version: u32,
    ) -> Answer<'a, Option<VersionRecord>>;
    /// Enables or disables; `false` when absent.
    fn set_enabled<'a>(&'a self, tenant: &'a str, name: &'a str, enabled: bool)
    -> Answer<'a, bool>;
    /// Sets limit overrides; `false` when absent.
    fn set_limits<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        limits: &'a LimitOverrides,
    ) -> Answer<'a, bool>;
    /// Activates a version; `false` when absent.
    fn activate<'a>(&'a self, tenant: &'a str, name: &'a str, version: u32) -> Answer<'a, bool>;
    /// Deletes an action; `false` when absent.
    fn delete_action<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, bool>;
    /// Sets a secret.
    fn set_secret<'a>(&'a self, tenant: &'a str, name: &'a str, value: &'a str) -> Answer<'a, ()>;
    /// Deletes a secret; `false` when absent.
    fn delete_secret<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, bool>;
    /// The tenant's secrets.
    fn secrets<'a>(&'a self, tenant: &'a str) -> Answer<'a, BTreeMap<String, String>>;
}

/// Run records.
pub trait RunStore: Send + Sync + 'static {
    /// Records an accepted run.
    fn insert<'a>(
        &'a self,
        id: &'a str,
        tenant: &'a str,
        action: &'a str,
        version: u32,
        event: &'a serde_json::Value,
    ) -> Answer<'a, ()>;
    /// Marks a run as taken.
    fn start<'a>(&'a self, id: &'a str) -> Answer<'a, ()>;
    /// Stores a finished run.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        state: RunState,
        error_kind: Option<&'a str>,
        report: &'a serde_json::Value,
    ) -> Answer<'a, ()>;
    /// One of the tenant's runs.
    fn get<'a>(&'a self, tenant: &'a str, id: &'a str) -> Answer<'a, Option<RunRecord>>;
    /// The tenant's runs, newest first.
    fn list<'a>(&'a self, tenant: &'a str, filter: &'a RunFilter) -> Answer<'a, Vec<RunRecord>>;
    /// Counts by state.
    fn count_by_state(&self) -> Answer<'_, Vec<(String, i64)>>;
}

impl CatalogStore for SqliteCatalog {
    fn create_tenant<'a>(&'a self, tenant: &'a str) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::create_tenant(self, tenant))
    }
    fn tenant_exists<'a>(&'a self, tenant: &'a str) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::tenant_exists(self, tenant))
    }
    fn add_token<'a>(&'a self, tenant: &'a str, hash: &'a str) -> Answer<'a, ()> {
        Box::pin(SqliteCatalog::add_token(self, tenant, hash))
    }
    fn token_tenant<'a>(&'a self, hash: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(SqliteCatalog::token_tenant(self, hash))
    }
    fn add_version<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        description: Option<&'a str>,
        hash: &'a str,
        size: u64,
        imports: &'a [String],
    ) -> Answer<'a, u32> {
        Box::pin(SqliteCatalog::add_version(
            self,
            tenant,
            name,
            description,
            hash,
            size,
            imports,
        ))
    }
    fn actions<'a>(&'a self, tenant: &'a str) -> Answer<'a, Vec<ActionRecord>> {
        Box::pin(SqliteCatalog::actions(self, tenant))
    }
    fn action<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, Option<ActionRecord>> {
        Box::pin(SqliteCatalog::action(self, tenant, name))
    }
    fn versions<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, Vec<VersionRecord>> {
        Box::pin(SqliteCatalog::versions(self, tenant, name))
    }
    fn version<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        version: u32,
    ) -> Answer<'a, Option<VersionRecord>> {
        Box::pin(SqliteCatalog::version(self, tenant, name, version))
    }
    fn set_enabled<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        enabled: bool,
    ) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::set_enabled(self, tenant, name, enabled))
    }
    fn set_limits<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        limits: &'a LimitOverrides,
    ) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::set_limits(self, tenant, name, limits))
    }
    fn activate<'a>(&'a self, tenant: &'a str, name: &'a str, version: u32) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::activate(self, tenant, name, version))
    }
    fn delete_action<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::delete_action(self, tenant, name))
    }
    fn set_secret<'a>(&'a self, tenant: &'a str, name: &'a str, value: &'a str) -> Answer<'a, ()> {
        Box::pin(SqliteCatalog::set_secret(self, tenant, name, value))
    }
    fn delete_secret<'a>(&'a self, tenant: &'a str, name: &'a str) -> Answer<'a, bool> {
        Box::pin(SqliteCatalog::delete_secret(self, tenant, name))
    }
    fn secrets<'a>(&'a self, tenant: &'a str) -> Answer<'a, BTreeMap<String, String>> {
        Box::pin(SqliteCatalog::secrets(self, tenant))
    }
}

impl RunStore for SqliteRuns {
    fn insert<'a>(
        &'a self,
        id: &'a str,
        tenant: &'a str,
        action: &'a str,
        version: u32,
        event: &'a serde_json::Value,
    ) -> Answer<'a, ()> {
        Box::pin(SqliteRuns::insert(self, id, tenant, action, version, event))
    }
    fn start<'a>(&'a self, id: &'a str) -> Answer<'a, ()> {
        Box::pin(SqliteRuns::start(self, id))
    }
    fn finish<'a>(
        &'a self,
        id: &'a str,
        state: RunState,
        error_kind: Option<&'a str>,
        report: &'a serde_json::Value,
    ) -> Answer<'a, ()> {
        Box::pin(SqliteRuns::finish(self, id, state, error_kind, report))
    }
    fn get<'a>(&'a self, tenant: &'a str, id: &'a str) -> Answer<'a, Option<RunRecord>> {
        Box::pin(SqliteRuns::get(self, tenant, id))
    }
    fn list<'a>(&'a self, tenant: &'a str, filter: &'a RunFilter) -> Answer<'a, Vec<RunRecord>> {
        Box::pin(SqliteRuns::list(self, tenant, filter))
    }
    fn count_by_state(&self) -> Answer<'_, Vec<(String, i64)>> {
        Box::pin(SqliteRuns::count_by_state(self))
    }
}
