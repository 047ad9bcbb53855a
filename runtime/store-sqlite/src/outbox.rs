//! The outbox: rows written by commits (e-mails, completion webhooks), claimed by
//! delivery loops with a lease and a fencing `claim` counter so each row is held by one
//! sender at a time, and settled with the claim they were taken with.

use fluxo_core::{RunError, RunId, TenantId};
use fluxo_store::webhook::completion_message;
use fluxo_store::{
    Outbox, OutboxItem, OutboxKind, OutboxPayload, OutboxRecord, RunPhase, RunTarget, Settlement,
    StoreError, StoreFuture, WebhookMessage,
};
use rusqlite::{Connection, params};

use crate::writer::sql;
use crate::{SqliteStore, now_ms};

/// Writes an outbox row; a second row with the same `dedup_key` for the tenant is
/// ignored.
pub(crate) fn insert(
    connection: &Connection,
    tenant: &str,
    run: Option<RunId>,
    dedup_key: &str,
    payload: &OutboxPayload,
    now: i64,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(payload)
        .map_err(|error| StoreError::permanent(format!("encoding an outbox row: {error}")))?;
    connection
        .execute(
            "INSERT INTO outbox (tenant, run_id, dedup_key, kind, payload, status, next_attempt_ms,
                 created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?6)
             ON CONFLICT (tenant, dedup_key) DO NOTHING",
            params![
                tenant,
                run.map(|id| id.to_string()),
                dedup_key,
                payload.kind().as_str(),
                text,
                now
            ],
        )
        .map_err(sql)?;
    Ok(())
}

/// Writes one webhook row per enabled endpoint of `tenant` for a run that ended in
/// `state` (nothing for states that send no webhook).
#[allow(
    clippy::too_many_arguments,
    reason = "the columns of one completion event"
)]
pub(crate) fn completion_webhooks(
    connection: &Connection,
    tenant: &str,
    run: RunId,
    attempt: u32,
    fence: u64,
    target: &RunTarget,
    state: RunPhase,
    error: Option<&RunError>,
    now: i64,
) -> Result<(), StoreError> {
    let Some((webhook_id, body, timestamp)) =
        completion_message(run, attempt, fence, target, state, error, now)
    else {
        return Ok(());
    };
    let endpoints: Vec<String> = {
        let mut statement = connection
            .prepare_cached(
                "SELECT id FROM webhook_endpoints WHERE tenant = ?1 AND enabled = 1 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![tenant], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    for endpoint in endpoints {
        let payload = OutboxPayload::Webhook(WebhookMessage {
            endpoint: endpoint.clone(),
            webhook_id: webhook_id.clone(),
            body: body.clone(),
            timestamp,
        });
        insert(
            connection,
            tenant,
            Some(run),
            &format!("webhook:{webhook_id}:{endpoint}"),
            &payload,
            now,
        )?;
    }
    Ok(())
}

fn decode_payload(text: &str) -> Result<OutboxPayload, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::corrupt("outbox row", error))
}

fn tenant_of(text: &str) -> Result<TenantId, StoreError> {
    text.parse()
        .map_err(|error| StoreError::corrupt("outbox tenant", error))
}

fn claim_due(
    connection: &Connection,
    node: &str,
    kinds: &[OutboxKind],
    max: u32,
    lease_ms: u64,
) -> Result<Vec<OutboxItem>, StoreError> {
    let now = now_ms();
    let until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    // Rows whose claim expired (a dispatcher died mid-send) first, oldest lease first,
    // then due rows by due time and id, over every kind — no kind waits for another's
    // backlog. Each kind is read on its own (up to `max`), so the partial indexes serve
    // each query; the merge picks the first `max`.
    let mut expired: Vec<(i64, i64)> = Vec::new();
    let mut due: Vec<(i64, i64)> = Vec::new();
    for kind in kinds {
        for (query, into) in [
            (
                "SELECT lease_until, id FROM outbox WHERE status = 'sending' AND lease_until < ?1
                    AND kind = ?2 ORDER BY lease_until LIMIT ?3",
                &mut expired,
            ),
            (
                "SELECT next_attempt_ms, id FROM outbox WHERE status = 'queued' AND kind = ?2
                    AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?3",
                &mut due,
            ),
        ] {
            let mut statement = connection.prepare_cached(query).map_err(sql)?;
            let rows = statement
                .query_map(params![now, kind.as_str(), i64::from(max)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(sql)?;
            for row in rows {
                into.push(row.map_err(sql)?);
            }
        }
    }
    expired.sort_unstable();
    due.sort_unstable();
    let ids: Vec<i64> = expired
        .into_iter()
        .chain(due)
        .map(|(_, id)| id)
        .take(usize::try_from(max).unwrap_or(usize::MAX))
        .collect();
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        let (tenant, payload, attempts, claim, created_ms): (String, String, i64, i64, i64) =
            connection
                .query_row(
                    "UPDATE outbox SET status = 'sending', claim = claim + 1, claimed_by = ?2,
                         lease_until = ?3, updated_ms = ?4
                     WHERE id = ?1
                     RETURNING tenant, payload, attempts, claim, created_ms",
                    params![id, node, until, now],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    },
                )
                .map_err(sql)?;
        let decoded = tenant_of(&tenant).and_then(|tenant| Ok((tenant, decode_payload(&payload)?)));
        match decoded {
            Ok((tenant, payload)) => items.push(OutboxItem {
                id,
                tenant,
                payload,
                attempts: u32::try_from(attempts).unwrap_or(0),
                claim: u64::try_from(claim).unwrap_or(0),
                created_ms,
            }),
            Err(error) => {
                // One row that does not decode must not stop every delivery.
                tracing::error!(id, %error, "an outbox row does not decode; it is failed");
                connection
                    .execute(
                        "UPDATE outbox SET status = 'failed', last_error = ?2, updated_ms = ?3
                         WHERE id = ?1",
                        params![id, error.to_string(), now],
                    )
                    .map_err(sql)?;
            }
        }
    }
    Ok(items)
}

