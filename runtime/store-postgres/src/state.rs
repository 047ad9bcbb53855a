//! Durable state: reads for runs, and the ledger's writes with the tenant's cap checked
//! after the changes inside the commit's transaction. The tenant's `state_usage` row is
//! locked first, so concurrent commits of one tenant (on any node) count in turn.

use fluxo_core::{ContactId, Effect, RunError};
use fluxo_store::{StateKey, StateStore, StateUsage, StoreError, StoreFuture};

use crate::{PostgresOptions, PostgresStore, Tx, now_ms, pg};

fn columns(key: &StateKey) -> (String, &'static str, String, String) {
    match &key.contact {
        Some(contact) => (
            key.tenant.to_string(),
            "contact",
            contact.to_string(),
            key.key.clone(),
        ),
        None => (
            key.tenant.to_string(),
            "tenant",
            String::new(),
            key.key.clone(),
        ),
    }
}

fn bytes(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Removes `tenant`'s expired rows and takes them off its counter (its usage row is
/// already locked by the caller).
async fn sweep(tx: &Tx<'_>, tenant: &str, now: i64) -> Result<(), StoreError> {
    let expired: i64 = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM state WHERE tenant = $1 AND expires_ms IS NOT NULL AND expires_ms <= $2
                 RETURNING octet_length(key) + octet_length(value) AS size)
             SELECT COALESCE(SUM(size), 0)::BIGINT FROM gone",
            &[&tenant, &now],
        )
        .await
        .map_err(pg)?
        .get(0);
    if expired > 0 {
        tx.execute(
            "UPDATE state_usage SET bytes = GREATEST(0, bytes - $2) WHERE tenant = $1",
            &[&tenant, &expired],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// Sweeps expired rows of up to `tenants` tenants (the maintenance loop).
pub(crate) async fn sweep_some(tx: &Tx<'_>, tenants: i64) -> Result<(), StoreError> {
    let now = now_ms();
    let due: Vec<String> = tx
        .query(
            "SELECT DISTINCT tenant FROM state WHERE expires_ms IS NOT NULL AND expires_ms <= $1
             LIMIT $2",
            &[&now, &tenants],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for tenant in due {
        lock_usage(tx, &tenant).await?;
        sweep(tx, &tenant, now).await?;
    }
    Ok(())
}

/// Locks (creating) the tenant's usage row.
async fn lock_usage(tx: &Tx<'_>, tenant: &str) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO state_usage (tenant, bytes) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
        &[&tenant],
    )
    .await
    .map_err(pg)?;
    Ok(tx
        .query_one(
            "SELECT bytes FROM state_usage WHERE tenant = $1 FOR UPDATE",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .get(0))
}

async fn existing(tx: &Tx<'_>, key: &StateKey) -> Result<i64, StoreError> {
    let (tenant, scope, contact, name) = columns(key);
    Ok(tx
        .query_opt(
            "SELECT (octet_length(key) + octet_length(value))::BIGINT FROM state
             WHERE tenant = $1 AND scope = $2 AND contact = $3 AND key = $4",
            &[&tenant, &scope, &contact, &name],
        )
        .await
        .map_err(pg)?
        .map_or(0, |row| row.get(0)))
}

/// Applies the state changes among `effects`; `Some(refusal)` when the tenant would pass
/// its cap (the caller rolls the transaction back to before the effects).
pub(crate) async fn apply(
    tx: &Tx<'_>,
    tenant: &str,
    contact: Option<&ContactId>,
    effects: &[Effect],
    options: &PostgresOptions,
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
            lock_usage(tx, tenant).await?;
            sweep(tx, tenant, now).await?;
            touched = true;
        }
        let Some(store_key) = StateKey::of(&tenant_id, contact, scope, key) else {
            continue;
        };
        let before = existing(tx, &store_key).await?;
        let (tenant_col, scope_col, contact_col, key_col) = columns(&store_key);
        let after = match effect {
            Effect::SetState {
                value, ttl_seconds, ..
            } => {
                let expires = ttl_seconds.map(|s| now.saturating_add(i64::from(s) * 1000));
                tx.execute(
                    "INSERT INTO state (tenant, scope, contact, key, value, expires_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tenant, scope, contact, key)
                     DO UPDATE SET value = $5, expires_ms = $6",
                    &[
                        &tenant_col,
                        &scope_col,
                        &contact_col,
                        &key_col,
                        &value.as_slice(),
                        &expires,
                    ],
                )
                .await
                .map_err(pg)?;
                bytes(key.len() + value.len())
            }
            _ => {
                tx.execute(
                    "DELETE FROM state WHERE tenant = $1 AND scope = $2 AND contact = $3 AND key = $4",
                    &[&tenant_col, &scope_col, &contact_col, &key_col],
                )
                .await
                .map_err(pg)?;
                0
            }
        };
        tx.execute(
            "UPDATE state_usage SET bytes = GREATEST(0, bytes + $2) WHERE tenant = $1",
            &[&tenant, &(after - before)],
        )
        .await
        .map_err(pg)?;
    }
    if !touched {
        return Ok(None);
    }
    let total: i64 = tx
        .query_one(
            "SELECT bytes FROM state_usage WHERE tenant = $1",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .get(0);
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

impl StateStore for PostgresStore {
    fn state<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        let (tenant, scope, contact, name) = columns(key);
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_opt(
                        "SELECT value FROM state WHERE tenant = $1 AND scope = $2 AND contact = $3
                           AND key = $4 AND (expires_ms IS NULL OR expires_ms > $5)",
                        &[&tenant, &scope, &contact, &name, &now_ms()],
                    )
                    .await
                    .map_err(pg)?
                    .map(|row| row.get(0)))
            })
        }))
    }

    fn state_usage<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, StateUsage> {
        let limit = self.options.tenant_state_bytes;
        let (tenant, scope, contact, name) = columns(key);
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let total: i64 = client
                    .query_opt(
                        "SELECT bytes FROM state_usage WHERE tenant = $1",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .map_or(0, |row| row.get(0));
                let key_bytes: i64 = client
                    .query_opt(
                        "SELECT (octet_length(key) + octet_length(value))::BIGINT FROM state
                         WHERE tenant = $1 AND scope = $2 AND contact = $3 AND key = $4",
                        &[&tenant, &scope, &contact, &name],
                    )
                    .await
                    .map_err(pg)?
                    .map_or(0, |row| row.get(0));
                Ok(StateUsage {
                    bytes: u64::try_from(total).unwrap_or(0),
                    limit,
                    key_bytes: u64::try_from(key_bytes).unwrap_or(0),
                })
            })
        }))
    }
}
