//! The catalog (tenants, token hashes, actions and versions, secrets, webhook endpoints)
//! and component blobs, shared by every node: a change made through one node is read by
//! the others on their next lookup (nothing is cached across requests but the loaded
//! components, which are keyed by content hash).

use std::collections::BTreeMap;

use fluxo_core::{ActionName, LimitOverrides, RetryPolicy, TenantId};
use fluxo_store::{
    ActionRecord, Catalog, ComponentStore, InboundHook, NewVersion, SecretKind, StoreError,
    StoreFuture, StoredSecret, VersionKind, VersionRecord, WebhookEndpoint,
};
use tokio_postgres::Row;

use crate::{PostgresStore, now_ms, pg};

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |error| StoreError::corrupt(what, error)
}

const ACTION_COLUMNS: &str =
    "name, description, enabled, active_version, created_ms, limits, retry";

fn into_action(row: &Row) -> Result<ActionRecord, StoreError> {
    let name: String = row.get(0);
    let limits: String = row.get(5);
    let retry: String = row.get(6);
    Ok(ActionRecord {
        name: name
            .parse()
            .map_err(|error| StoreError::corrupt("action name", error))?,
        description: row.get(1),
        enabled: row.get(2),
        active_version: u32::try_from(row.get::<_, i64>(3))
            .map_err(|error| StoreError::corrupt("active version", error))?,
        created_ms: row.get(4),
        limits: serde_json::from_str::<LimitOverrides>(&limits)
            .map_err(corrupt("limit overrides"))?,
        retry: serde_json::from_str::<RetryPolicy>(&retry).map_err(corrupt("retry policy"))?,
    })
}

const VERSION_COLUMNS: &str = "version, kind, hash, size, imports, created_ms";

fn into_version(row: &Row) -> Result<VersionRecord, StoreError> {
    let imports: String = row.get(4);
    Ok(VersionRecord {
        version: u32::try_from(row.get::<_, i64>(0))
            .map_err(|error| StoreError::corrupt("version", error))?,
        kind: VersionKind::parse(row.get(1))?,
        hash: row.get(2),
        size: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        imports: serde_json::from_str(&imports).map_err(corrupt("imports"))?,
        created_ms: row.get(5),
    })
}

fn endpoint_of(row: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: row.get(0),
        url: row.get(1),
        enabled: row.get(2),
        disabled_reason: row.get(3),
        created_ms: row.get(4),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::permanent(format!("encoding a setting: {error}")))
}

/// Sets one column of an action; `false` when the action does not exist.
async fn update_action<V>(
    store: &PostgresStore,
    tenant: &TenantId,
    name: &ActionName,
    column: &'static str,
    value: V,
) -> Result<bool, StoreError>
where
    V: tokio_postgres::types::ToSql + Sync + Send + 'static,
{
    let (tenant, name) = (tenant.to_string(), name.to_string());
    store
        .read(move |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        &format!(
                            "UPDATE actions SET {column} = $3 WHERE tenant = $1 AND name = $2"
                        ),
                        &[&tenant, &name, &value],
                    )
                    .await
                    .map_err(pg)?;
                Ok(changed == 1)
            })
        })
        .await
}

