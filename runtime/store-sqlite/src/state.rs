//! Durable state: reads for runs (the store port), and the ledger's writes with the
//! tenant's cap checked after the changes, inside the commit's transaction. A per-tenant
//! byte counter (`state_usage`) is kept in the same transaction as every write, so no
//! read scans a tenant's rows; a tenant's expired rows are swept before its changes.

use fluxo_core::{ContactId, Effect, RunError};
use fluxo_store::{StateKey, StateStore, StateUsage, StoreError, StoreFuture};
use rusqlite::{Connection, params};

use crate::writer::sql;
use crate::{SqliteOptions, SqliteStore, now_ms, optional};

fn columns(key: &StateKey) -> (&str, &'static str, &str, &str) {
    match &key.contact {
        Some(contact) => (key.tenant.as_str(), "contact", contact.as_str(), &key.key),
        None => (key.tenant.as_str(), "tenant", "", &key.key),
    }
}

fn bytes(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Removes `tenant`'s expired rows and takes them off its counter.
fn sweep(connection: &Connection, tenant: &str, now: i64) -> Result<(), StoreError> {
    let expired: i64 = connection
        .query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM state
             WHERE tenant = ?1 AND expires_ms IS NOT NULL AND expires_ms <= ?2",
            params![tenant, now],
            |row| row.get(0),
        )
        .map_err(sql)?;
    if expired > 0 {
        connection
            .execute(
                "DELETE FROM state WHERE tenant = ?1 AND expires_ms IS NOT NULL AND expires_ms <= ?2",
                params![tenant, now],
            )
            .map_err(sql)?;
        connection
            .execute(
                "UPDATE state_usage SET bytes = MAX(0, bytes - ?2) WHERE tenant = ?1",
                params![tenant, expired],
            )
            .map_err(sql)?;
    }
    Ok(())
}

/// Sweeps expired rows of up to `tenants` tenants (the maintenance loop).
pub(crate) fn sweep_some(connection: &Connection, tenants: u32) -> Result<(), StoreError> {
    let now = now_ms();
    let due: Vec<String> = {
        let mut statement = connection
            .prepare_cached(
                "SELECT DISTINCT tenant FROM state WHERE expires_ms IS NOT NULL AND expires_ms <= ?1
                 LIMIT ?2",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![now, tenants], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    for tenant in due {
        sweep(connection, &tenant, now)?;
    }
    Ok(())
}

fn existing(connection: &Connection, key: &StateKey) -> Result<i64, StoreError> {
    let (tenant, scope, contact, name) = columns(key);
    Ok(optional(connection.query_row(
        "SELECT LENGTH(CAST(key AS BLOB)) + LENGTH(value) FROM state
         WHERE tenant = ?1 AND scope = ?2 AND contact = ?3 AND key = ?4",
        params![tenant, scope, contact, name],
        |row| row.get::<_, i64>(0),
    ))?
    .unwrap_or(0))
}

/// Applies the state changes among `effects`; `Some(refusal)` when the tenant would pass
/// its cap (the caller rolls the transaction back to before the effects).
pub(crate) fn apply(
    connection: &Connection,
    tenant: &str,
    contact: Option<&ContactId>,
    effects: &[Effect],
    options: &SqliteOptions,
    now: i64,
) -> Result<Option<RunError>, StoreError> {
    let tenant_id = tenant
        .parse()
        .map_err(|error| StoreError::corrupt("tenant", error))?;
    let mut touched = false;
    for effect in effects {
        let (scope, key) = match effect {
            Effect::SetState { scope, key, .. } | Effect::DeleteState { scope, key } => {
                (*scope, key)
            }
            _ => continue,
        };
        if !touched {
            sweep(connection, tenant, now)?;
            touched = true;
        }
        let Some(store_key) = StateKey::of(&tenant_id, contact, scope, key) else {
            continue;
        };
        let before = existing(connection, &store_key)?;
        let (tenant_col, scope_col, contact_col, key_col) = columns(&store_key);
        let after = match effect {
            Effect::SetState {
                value, ttl_seconds, ..
            } => {
                let expires = ttl_seconds.map(|s| now.saturating_add(i64::from(s) * 1000));
                connection
                    .execute(
                        "INSERT INTO state (tenant, scope, contact, key, value, expires_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (tenant, scope, contact, key)
                         DO UPDATE SET value = ?5, expires_ms = ?6",
                        params![
                            tenant_col,
                            scope_col,
                            contact_col,
                            key_col,
                            value.as_slice(),
                            expires
                        ],
                    )
                    .map_err(sql)?;
                bytes(key.len() + value.len())
            }
            _ => {
                connection
                    .execute(
                        "DELETE FROM state WHERE tenant = ?1 AND scope = ?2 AND contact = ?3 AND key = ?4",
                        params![tenant_col, scope_col, contact_col, key_col],
                    )
                    .map_err(sql)?;
                0
            }
        };
        connection
            .execute(
                "INSERT INTO state_usage (tenant, bytes) VALUES (?1, MAX(0, ?2))
                 ON CONFLICT (tenant) DO UPDATE SET bytes = MAX(0, bytes + ?2)",
                params![tenant, after - before],
            )
            .map_err(sql)?;
    }
    if !touched {
        return Ok(None);
    }
    let total: i64 = connection
        .query_row(
            "SELECT bytes FROM state_usage WHERE tenant = ?1",
            params![tenant],
            |row| row.get(0),
        )
        .map_err(sql)?;
    let total = u64::try_from(total).unwrap_or(0);
    if total > options.tenant_state_bytes {
        return Ok(Some(crate::ledger::state_cap_refusal(
            tenant,
            total,
            options.tenant_state_bytes,
        )));
    }
    Ok(None)
}

impl StateStore for SqliteStore {
    fn state<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = key.clone();
        Box::pin(self.read(move |connection| {
            let (tenant, scope, contact, name) = columns(&key);
            optional(connection.query_row(
                "SELECT value FROM state WHERE tenant = ?1 AND scope = ?2 AND contact = ?3
                   AND key = ?4 AND (expires_ms IS NULL OR expires_ms > ?5)",
                params![tenant, scope, contact, name, now_ms()],
                |row| row.get::<_, Vec<u8>>(0),
            ))
        }))
    }

    fn state_usage<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, StateUsage> {
        let key = key.clone();
        let limit = self.inner.options.tenant_state_bytes;
        Box::pin(self.read(move |connection| {
            let total: i64 = optional(connection.query_row(
                "SELECT bytes FROM state_usage WHERE tenant = ?1",
                params![key.tenant.as_str()],
                |row| row.get(0),
            ))?
            .unwrap_or(0);
            let key_bytes = existing(connection, &key)?;
            Ok(StateUsage {
                bytes: u64::try_from(total).unwrap_or(0),
                limit,
                key_bytes: u64::try_from(key_bytes).unwrap_or(0),
            })
        }))
    }
}
