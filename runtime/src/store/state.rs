//! Durable action state in SQLite: values with expiry, and a cap on each tenant's total.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, StoreError, now_ms};
use crate::host::state::{StateChange, StateKey, StateStore, StateUsage};
use crate::host::{BackendError, BoxFuture};

/// The default cap on one tenant's stored bytes (keys plus values).
pub const DEFAULT_TENANT_STATE_BYTES: u64 = 16 << 20;

/// [`StateStore`] backed by the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteState {
    store: SqliteStore,
    tenant_limit: u64,
}

impl SqliteState {
    /// State in `store`, each tenant capped at `tenant_limit` bytes.
    #[must_use]
    pub fn new(store: SqliteStore, tenant_limit: u64) -> Self {
        Self {
            store,
            tenant_limit,
        }
    }
}

fn contact_column(key: &StateKey) -> &str {
    // Tenant-wide keys use the empty contact id (contact ids are never empty).
    key.contact.as_deref().unwrap_or("")
}

fn tenant_bytes(
    connection: &rusqlite::Connection,
    tenant: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let bytes: i64 = connection.query_row(
        "SELECT COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM state
         WHERE tenant = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
        params![tenant, now],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

impl StateStore for SqliteState {
    fn get<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        let key = key.clone();
        Box::pin(async move {
            self.store
                .with(move |connection| {
                    Ok(connection
                        .query_row(
                            "SELECT value FROM state WHERE tenant = ?1 AND contact = ?2 AND key = ?3
                             AND (expires_ms IS NULL OR expires_ms > ?4)",
                            params![key.tenant, contact_column(&key), key.key, now_ms()],
                            |row| row.get::<_, Vec<u8>>(0),
                        )
                        .optional()?)
                })
                .await
                .map_err(BackendError::from)
        })
    }

    fn usage<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<StateUsage, BackendError>> {
        let tenant = tenant.to_owned();
        let limit = self.tenant_limit;
        Box::pin(async move {
            let bytes = self
                .store
                .with(move |connection| tenant_bytes(connection, &tenant, now_ms()))
                .await
                .map_err(BackendError::from)?;
            Ok(StateUsage { bytes, limit })
        })
    }

    fn apply<'a>(&'a self, changes: &'a [StateChange]) -> BoxFuture<'a, Result<(), BackendError>> {
        let changes = changes.to_vec();
        let limit = self.tenant_limit;
        Box::pin(async move {
            let over = self
                .store
                .with(move |connection| {
                    let now = now_ms();
                    let transaction = connection.transaction()?;
                    transaction.execute(
                        "DELETE FROM state WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                        params![now],
                    )?;
                    let mut tenants = Vec::new();
                    for change in &changes {
                        match change {
                            StateChange::Set { key, value, ttl } => {
                                let expires = ttl.map(|ttl| now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)));
                                transaction.execute(
                                    "INSERT INTO state (tenant, contact, key, value, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                                     ON CONFLICT (tenant, contact, key) DO UPDATE SET value = ?4, expires_ms = ?5",
                                    params![key.tenant, contact_column(key), key.key, value, expires],
                                )?;
                                if !tenants.contains(&key.tenant) {
                                    tenants.push(key.tenant.clone());
                                }
                            }
                            StateChange::Delete { key } => {
                                transaction.execute(
                                    "DELETE FROM state WHERE tenant = ?1 AND contact = ?2 AND key = ?3",
                                    params![key.tenant, contact_column(key), key.key],
                                )?;
                            }
                        }
                    }
                    for tenant in &tenants {
                        let bytes = tenant_bytes(&transaction, tenant, now)?;
                        if bytes > limit {
                            // Dropping the transaction rolls it back: nothing is applied.
                            return Ok(Some((tenant.clone(), bytes)));
                        }
                    }
                    transaction.commit()?;
                    Ok(None)
                })
                .await
                .map_err(BackendError::from)?;
            match over {
                Some((tenant, bytes)) => Err(BackendError(format!(
                    "tenant {tenant} would store {bytes} bytes of state, over its {limit}-byte cap"
                ))),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(tenant: &str, contact: Option<&str>, key: &str) -> StateKey {
        StateKey {
            tenant: tenant.into(),
            contact: contact.map(Into::into),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn values_survive_reopening_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxo.db");
        let state = SqliteState::new(SqliteStore::open(&path).unwrap(), 1 << 20);
        state
            .apply(&[
                StateChange::Set {
                    key: key("acme", None, "a"),
                    value: b"1".to_vec(),
                    ttl: None,
                },
                StateChange::Set {
                    key: key("acme", Some("c1"), "a"),
                    value: b"2".to_vec(),
                    ttl: None,
                },
                StateChange::Set {
                    key: key("acme", None, "gone"),
                    value: b"x".to_vec(),
                    ttl: Some(Duration::ZERO),
                },
            ])
            .await
            .unwrap();
        drop(state);
        let state = SqliteState::new(SqliteStore::open(&path).unwrap(), 1 << 20);
        assert_eq!(
            state.get(&key("acme", None, "a")).await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            state.get(&key("acme", Some("c1"), "a")).await.unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(state.get(&key("acme", None, "gone")).await.unwrap(), None);
        assert_eq!(state.get(&key("other", None, "a")).await.unwrap(), None);
        assert_eq!(state.usage("acme").await.unwrap().bytes, 4);
    }

    #[tokio::test]
    async fn a_tenant_over_its_cap_gets_nothing_applied() {
        let state = SqliteState::new(SqliteStore::open_in_memory().unwrap(), 100);
        state
            .apply(&[StateChange::Set {
                key: key("acme", None, "k"),
                value: vec![0; 50],
                ttl: None,
            }])
            .await
            .unwrap();
        let error = state
            .apply(&[
                StateChange::Delete {
                    key: key("acme", None, "k"),
                },
                StateChange::Set {
                    key: key("acme", None, "big"),
                    value: vec![0; 200],
                    ttl: None,
                },
            ])
            .await
            .unwrap_err();
        assert!(error.0.contains("cap"), "{error}");
        assert_eq!(
            state.get(&key("acme", None, "k")).await.unwrap(),
            Some(vec![0; 50])
        );
        // Another tenant is not affected.
        state
            .apply(&[StateChange::Set {
                key: key("other", None, "k"),
                value: vec![0; 90],
                ttl: None,
            }])
            .await
            .unwrap();
    }
}
