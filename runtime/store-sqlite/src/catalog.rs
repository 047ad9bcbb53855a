//! The catalog (tenants, token hashes, actions and versions, secrets, webhook endpoints)
//! and component blobs.
//!
//! Limit overrides and retry policies are stored as JSON and decoded strictly: a setting
//! that does not decode is a corrupt record, and a run of that action is refused — it
//! never falls back to the host's looser limits.

use std::collections::BTreeMap;

use fluxo_core::{ActionName, LimitOverrides, RetryPolicy, TenantId};
use fluxo_store::{
    ActionRecord, Catalog, ComponentStore, InboundHook, NewVersion, SecretKind, StoreError,
    StoreFuture, StoredSecret, VersionKind, VersionRecord, WebhookEndpoint,
};
use rusqlite::{Connection, Row, params};

use crate::writer::sql;
use crate::{SqliteStore, now_ms, optional};

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |error| StoreError::corrupt(what, error)
}

struct ActionRow {
    name: String,
    description: String,
    enabled: bool,
    active_version: u32,
    created_ms: i64,
    limits: String,
    retry: String,
}

fn action_row(row: &Row<'_>) -> rusqlite::Result<ActionRow> {
    Ok(ActionRow {
        name: row.get(0)?,
        description: row.get(1)?,
        enabled: row.get(2)?,
        active_version: row.get(3)?,
        created_ms: row.get(4)?,
        limits: row.get(5)?,
        retry: row.get(6)?,
    })
}

fn into_action(row: ActionRow) -> Result<ActionRecord, StoreError> {
    Ok(ActionRecord {
        name: row
            .name
            .parse()
            .map_err(|error| StoreError::corrupt("action name", error))?,
        description: row.description,
        enabled: row.enabled,
        active_version: row.active_version,
        created_ms: row.created_ms,
        limits: serde_json::from_str::<LimitOverrides>(&row.limits)
            .map_err(corrupt("limit overrides"))?,
        retry: serde_json::from_str::<RetryPolicy>(&row.retry).map_err(corrupt("retry policy"))?,
    })
}

const ACTION_COLUMNS: &str =
    "name, description, enabled, active_version, created_ms, limits, retry";

/// A version's columns as read: version, kind, hash, size, imports, created.
type VersionColumns = (u32, String, String, i64, String, i64);

fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn into_version(
    (version, kind, hash, size, imports, created_ms): VersionColumns,
) -> Result<VersionRecord, StoreError> {
    Ok(VersionRecord {
        version,
        kind: VersionKind::parse(&kind)?,
        hash,
        size: u64::try_from(size).unwrap_or(0),
        imports: serde_json::from_str(&imports).map_err(corrupt("imports"))?,
        created_ms,
    })
}

fn add_version(connection: &Connection, new: &OwnedVersion) -> Result<u32, StoreError> {
    let now = now_ms();
    // Never a number used before, even by a deleted action of the same name: runs pin
    // versions by number.
    let next: u32 = connection
        .query_row(
            "SELECT MAX(
                 (SELECT COALESCE(MAX(version), 0) FROM versions WHERE tenant = ?1 AND name = ?2),
                 (SELECT COALESCE(MAX(last_version), 0) FROM version_marks
                  WHERE tenant = ?1 AND name = ?2)
             ) + 1",
            params![new.tenant, new.name],
            |row| row.get(0),
        )
        .map_err(sql)?;
    connection
        .execute(
            "INSERT INTO version_marks (tenant, name, last_version) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, name) DO UPDATE SET last_version = ?3",
            params![new.tenant, new.name, next],
        )
        .map_err(sql)?;
    connection
        .execute(
            "INSERT INTO actions (tenant, name, description, enabled, active_version, created_ms)
             VALUES (?1, ?2, COALESCE(?3, ''), 1, ?4, ?5)
             ON CONFLICT (tenant, name) DO UPDATE SET active_version = ?4,
                 description = COALESCE(?3, description)",
            params![new.tenant, new.name, new.description, next, now],
        )
        .map_err(sql)?;
    connection
        .execute(
            "INSERT INTO versions (tenant, name, version, kind, hash, size, imports, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                new.tenant,
                new.name,
                next,
                new.kind.as_str(),
                new.hash,
                new.size,
                new.imports,
                now
            ],
        )
        .map_err(sql)?;
    Ok(next)
}

