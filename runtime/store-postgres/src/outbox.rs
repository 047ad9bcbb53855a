//! The outbox on PostgreSQL: rows written by commits, claimed by any node's delivery loop
//! with `FOR UPDATE SKIP LOCKED` (two nodes never take one row; neither waits for the
//! other), a lease, and a fencing `claim` counter checked when the row is settled.

use fluxo_core::{RunError, RunId, TenantId};
use fluxo_store::webhook::completion_message;
use fluxo_store::{
    Outbox, OutboxItem, OutboxKind, OutboxPayload, OutboxRecord, RunPhase, RunTarget, Settlement,
    StoreError, StoreFuture, WebhookMessage,
};

use crate::{PostgresStore, Tx, now_ms, pg};

/// Writes an outbox row; a second row with the same `dedup_key` for the tenant is
/// ignored.
pub(crate) async fn insert(
    tx: &Tx<'_>,
    tenant: &str,
    run: Option<RunId>,
    dedup_key: &str,
    payload: &OutboxPayload,
    now: i64,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(payload)
        .map_err(|error| StoreError::permanent(format!("encoding an outbox row: {error}")))?;
    tx.execute(
        "INSERT INTO outbox (tenant, run_id, dedup_key, kind, payload, status, next_attempt_ms,
             created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $6)
         ON CONFLICT (tenant, dedup_key) DO NOTHING",
        &[
            &tenant,
            &run.map(|id| id.to_string()),
            &dedup_key,
            &payload.kind().as_str(),
            &text,
            &now,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Writes one webhook row per enabled endpoint of `tenant` for a run that ended in
/// `state` (nothing for states that send no webhook).
#[allow(
    clippy::too_many_arguments,
    reason = "the columns of one completion event"
)]
pub(crate) async fn completion_webhooks(
    tx: &Tx<'_>,
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
    let endpoints: Vec<String> = tx
        .query(
            "SELECT id FROM webhook_endpoints WHERE tenant = $1 AND enabled ORDER BY id",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for endpoint in endpoints {
        let payload = OutboxPayload::Webhook(WebhookMessage {
            endpoint: endpoint.clone(),
            webhook_id: webhook_id.clone(),
            body: body.clone(),
            timestamp,
        });
        insert(
            tx,
            tenant,
            Some(run),
            &format!("webhook:{webhook_id}:{endpoint}"),
            &payload,
            now,
        )
        .await?;
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

async fn claim_due(
    tx: &Tx<'_>,
    node: &str,
    kinds: &[OutboxKind],
    max: u32,
    lease_ms: u64,
) -> Result<Vec<OutboxItem>, StoreError> {
    let now = now_ms();
    let until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    // Expired claims first (a sender died mid-send), then due rows.
    let rows = tx
        .query(
            "WITH expired AS (
                 SELECT id FROM outbox WHERE status = 'sending' AND lease_until < $3
                   AND kind = ANY($5) ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED),
             due AS (
                 SELECT id FROM outbox WHERE status = 'queued' AND kind = ANY($5)
                   AND next_attempt_ms <= $3 ORDER BY next_attempt_ms, id LIMIT $4
                   FOR UPDATE SKIP LOCKED),
             picked AS (
                 SELECT id FROM (SELECT id, 0 AS rank FROM expired
                                 UNION ALL SELECT id, 1 AS rank FROM due) AS candidates
                 ORDER BY rank LIMIT $4)
             UPDATE outbox SET status = 'sending', claim = claim + 1, claimed_by = $1,
                 lease_until = $2, updated_ms = $3
             WHERE id IN (SELECT id FROM picked)
             RETURNING id, tenant, payload, attempts, claim, created_ms",
            &[&node, &until, &now, &i64::from(max), &kinds],
        )
        .await
        .map_err(pg)?;
    let mut items = Vec::new();
    for row in &rows {
        let id: i64 = row.get(0);
        let tenant: String = row.get(1);
        let payload: String = row.get(2);
        match tenant_of(&tenant).and_then(|tenant| Ok((tenant, decode_payload(&payload)?))) {
            Ok((tenant, payload)) => items.push(OutboxItem {
                id,
                tenant,
                payload,
                attempts: u32::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                claim: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
                created_ms: row.get(5),
            }),
            Err(error) => {
                tracing::error!(id, %error, "an outbox row does not decode; it is failed");
                tx.execute(
                    "UPDATE outbox SET status = 'failed', last_error = $2, updated_ms = $3
                     WHERE id = $1",
                    &[&id, &error.to_string(), &now],
                )
                .await
                .map_err(pg)?;
            }
        }
    }
    // Rows past `max` (the two branches together may pass it) go back at once.
    for row in rows.iter().skip(usize::try_from(max).unwrap_or(usize::MAX)) {
        let id: i64 = row.get(0);
        tx.execute(
            "UPDATE outbox SET status = 'queued', claimed_by = NULL, lease_until = NULL
             WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg)?;
    }
    Ok(items)
}

impl Outbox for PostgresStore {
    fn claim_due<'a>(
        &'a self,
        node: &'a str,
        kinds: &'a [OutboxKind],
        max: u32,
        lease_ms: u64,
    ) -> StoreFuture<'a, Vec<OutboxItem>> {
        let node = node.to_owned();
        let kinds = kinds.to_vec();
        Box::pin(self.tx(move |tx| {
            let (node, kinds) = (node.clone(), kinds.clone());
            Box::pin(async move { claim_due(tx, &node, &kinds, max, lease_ms).await })
        }))
    }

    fn settle<'a>(&'a self, id: i64, claim: u64, settlement: Settlement) -> StoreFuture<'a, ()> {
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let now = now_ms();
                let (status, error, next) = match &settlement {
                    Settlement::Sent => ("sent", None, now),
                    Settlement::Retry { at_ms, error } => ("queued", Some(error.clone()), *at_ms),
                    Settlement::Failed { error } => ("failed", Some(error.clone()), now),
                };
                let changed = client
                    .execute(
                        "UPDATE outbox SET status = $3, attempts = attempts + 1, last_error = $4,
                             next_attempt_ms = $5, claimed_by = NULL, lease_until = NULL,
                             updated_ms = $6
                         WHERE id = $1 AND claim = $2 AND status = 'sending'",
                        &[
                            &id,
                            &i64::try_from(claim).unwrap_or(-1),
                            &status,
                            &error,
                            &next,
                            &now,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                if changed == 1 {
                    Ok(())
                } else {
                    Err(StoreError::lease_lost(format!(
                        "outbox row {id} is no longer claimed under {claim}"
                    )))
                }
            })
        }))
    }

    fn release_rows<'a>(&'a self, rows: &'a [(i64, u64)], at_ms: i64) -> StoreFuture<'a, u64> {
        let rows = rows.to_vec();
        Box::pin(self.tx(move |tx| {
            let rows = rows.clone();
            Box::pin(async move {
                let now = now_ms();
                let mut released = 0;
                for (id, claim) in rows {
                    released += tx
                        .execute(
                            "UPDATE outbox SET status = 'queued', next_attempt_ms = $3,
                                 claimed_by = NULL, lease_until = NULL, updated_ms = $4
                             WHERE id = $1 AND claim = $2 AND status = 'sending'",
                            &[&id, &i64::try_from(claim).unwrap_or(-1), &at_ms, &now],
                        )
                        .await
                        .map_err(pg)?;
                }
                Ok(released)
            })
        }))
    }

    fn outbox(&self) -> StoreFuture<'_, Vec<OutboxRecord>> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT id, tenant, run_id, payload, status, attempts, last_error
                         FROM outbox ORDER BY id",
                        &[],
                    )
                    .await
                    .map_err(pg)?;
                rows.iter()
                    .map(|row| {
                        let run: Option<String> = row.get(2);
                        Ok(OutboxRecord {
                            id: row.get(0),
                            tenant: tenant_of(&row.get::<_, String>(1))?,
                            run: run
                                .map(|text| {
                                    RunId::parse(&text)
                                        .map_err(|error| StoreError::corrupt("run id", error))
                                })
                                .transpose()?,
                            payload: decode_payload(&row.get::<_, String>(3))?,
                            status: fluxo_store::columns::parse_outbox_status(
                                &row.get::<_, String>(4),
                            )?,
                            attempts: u32::try_from(row.get::<_, i64>(5)).unwrap_or(0),
                            last_error: row.get(6),
                        })
                    })
                    .collect()
            })
        }))
    }
}