impl Catalog for PostgresStore {
    fn create_tenant<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let created = client
                    .execute(
                        "INSERT INTO tenants (id, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&tenant, &now_ms()],
                    )
                    .await
                    .map_err(pg)?;
                Ok(created == 1)
            })
        }))
    }

    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant])
                    .await
                    .map_err(pg)?
                    .is_some())
            })
        }))
    }

    fn add_token<'a>(&'a self, tenant: &'a TenantId, hash: &'a str) -> StoreFuture<'a, ()> {
        let (tenant, hash) = (tenant.to_string(), hash.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO tokens (hash, tenant, created_ms) VALUES ($1, $2, $3)",
                        &[&hash, &tenant, &now_ms()],
                    )
                    .await
                    .map_err(pg)?;
                Ok(())
            })
        }))
    }

    fn token_tenant<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<TenantId>> {
        let hash = hash.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt("SELECT tenant FROM tokens WHERE hash = $1", &[&hash])
                    .await
                    .map_err(pg)?
                    .map(|row| {
                        row.get::<_, String>(0)
                            .parse()
                            .map_err(|error| StoreError::corrupt("token tenant", error))
                    })
                    .transpose()
            })
        }))
    }

    fn add_version<'a>(&'a self, version: NewVersion<'a>) -> StoreFuture<'a, u32> {
        let tenant = version.tenant.to_string();
        let name = version.name.to_string();
        let description = version.description.map(str::to_owned);
        let hash = version.hash.to_owned();
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        let imports = serde_json::to_string(version.imports).unwrap_or_else(|_| "[]".to_owned());
        let kind = version.kind.as_str();
        Box::pin(self.tx(move |tx| {
            let (tenant, name, description, hash, imports) = (
                tenant.clone(),
                name.clone(),
                description.clone(),
                hash.clone(),
                imports.clone(),
            );
            Box::pin(async move {
                let now = now_ms();
                // The mark row is the lock: two uploads of one name number in turn, and a
                // number is never given twice, even after the action is deleted.
                let next: i64 = tx
                    .query_one(
                        "INSERT INTO version_marks (tenant, name, last_version)
                         VALUES ($1, $2, 1 + COALESCE(
                             (SELECT MAX(version) FROM versions WHERE tenant = $1 AND name = $2), 0))
                         ON CONFLICT (tenant, name)
                         DO UPDATE SET last_version = version_marks.last_version + 1
                         RETURNING last_version",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                tx.execute(
                    "INSERT INTO actions (tenant, name, description, enabled, active_version, created_ms)
                     VALUES ($1, $2, COALESCE($3, ''), TRUE, $4, $5)
                     ON CONFLICT (tenant, name) DO UPDATE SET active_version = $4,
                         description = COALESCE($3, actions.description)",
                    &[&tenant, &name, &description, &next, &now],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "INSERT INTO versions (tenant, name, version, kind, hash, size, imports, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&tenant, &name, &next, &kind, &hash, &size, &imports, &now],
                )
                .await
                .map_err(pg)?;
                u32::try_from(next).map_err(|error| StoreError::corrupt("version", error))
            })
        }))
    }

    fn actions<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<ActionRecord>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query(
                        &format!(
                            "SELECT {ACTION_COLUMNS} FROM actions WHERE tenant = $1 ORDER BY name"
                        ),
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(into_action)
                    .collect()
            })
        }))
    }

    fn action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<ActionRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        &format!(
                            "SELECT {ACTION_COLUMNS} FROM actions WHERE tenant = $1 AND name = $2"
                        ),
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .as_ref()
                    .map(into_action)
                    .transpose()
            })
        }))
    }

    fn versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Vec<VersionRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM versions
                             WHERE tenant = $1 AND name = $2 ORDER BY version"
                        ),
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(into_version)
                    .collect()
            })
        }))
    }

    fn version<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, Option<VersionRecord>> {
        let (tenant, name, version) = (tenant.to_string(), name.to_string(), i64::from(version));
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM versions
                             WHERE tenant = $1 AND name = $2 AND version = $3"
                        ),
                        &[&tenant, &name, &version],
                    )
                    .await
                    .map_err(pg)?
                    .as_ref()
                    .map(into_version)
                    .transpose()
            })
        }))
    }

    fn set_enabled<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        enabled: bool,
    ) -> StoreFuture<'a, bool> {
        Box::pin(update_action(self, tenant, name, "enabled", enabled))
    }

    fn set_limits<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        limits: &'a LimitOverrides,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let text = json(limits)?;
            update_action(self, tenant, name, "limits", text).await
        })
    }

    fn set_retry<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        retry: &'a RetryPolicy,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let text = json(retry)?;
            update_action(self, tenant, name, "retry", text).await
        })
    }

    fn activate<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, bool> {
        let (tenant, name, version) = (tenant.to_string(), name.to_string(), i64::from(version));
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE actions SET active_version = $3 WHERE tenant = $1 AND name = $2
                         AND EXISTS (SELECT 1 FROM versions
                                     WHERE tenant = $1 AND name = $2 AND version = $3)",
                        &[&tenant, &name, &version],
                    )
                    .await
                    .map_err(pg)?;
                Ok(changed == 1)
            })
        }))
    }

    fn delete_action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<Vec<String>>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.tx(move |tx| {
            let (tenant, name) = (tenant.clone(), name.clone());
            Box::pin(async move {
                let hashes: Vec<String> = tx
                    .query(
                        "SELECT DISTINCT hash FROM versions WHERE tenant = $1 AND name = $2",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let deleted = tx
                    .execute(
                        "DELETE FROM actions WHERE tenant = $1 AND name = $2",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Ok(None);
                }
                let mut orphaned = Vec::new();
                for hash in hashes {
                    let used = tx
                        .query_opt("SELECT 1 FROM versions WHERE hash = $1 LIMIT 1", &[&hash])
                        .await
                        .map_err(pg)?;
                    if used.is_none() {
                        orphaned.push(hash);
                    }
                }
                Ok(Some(orphaned))
            })
        }))
    }

    fn set_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (tenant, name, value) = (tenant.to_string(), name.to_owned(), value.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO secrets (tenant, name, value) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant, name) DO UPDATE SET value = $3",
                        &[&tenant, &name, &value],
                    )
                    .await
                    .map_err(pg)?;
                Ok(())
            })
        }))
    }

    fn delete_secret<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let deleted = client
                    .execute(
                        "DELETE FROM secrets WHERE tenant = $1 AND name = $2",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                Ok(deleted == 1)
            })
        }))
    }

    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, BTreeMap<String, String>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query(
                        "SELECT name, value FROM secrets WHERE tenant = $1",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect())
            })
        }))
    }

    fn add_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        url: &'a str,
        secret: &'a str,
    ) -> StoreFuture<'a, WebhookEndpoint> {
        let (tenant, url, secret) = (tenant.to_string(), url.to_owned(), secret.to_owned());
        Box::pin(self.tx(move |tx| {
            let (tenant, url, secret) = (tenant.clone(), url.clone(), secret.clone());
            Box::pin(async move {
                // The tenant's row is the lock: two registrations count in turn.
                tx.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", &[&tenant])
                    .await
                    .map_err(pg)?;
                let count: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM webhook_endpoints WHERE tenant = $1",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                if u64::try_from(count).unwrap_or(u64::MAX) >= fluxo_store::MAX_WEBHOOK_ENDPOINTS {
                    return Err(StoreError::conflict(format!(
                        "tenant {tenant} has {count} webhook endpoints, the most allowed"
                    )));
                }
                let now = now_ms();
                let id = format!(
                    "ep_{}",
                    fluxo_core::RunId::new().to_string().replace('-', "")
                );
                tx.execute(
                    "INSERT INTO webhook_endpoints (tenant, id, url, enabled, created_ms)
                     VALUES ($1, $2, $3, TRUE, $4)",
                    &[&tenant, &id, &url, &now],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "INSERT INTO webhook_secrets (tenant, endpoint, secret, created_ms)
                     VALUES ($1, $2, $3, $4)",
                    &[&tenant, &id, &secret, &now],
                )
                .await
                .map_err(pg)?;
                Ok(WebhookEndpoint {
                    id,
                    url,
                    enabled: true,
                    disabled_reason: None,
                    created_ms: now,
                })
            })
        }))
    }

    fn endpoints<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<WebhookEndpoint>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query(
                        "SELECT id, url, enabled, disabled_reason, created_ms FROM webhook_endpoints
                         WHERE tenant = $1 ORDER BY created_ms, id",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(endpoint_of)
                    .collect())
            })
        }))
    }

    fn endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<(WebhookEndpoint, Vec<String>)>> {
        let (tenant, id) = (tenant.to_string(), id.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let Some(row) = client
                    .query_opt(
                        "SELECT id, url, enabled, disabled_reason, created_ms FROM webhook_endpoints
                         WHERE tenant = $1 AND id = $2",
                        &[&tenant, &id],
                    )
                    .await
                    .map_err(pg)?
                else {
                    return Ok(None);
                };
                let secrets = client
                    .query(
                        "SELECT secret FROM webhook_secrets WHERE tenant = $1 AND endpoint = $2
                           AND (expires_ms IS NULL OR expires_ms > $3)
                         ORDER BY created_ms DESC, id DESC",
                        &[&tenant, &id, &now_ms()],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                Ok(Some((endpoint_of(&row), secrets)))
            })
        }))
    }

    fn rotate_endpoint_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        secret: &'a str,
        keep_until_ms: i64,
    ) -> StoreFuture<'a, bool> {
        let (tenant, id, secret) = (tenant.to_string(), id.to_owned(), secret.to_owned());
        Box::pin(self.tx(move |tx| {
            let (tenant, id, secret) = (tenant.clone(), id.clone(), secret.clone());
            Box::pin(async move {
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM webhook_endpoints WHERE tenant = $1 AND id = $2 FOR UPDATE",
                        &[&tenant, &id],
                    )
                    .await
                    .map_err(pg)?;
                if exists.is_none() {
                    return Ok(false);
                }
                tx.execute(
                    "UPDATE webhook_secrets SET expires_ms = $3
                     WHERE tenant = $1 AND endpoint = $2
                       AND (expires_ms IS NULL OR expires_ms > $3)",
                    &[&tenant, &id, &keep_until_ms],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "INSERT INTO webhook_secrets (tenant, endpoint, secret, created_ms)
                     VALUES ($1, $2, $3, $4)",
                    &[&tenant, &id, &secret, &now_ms()],
                )
                .await
                .map_err(pg)?;
                Ok(true)
            })
        }))
    }

    fn disable_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, id, reason) = (tenant.to_string(), id.to_owned(), reason.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $3
                         WHERE tenant = $1 AND id = $2",
                        &[&tenant, &id, &reason],
                    )
                    .await
                    .map_err(pg)?;
                Ok(changed == 1)
            })
        }))
    }

    fn delete_endpoint<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, id) = (tenant.to_string(), id.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let deleted = client
                    .execute(
                        "DELETE FROM webhook_endpoints WHERE tenant = $1 AND id = $2",
                        &[&tenant, &id],
                    )
                    .await
                    .map_err(pg)?;
                Ok(deleted == 1)
            })
        }))
    }

    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.schema_ready())
    }

    fn put_hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        hook: &'a InboundHook,
        secret: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, hook, secret) = (tenant.to_string(), hook.clone(), secret.to_owned());
        Box::pin(self.tx(move |tx| {
            let (tenant, hook, secret) = (tenant.clone(), hook.clone(), secret.clone());
            Box::pin(async move {
                // The tenant's row is the lock: two creations count in turn.
                tx.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", &[&tenant])
                    .await
                    .map_err(pg)?;
                let changed = tx
                    .execute(
                        "UPDATE hooks SET workflow = $3, contact_path = $4
                         WHERE tenant = $1 AND name = $2",
                        &[&tenant, &hook.name, &hook.workflow, &hook.contact_path],
                    )
                    .await
                    .map_err(pg)?;
                if changed == 1 {
                    return Ok(false);
                }
                let count: i64 = tx
                    .query_one("SELECT count(*) FROM hooks WHERE tenant = $1", &[&tenant])
                    .await
                    .map_err(pg)?
                    .get(0);
                if u64::try_from(count).unwrap_or(u64::MAX) >= fluxo_store::MAX_INBOUND_HOOKS {
                    return Err(StoreError::conflict(format!(
                        "tenant {tenant} has {count} inbound hooks, the most allowed"
                    )));
                }
                tx.execute(
                    "INSERT INTO hooks (tenant, name, workflow, contact_path, secret, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &tenant,
                        &hook.name,
                        &hook.workflow,
                        &hook.contact_path,
                        &secret,
                        &hook.created_ms,
                    ],
                )
                .await
                .map_err(pg)?;
                Ok(true)
            })
        }))
    }

    fn hooks<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<InboundHook>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query(
                        "SELECT name, workflow, contact_path, created_ms FROM hooks
                         WHERE tenant = $1 ORDER BY name",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(hook_of)
                    .collect())
            })
        }))
    }

    fn hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<(InboundHook, String)>> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_opt(
                        "SELECT name, workflow, contact_path, created_ms, secret FROM hooks
                         WHERE tenant = $1 AND name = $2",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .map(|row| (hook_of(&row), row.get(4))))
            })
        }))
    }

    fn delete_hook<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.tx(move |tx| {
            let (tenant, name) = (tenant.clone(), name.clone());
            Box::pin(async move {
                let changed = tx
                    .execute(
                        "DELETE FROM hooks WHERE tenant = $1 AND name = $2",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                Ok(changed == 1)
            })
        }))
    }

    fn stored_secrets(&self) -> StoreFuture<'_, Vec<StoredSecret>> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT 'tenant', tenant, name, id, value FROM secrets
                         UNION ALL
                         SELECT 'webhook', tenant, endpoint, id, secret FROM webhook_secrets
                         UNION ALL
                         SELECT 'hook', tenant, name, id, secret FROM hooks",
                        &[],
                    )
                    .await
                    .map_err(pg)?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.get(0);
                        let tenant: String = row.get(1);
                        Ok(StoredSecret {
                            kind: match kind.as_str() {
                                "tenant" => SecretKind::Tenant,
                                "hook" => SecretKind::Hook,
                                _ => SecretKind::Webhook,
                            },
                            tenant: tenant
                                .parse()
                                .map_err(|error| StoreError::corrupt("secret tenant", error))?,
                            name: row.get(2),
                            row: row.get(3),
                            value: row.get(4),
                        })
                    })
                    .collect()
            })
        }))
    }

    fn replace_stored_secrets(&self, values: Vec<StoredSecret>) -> StoreFuture<'_, ()> {
        Box::pin(self.tx(move |tx| {
            let values = values.clone();
            Box::pin(async move {
                for stored in values {
                    let statement = match stored.kind {
                        SecretKind::Tenant => "UPDATE secrets SET value = $2 WHERE id = $1",
                        SecretKind::Webhook => {
                            "UPDATE webhook_secrets SET secret = $2 WHERE id = $1"
                        }
                        SecretKind::Hook => "UPDATE hooks SET secret = $2 WHERE id = $1",
                    };
                    let changed = tx
                        .execute(statement, &[&stored.row, &stored.value])
                        .await
                        .map_err(pg)?;
                    if changed != 1 {
                        return Err(StoreError::conflict(format!(
                            "a {:?} secret of {} changed during the replacement",
                            stored.kind, stored.tenant
                        )));
                    }
                }
                Ok(())
            })
        }))
    }
}

impl ComponentStore for PostgresStore {
    fn put_component<'a>(&'a self, hash: &'a str, bytes: &'a [u8]) -> StoreFuture<'a, ()> {
        let (hash, bytes) = (hash.to_owned(), bytes.to_vec());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO components (hash, bytes, created_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (hash) DO NOTHING",
                        &[&hash, &bytes, &now_ms()],
                    )
                    .await
                    .map_err(pg)?;
                Ok(())
            })
        }))
    }

    fn component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let hash = hash.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_opt("SELECT bytes FROM components WHERE hash = $1", &[&hash])
                    .await
                    .map_err(pg)?
                    .map(|row| row.get(0)))
            })
        }))
    }

    fn delete_component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, bool> {
        let hash = hash.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let deleted = client
                    .execute(
                        "DELETE FROM components WHERE hash = $1
                         AND NOT EXISTS (SELECT 1 FROM versions WHERE hash = $1)",
                        &[&hash],
                    )
                    .await
                    .map_err(pg)?;
                Ok(deleted == 1)
            })
        }))
    }
}

fn hook_of(row: &Row) -> InboundHook {
    InboundHook {
        name: row.get(0),
        workflow: row.get(1),
        contact_path: row.get(2),
        created_ms: row.get(3),
    }
}