struct OwnedVersion {
    tenant: String,
    name: String,
    description: Option<String>,
    kind: VersionKind,
    hash: String,
    size: i64,
    imports: String,
}

fn update_action(
    store: &SqliteStore,
    tenant: &TenantId,
    name: &ActionName,
    set: &'static str,
    value: rusqlite::types::Value,
) -> StoreFuture<'static, bool> {
    let (tenant, name) = (tenant.to_string(), name.to_string());
    let store = store.clone();
    Box::pin(async move {
        store
            .write(move |connection| {
                Ok(connection
                    .execute(
                        &format!("UPDATE actions SET {set} = ?3 WHERE tenant = ?1 AND name = ?2"),
                        params![tenant, name, value],
                    )
                    .map_err(sql)?
                    == 1)
            })
            .await
    })
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::permanent(format!("encoding a setting: {error}")))
}

impl Catalog for SqliteStore {
    fn create_tenant<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute(
                    "INSERT INTO tenants (id, created_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![tenant, now_ms()],
                )
                .map_err(sql)?
                == 1)
        }))
    }

    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            Ok(optional(connection.query_row(
                "SELECT 1 FROM tenants WHERE id = ?1",
                params![tenant],
                |_| Ok(()),
            ))?
            .is_some())
        }))
    }

    fn add_token<'a>(&'a self, tenant: &'a TenantId, hash: &'a str) -> StoreFuture<'a, ()> {
        let (tenant, hash) = (tenant.to_string(), hash.to_owned());
        Box::pin(self.write(move |connection| {
            connection
                .execute(
                    "INSERT INTO tokens (hash, tenant, created_ms) VALUES (?1, ?2, ?3)",
                    params![hash, tenant, now_ms()],
                )
                .map_err(sql)?;
            Ok(())
        }))
    }

    fn token_tenant<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<TenantId>> {
        let hash = hash.to_owned();
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                "SELECT tenant FROM tokens WHERE hash = ?1",
                params![hash],
                |row| row.get::<_, String>(0),
            ))?
            .map(|tenant| {
                tenant
                    .parse()
                    .map_err(|error| StoreError::corrupt("token tenant", error))
            })
            .transpose()
        }))
    }

    fn add_version<'a>(&'a self, version: NewVersion<'a>) -> StoreFuture<'a, u32> {
        let owned = OwnedVersion {
            tenant: version.tenant.to_string(),
            name: version.name.to_string(),
            description: version.description.map(str::to_owned),
            kind: version.kind,
            hash: version.hash.to_owned(),
            size: i64::try_from(version.size).unwrap_or(i64::MAX),
            imports: serde_json::to_string(version.imports).unwrap_or_else(|_| "[]".to_owned()),
        };
        Box::pin(self.write(move |connection| add_version(connection, &owned)))
    }

    fn actions<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<ActionRecord>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {ACTION_COLUMNS} FROM actions WHERE tenant = ?1 ORDER BY name"
                ))
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant], action_row)
                .map_err(sql)?;
            rows.map(|row| into_action(row.map_err(sql)?)).collect()
        }))
    }

    fn action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<ActionRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                &format!("SELECT {ACTION_COLUMNS} FROM actions WHERE tenant = ?1 AND name = ?2"),
                params![tenant, name],
                action_row,
            ))?
            .map(into_action)
            .transpose()
        }))
    }

    fn versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Vec<VersionRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT version, kind, hash, size, imports, created_ms FROM versions
                     WHERE tenant = ?1 AND name = ?2 ORDER BY version",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant, name], version_row)
                .map_err(sql)?;
            rows.map(|row| into_version(row.map_err(sql)?)).collect()
        }))
    }

    fn version<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, Option<VersionRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                "SELECT version, kind, hash, size, imports, created_ms FROM versions
                 WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                params![tenant, name, version],
                version_row,
            ))?
            .map(into_version)
            .transpose()
        }))
    }

    fn set_enabled<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        enabled: bool,
    ) -> StoreFuture<'a, bool> {
        update_action(self, tenant, name, "enabled", i64::from(enabled).into())
    }

    fn set_limits<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        limits: &'a LimitOverrides,
    ) -> StoreFuture<'a, bool> {
        match json(limits) {
            Ok(text) => update_action(self, tenant, name, "limits", text.into()),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn set_retry<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        retry: &'a RetryPolicy,
    ) -> StoreFuture<'a, bool> {
        match json(retry) {
            Ok(text) => update_action(self, tenant, name, "retry", text.into()),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn activate<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute(
                    "UPDATE actions SET active_version = ?3 WHERE tenant = ?1 AND name = ?2
                     AND EXISTS (SELECT 1 FROM versions WHERE tenant = ?1 AND name = ?2 AND version = ?3)",
                    params![tenant, name, version],
                )
                .map_err(sql)?
                == 1)
        }))
    }

    fn delete_action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<Vec<String>>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Box::pin(self.write(move |connection| {
            let hashes: Vec<String> = {
                let mut statement = connection
                    .prepare_cached(
                        "SELECT DISTINCT hash FROM versions WHERE tenant = ?1 AND name = ?2",
                    )
                    .map_err(sql)?;
                let rows = statement
                    .query_map(params![tenant, name], |row| row.get(0))
                    .map_err(sql)?;
                rows.collect::<Result<_, _>>().map_err(sql)?
            };
            let deleted = connection
                .execute(
                    "DELETE FROM actions WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Ok(None);
            }
            let mut orphaned = Vec::new();
            for hash in hashes {
                let used = optional(connection.query_row(
                    "SELECT 1 FROM versions WHERE hash = ?1 LIMIT 1",
                    params![hash],
                    |_| Ok(()),
                ))?;
                if used.is_none() {
                    orphaned.push(hash);
                }
            }
            Ok(Some(orphaned))
        }))
    }

    fn set_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (tenant, name, value) = (tenant.to_string(), name.to_owned(), value.to_owned());
        Box::pin(self.write(move |connection| {
            connection
                .execute(
                    "INSERT INTO secrets (tenant, name, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, name) DO UPDATE SET value = ?3",
                    params![tenant, name, value],
                )
                .map_err(sql)?;
            Ok(())
        }))
    }

    fn delete_secret<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute(
                    "DELETE FROM secrets WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )
                .map_err(sql)?
                == 1)
        }))
    }

    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, BTreeMap<String, String>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT name, value FROM secrets WHERE tenant = ?1")
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)
        }))
    }

    fn put_hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        hook: &'a InboundHook,
        secret: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, hook, secret) = (tenant.to_string(), hook.clone(), secret.to_owned());
        Box::pin(self.write(move |connection| {
            let changed = connection
                .execute(
                    "UPDATE hooks SET workflow = ?3, contact_path = ?4 WHERE tenant = ?1 AND name = ?2",
                    params![tenant, hook.name, hook.workflow, hook.contact_path],
                )
                .map_err(sql)?;
            if changed == 1 {
                return Ok(false);
            }
            let count: i64 = connection
                .query_row(
                    "SELECT count(*) FROM hooks WHERE tenant = ?1",
                    params![tenant],
                    |row| row.get(0),
                )
                .map_err(sql)?;
            if u64::try_from(count).unwrap_or(u64::MAX) >= fluxo_store::MAX_INBOUND_HOOKS {
                return Err(StoreError::conflict(format!(
                    "tenant {tenant} has {count} inbound hooks, the most allowed"
                )));
            }
            connection
                .execute(
                    "INSERT INTO hooks (tenant, name, workflow, contact_path, secret, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        tenant,
                        hook.name,
                        hook.workflow,
                        hook.contact_path,
                        secret,
                        hook.created_ms
                    ],
                )
                .map_err(sql)?;
            Ok(true)
        }))
    }

    fn hooks<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<InboundHook>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT name, workflow, contact_path, created_ms FROM hooks
                     WHERE tenant = ?1 ORDER BY name",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant], hook_row)
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)
        }))
    }

    fn hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<(InboundHook, String)>> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                "SELECT name, workflow, contact_path, created_ms, secret FROM hooks
                 WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                |row| Ok((hook_row(row)?, row.get(4)?)),
            ))
        }))
    }

    fn delete_hook<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.to_string(), name.to_owned());
        Box::pin(self.write(move |connection| {
            let changed = connection
                .execute(
                    "DELETE FROM hooks WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        }))
    }

    fn add_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        url: &'a str,
        secret: &'a str,
    ) -> StoreFuture<'a, WebhookEndpoint> {
        let (tenant, url, secret) = (tenant.to_string(), url.to_owned(), secret.to_owned());
        Box::pin(self.write(move |connection| {
            let count: i64 = connection
                .query_row(
                    "SELECT count(*) FROM webhook_endpoints WHERE tenant = ?1",
                    params![tenant],
                    |row| row.get(0),
                )
                .map_err(sql)?;
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
            connection
                .execute(
                    "INSERT INTO webhook_endpoints (tenant, id, url, enabled, created_ms)
                     VALUES (?1, ?2, ?3, 1, ?4)",
                    params![tenant, id, url, now],
                )
                .map_err(sql)?;
            connection
                .execute(
                    "INSERT INTO webhook_secrets (tenant, endpoint, secret, created_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, id, secret, now],
                )
                .map_err(sql)?;
            Ok(WebhookEndpoint {
                id,
                url,
                enabled: true,
                disabled_reason: None,
                created_ms: now,
            })
        }))
    }

    fn endpoints<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<WebhookEndpoint>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, url, enabled, disabled_reason, created_ms FROM webhook_endpoints
                     WHERE tenant = ?1 ORDER BY created_ms, id",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant], endpoint_row)
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)
        }))
    }

    fn endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<(WebhookEndpoint, Vec<String>)>> {
        let (tenant, id) = (tenant.to_string(), id.to_owned());
        Box::pin(self.read(move |connection| {
            let Some(endpoint) = optional(connection.query_row(
                "SELECT id, url, enabled, disabled_reason, created_ms FROM webhook_endpoints
                 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                endpoint_row,
            ))?
            else {
                return Ok(None);
            };
            let mut statement = connection
                .prepare_cached(
                    "SELECT secret FROM webhook_secrets WHERE tenant = ?1 AND endpoint = ?2
                       AND (expires_ms IS NULL OR expires_ms > ?3)
                     ORDER BY created_ms DESC, rowid DESC",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![tenant, id, now_ms()], |row| row.get(0))
                .map_err(sql)?;
            let secrets = rows.collect::<Result<_, _>>().map_err(sql)?;
            Ok(Some((endpoint, secrets)))
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
        Box::pin(self.write(move |connection| {
            let exists = optional(connection.query_row(
                "SELECT 1 FROM webhook_endpoints WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                |_| Ok(()),
            ))?;
            if exists.is_none() {
                return Ok(false);
            }
            connection
                .execute(
                    "UPDATE webhook_secrets SET expires_ms = ?3
                     WHERE tenant = ?1 AND endpoint = ?2 AND (expires_ms IS NULL OR expires_ms > ?3)",
                    params![tenant, id, keep_until_ms],
                )
                .map_err(sql)?;
            connection
                .execute(
                    "INSERT INTO webhook_secrets (tenant, endpoint, secret, created_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, id, secret, now_ms()],
                )
                .map_err(sql)?;
            Ok(true)
        }))
    }

    fn disable_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, id, reason) = (tenant.to_string(), id.to_owned(), reason.to_owned());
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?3
                     WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id, reason],
                )
                .map_err(sql)?
                == 1)
        }))
    }

    fn delete_endpoint<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> StoreFuture<'a, bool> {
        let (tenant, id) = (tenant.to_string(), id.to_owned());
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute(
                    "DELETE FROM webhook_endpoints WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(sql)?
                == 1)
        }))
    }

    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.read(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sql)
        }))
    }

    fn stored_secrets(&self) -> StoreFuture<'_, Vec<StoredSecret>> {
        Box::pin(self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT 'tenant', tenant, name, rowid, value FROM secrets
                     UNION ALL
                     SELECT 'webhook', tenant, endpoint, rowid, secret FROM webhook_secrets
                     UNION ALL
                     SELECT 'hook', tenant, name, rowid, secret FROM hooks",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .map_err(sql)?;
            let mut stored = Vec::new();
            for row in rows {
                let (kind, tenant, name, row, value) = row.map_err(sql)?;
                stored.push(StoredSecret {
                    kind: match kind.as_str() {
                        "tenant" => SecretKind::Tenant,
                        "hook" => SecretKind::Hook,
                        _ => SecretKind::Webhook,
                    },
                    tenant: tenant
                        .parse()
                        .map_err(|error| StoreError::corrupt("secret tenant", error))?,
                    name,
                    row,
                    value,
                });
            }
            Ok(stored)
        }))
    }

    fn replace_stored_secrets(&self, values: Vec<StoredSecret>) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |connection| {
            for stored in values {
                let statement = match stored.kind {
                    SecretKind::Tenant => "UPDATE secrets SET value = ?2 WHERE rowid = ?1",
                    SecretKind::Webhook => {
                        "UPDATE webhook_secrets SET secret = ?2 WHERE rowid = ?1"
                    }
                    SecretKind::Hook => "UPDATE hooks SET secret = ?2 WHERE rowid = ?1",
                };
                let changed = connection
                    .execute(statement, params![stored.row, stored.value])
                    .map_err(sql)?;
                if changed != 1 {
                    // Deleted meanwhile: the whole replacement is tried again by the
                    // caller, so nothing is left half re-sealed.
                    return Err(StoreError::conflict(format!(
                        "a {:?} secret of {} changed during the replacement",
                        stored.kind, stored.tenant
                    )));
                }
            }
            Ok(())
        }))
    }
}