fn settle(
    connection: &Connection,
    id: i64,
    claim: u64,
    settlement: &Settlement,
) -> Result<(), StoreError> {
    let now = now_ms();
    let (status, error, next) = match settlement {
        Settlement::Sent => ("sent", None, now),
        Settlement::Retry { at_ms, error } => ("queued", Some(error.as_str()), *at_ms),
        Settlement::Failed { error } => ("failed", Some(error.as_str()), now),
    };
    let changed = connection
        .execute(
            "UPDATE outbox SET status = ?3, attempts = attempts + 1, last_error = ?4,
                 next_attempt_ms = ?5, claimed_by = NULL, lease_until = NULL, updated_ms = ?6
             WHERE id = ?1 AND claim = ?2 AND status = 'sending'",
            params![
                id,
                i64::try_from(claim).unwrap_or(-1),
                status,
                error,
                next,
                now
            ],
        )
        .map_err(sql)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::lease_lost(format!(
            "outbox row {id} is no longer claimed under {claim}"
        )))
    }
}

impl Outbox for SqliteStore {
    fn claim_due<'a>(
        &'a self,
        node: &'a str,
        kinds: &'a [OutboxKind],
        max: u32,
        lease_ms: u64,
    ) -> StoreFuture<'a, Vec<OutboxItem>> {
        let node = node.to_owned();
        let kinds = kinds.to_vec();
        Box::pin(self.write(move |connection| claim_due(connection, &node, &kinds, max, lease_ms)))
    }

    fn settle<'a>(&'a self, id: i64, claim: u64, settlement: Settlement) -> StoreFuture<'a, ()> {
        Box::pin(self.write(move |connection| settle(connection, id, claim, &settlement)))
    }

    fn release_rows<'a>(&'a self, rows: &'a [(i64, u64)], at_ms: i64) -> StoreFuture<'a, u64> {
        let rows = rows.to_vec();
        Box::pin(self.write(move |connection| {
            let now = now_ms();
            let mut released = 0;
            for (id, claim) in rows {
                released += connection
                    .execute(
                        "UPDATE outbox SET status = 'queued', next_attempt_ms = ?3,
                             claimed_by = NULL, lease_until = NULL, updated_ms = ?4
                         WHERE id = ?1 AND claim = ?2 AND status = 'sending'",
                        params![id, i64::try_from(claim).unwrap_or(-1), at_ms, now],
                    )
                    .map_err(sql)?;
            }
            Ok(u64::try_from(released).unwrap_or(0))
        }))
    }

    fn outbox(&self) -> StoreFuture<'_, Vec<OutboxRecord>> {
        Box::pin(self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, tenant, run_id, payload, status, attempts, last_error
                     FROM outbox ORDER BY id",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                })
                .map_err(sql)?;
            rows.map(|row| {
                let (id, tenant, run, payload, status, attempts, last_error) = row.map_err(sql)?;
                Ok(OutboxRecord {
                    id,
                    tenant: tenant_of(&tenant)?,
                    run: run
                        .map(|text| {
                            RunId::parse(&text)
                                .map_err(|error| StoreError::corrupt("run id", error))
                        })
                        .transpose()?,
                    payload: decode_payload(&payload)?,
                    status: fluxo_store::columns::parse_outbox_status(&status)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    last_error,
                })
            })
            .collect()
        }))
    }
}