fn endpoint_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: row.get(0)?,
        url: row.get(1)?,
        enabled: row.get(2)?,
        disabled_reason: row.get(3)?,
        created_ms: row.get(4)?,
    })
}

impl ComponentStore for SqliteStore {
    fn put_component<'a>(&'a self, hash: &'a str, bytes: &'a [u8]) -> StoreFuture<'a, ()> {
        let (hash, bytes) = (hash.to_owned(), bytes.to_vec());
        Box::pin(self.write(move |connection| {
            connection
                .execute(
                    "INSERT INTO components (hash, bytes, created_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hash) DO NOTHING",
                    params![hash, bytes, now_ms()],
                )
                .map_err(sql)?;
            Ok(())
        }))
    }

    fn component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let hash = hash.to_owned();
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                "SELECT bytes FROM components WHERE hash = ?1",
                params![hash],
                |row| row.get::<_, Vec<u8>>(0),
            ))
        }))
    }

    fn delete_component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, bool> {
        let hash = hash.to_owned();
        Box::pin(self.write(move |connection| {
            Ok(connection
                .execute("DELETE FROM components WHERE hash = ?1", params![hash])
                .map_err(sql)?
                == 1)
        }))
    }
}

fn hook_row(row: &Row<'_>) -> rusqlite::Result<InboundHook> {
    Ok(InboundHook {
        name: row.get(0)?,
        workflow: row.get(1)?,
        contact_path: row.get(2)?,
        created_ms: row.get(3)?,
    })
}
