//! The run queue on PostgreSQL: the same rules as the SQLite store's (`runtime/store-sqlite
//! /src/queue.rs` explains the deficit round robin over `tenant_queue`), for several
//! nodes. A claim holds a transaction-scoped advisory lock, so the round robin's
//! bookkeeping and the per-tenant caps hold across the cluster; enqueues, heartbeats,
//! releases and commits lock only their own rows.

use fluxo_core::codec::{decode, encode};
use fluxo_core::{
    Blame, ContactId, ErrorKind, Event, Limits, Message, RetryPolicy, RunError, RunId, RunReport,
    TenantId,
};
use fluxo_store::{
    AttemptSummary, CancelOutcome, ClaimRequest, Claimed, Enqueued, Heartbeat, Lease, NewRun,
    PruneScope, Pruned, Resume, RunCounts, RunFilter, RunPhase, RunQueue, RunRecord, StoreError,
    StoreFuture,
};
use tokio_postgres::Row;

use crate::{CLAIM_LOCK, PostgresStore, Tx, now_ms, pg};
use fluxo_store::columns::{mode_text, parse_id, parse_mode, target_columns, target_of};

/// Tenants looked at per pick.
const CANDIDATES: i64 = 64;

fn fence_of(lease: &Lease) -> i64 {
    i64::try_from(lease.fence).unwrap_or(-1)
}

/// Bumps the claim counter and returns its new value (under the claim lock).
async fn next_served(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .query_one(
            "UPDATE counters SET value = value + 1 WHERE name = 'served' RETURNING value",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0))
}

/// Records that `tenant` has one more runnable run, giving it a quantum of credit when it
/// was idle.
pub(crate) async fn add_runnable(
    tx: &Tx<'_>,
    tenant: &str,
    quantum: i64,
) -> Result<(), StoreError> {
    add_runnable_n(tx, tenant, 1, quantum).await
}

/// Records that `tenant` has `count` more runnable runs in one statement, exactly as
/// `count` calls of [`add_runnable`] would (the credit rule looks at the counts before
/// the first of them).
pub(crate) async fn add_runnable_n(
    tx: &Tx<'_>,
    tenant: &str,
    count: i64,
    quantum: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO tenant_queue (tenant, runnable, deficit, served)
         VALUES ($1, $3, $2, (SELECT value FROM counters WHERE name = 'served'))
         ON CONFLICT (tenant) DO UPDATE SET
             deficit = CASE WHEN tenant_queue.runnable = 0 AND tenant_queue.running = 0
                            THEN GREATEST(tenant_queue.deficit, $2) ELSE tenant_queue.deficit END,
             runnable = tenant_queue.runnable + $3",
        &[&tenant, &quantum, &count],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Appends an attempt's summary to a run's list.
pub(crate) async fn push_attempt(
    tx: &Tx<'_>,
    seq: i64,
    summary: AttemptSummary,
) -> Result<Vec<u8>, StoreError> {
    let stored: Option<Vec<u8>> = tx
        .query_one("SELECT attempts FROM runs WHERE seq = $1", &[&seq])
        .await
        .map_err(pg)?
        .get(0);
    let mut attempts: Vec<AttemptSummary> = match stored {
        Some(bytes) => decode("attempts", &bytes)?,
        None => Vec::new(),
    };
    attempts.push(summary);
    Ok(encode("attempts", &attempts)?)
}

/// Counts `spawned` against their tree ([`fluxo_core::MAX_RUNS_PER_TREE`]); the refusal
/// when the tree would pass its cap (the caller rolls the count back with the effects).
pub(crate) async fn count_tree(
    tx: &Tx<'_>,
    tenant: &str,
    spawned: &[NewRun],
    now: i64,
) -> Result<Option<fluxo_core::RunError>, StoreError> {
    let Some(root) = spawned.first().and_then(|run| run.event.root) else {
        return Ok(None);
    };
    let added = i64::try_from(spawned.len()).unwrap_or(i64::MAX);
    let started: i64 = tx
        .query_one(
            "INSERT INTO run_trees (tenant, root, started, updated_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, root) DO UPDATE
               SET started = run_trees.started + EXCLUDED.started, updated_ms = EXCLUDED.updated_ms
             RETURNING started",
            &[&tenant, &root.to_string(), &added, &now],
        )
        .await
        .map_err(pg)?
        .get(0);
    let started = u64::try_from(started).unwrap_or(u64::MAX);
    Ok((started > fluxo_core::MAX_RUNS_PER_TREE).then(|| fluxo_store::tree_refusal(root, started)))
}

pub(crate) async fn enqueue(
    tx: &Tx<'_>,
    run: &NewRun,
    backlog: u64,
    quantum: i64,
) -> Result<Enqueued, StoreError> {
    let tenant = run.tenant.as_str();
    if let Some(key) = &run.idempotency_key
        && let Some(row) = tx
            .query_opt(
                "SELECT id, state FROM runs WHERE tenant = $1 AND idempotency_key = $2",
                &[&tenant, key],
            )
            .await
            .map_err(pg)?
    {
        return enqueued_earlier(&row);
    }
    let waiting: i64 = tx
        .query_opt(
            "SELECT runnable FROM tenant_queue WHERE tenant = $1",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .map_or(0, |row| row.get(0));
    if u64::try_from(waiting).unwrap_or(0) >= backlog {
        return Err(StoreError::overloaded(format!(
            "tenant {tenant} has {waiting} runs waiting, its backlog's cap"
        )));
    }
    let (kind, name, version) = target_columns(&run.target);
    let now = now_ms();
    tx.execute(
        "INSERT INTO runs (id, tenant, target_kind, target_name, target_version, mode, priority,
             state, available_ms, idempotency_key, event, limits, retry, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, $12, $8)",
        &[
            &run.id.to_string(),
            &tenant,
            &kind,
            &name,
            &version,
            &mode_text(run.mode),
            &run.priority.rank(),
            &now,
            &run.idempotency_key,
            &encode("event", &run.event)?,
            &encode("limits", &run.limits)?,
            &encode("retry policy", &run.retry)?,
        ],
    )
    .await
    .map_err(pg)?;
    add_runnable(tx, tenant, quantum).await?;
    Ok(Enqueued {
        id: run.id,
        deduplicated: false,
        state: RunPhase::Queued,
    })
}

fn enqueued_earlier(row: &Row) -> Result<Enqueued, StoreError> {
    Ok(Enqueued {
        id: parse_id(&row.get::<_, String>(0))?,
        deduplicated: true,
        state: RunPhase::parse(&row.get::<_, String>(1))
            .map_err(|error| StoreError::corrupt("run state", error))?,
    })
}

/// The next run to claim, if any: interactive runs first, then deficit round robin.
async fn pick(
    tx: &Tx<'_>,
    now: i64,
    per_tenant: i64,
    quantum: i64,
) -> Result<Option<i64>, StoreError> {
    let interactive = tx
        .query_opt(
            "SELECT r.seq FROM runs r JOIN tenant_queue t ON t.tenant = r.tenant
             WHERE r.priority > 0 AND r.state IN ('queued', 'retrying') AND r.available_ms <= $1
               AND t.running < $2
             ORDER BY r.seq LIMIT 1",
            &[&now, &per_tenant],
        )
        .await
        .map_err(pg)?;
    if let Some(row) = interactive {
        return Ok(Some(row.get(0)));
    }
    for round in 0..2 {
        let candidates: Vec<(String, i64)> = tx
            .query(
                "SELECT tenant, deficit FROM tenant_queue
                 WHERE runnable > 0 AND running < $1 ORDER BY served LIMIT $2",
                &[&per_tenant, &CANDIDATES],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut best: Option<i64> = None;
        for (tenant, deficit) in candidates {
            let next = tx
                .query_opt(
                    "SELECT seq FROM runs WHERE tenant = $1 AND state IN ('queued', 'retrying')
                       AND available_ms <= $2
                     ORDER BY priority DESC, available_ms, seq LIMIT 1",
                    &[&tenant, &now],
                )
                .await
                .map_err(pg)?;
            let Some(next) = next else {
                // Only future retries: to the back of the line.
                let served = next_served(tx).await?;
                tx.execute(
                    "UPDATE tenant_queue SET served = $2 WHERE tenant = $1",
                    &[&tenant, &served],
                )
                .await
                .map_err(pg)?;
                continue;
            };
            if deficit > 0 {
                return Ok(Some(next.get(0)));
            }
            best = Some(best.map_or(deficit, |best: i64| best.max(deficit)));
        }
        let Some(best) = best else {
            return Ok(None);
        };
        if round == 1 {
            return Ok(None);
        }
        // Every tenant with work has used its credit: as many rounds as it takes for the
        // first of them to have credit again, at once (work-conserving).
        let rounds = (1 - best).div_euclid(quantum.max(1)) + 1;
        tx.execute(
            "UPDATE tenant_queue SET deficit = LEAST(deficit + $1::BIGINT * $2::BIGINT, $2::BIGINT) WHERE runnable > 0",
            &[&rounds, &quantum],
        )
        .await
        .map_err(pg)?;
    }
    Ok(None)
}

const CLAIMED_COLUMNS: &str = "id, tenant, target_kind, target_name, target_version, mode, event,
     limits, retry, attempt, fence, crash_redeliveries, checkpoint, reply, segments";

fn into_claimed(row: &Row, expires_ms: i64, taken_over: bool) -> Result<Claimed, StoreError> {
    let event: Vec<u8> = row.get(6);
    let limits: Vec<u8> = row.get(7);
    let retry: Vec<u8> = row.get(8);
    Ok(Claimed {
        lease: Lease {
            run: parse_id(&row.get::<_, String>(0))?,
            attempt: u32::try_from(row.get::<_, i64>(9)).unwrap_or(u32::MAX),
            fence: u64::try_from(row.get::<_, i64>(10)).unwrap_or(0),
            expires_ms,
        },
        tenant: row
            .get::<_, String>(1)
            .parse()
            .map_err(|error| StoreError::corrupt("run tenant", error))?,
        target: target_of(
            &row.get::<_, String>(2),
            &row.get::<_, String>(3),
            row.get(4),
        )?,
        event: decode::<Event>("event", &event)?,
        limits: decode::<Limits>("limits", &limits)?,
        retry: decode::<RetryPolicy>("retry policy", &retry)?,
        mode: parse_mode(&row.get::<_, String>(5))?,
        crash_redeliveries: u32::try_from(row.get::<_, i64>(11)).unwrap_or(u32::MAX),
        taken_over,
        resume: match row.get::<_, Option<String>>(12) {
            Some(checkpoint) => Some(Resume {
                checkpoint,
                reply: row
                    .get::<_, Option<Vec<u8>>>(13)
                    .map(|bytes| decode::<Message>("reply", &bytes))
                    .transpose()?,
                segments: u32::try_from(row.get::<_, i64>(14)).unwrap_or(u32::MAX),
            }),
            None => None,
        },
    })
}

/// Claims the run at `seq` for `node`.
async fn claim_row(
    tx: &Tx<'_>,
    seq: i64,
    request: &ClaimRequest,
    now: i64,
) -> Result<Claimed, StoreError> {
    let expires = now.saturating_add(i64::try_from(request.lease_ms).unwrap_or(i64::MAX));
    let row = tx
        .query_one(
            &format!(
                "UPDATE runs SET state = 'running', attempt = attempt + 1, fence = fence + 1,
                     lease_owner = $2, node = $2, lease_expires_ms = $3, started_ms = $4
                 WHERE seq = $1 RETURNING {CLAIMED_COLUMNS}"
            ),
            &[&seq, &request.node, &expires, &now],
        )
        .await
        .map_err(pg)?;
    let served = next_served(tx).await?;
    let tenant: String = row.get(1);
    let charged: i64 = tx
        .query_one(
            "UPDATE tenant_queue SET runnable = runnable - 1, running = running + 1,
                 deficit = deficit - est_cost, served = $2
             WHERE tenant = $1 RETURNING est_cost",
            &[&tenant, &served],
        )
        .await
        .map_err(pg)?
        .get(0);
    tx.execute(
        "UPDATE runs SET charged_cost = $2 WHERE seq = $1",
        &[&seq, &charged],
    )
    .await
    .map_err(pg)?;
    into_claimed(&row, expires, false)
}

/// Takes over a run whose lease expired: a crash redelivery, cancelled if a cancel was
/// asked for meanwhile, or dead past the policy.
async fn take_over(
    tx: &Tx<'_>,
    seq: i64,
    request: &ClaimRequest,
    now: i64,
) -> Result<Option<Claimed>, StoreError> {
    let row = tx
        .query_one(
            "SELECT id, tenant, retry, crash_redeliveries, attempt, target_kind, target_name,
                    target_version, fence, mode, cancel_requested
             FROM runs WHERE seq = $1 FOR UPDATE",
            &[&seq],
        )
        .await
        .map_err(pg)?;
    let run = parse_id(&row.get::<_, String>(0))?;
    let tenant: String = row.get(1);
    let retry: Vec<u8> = row.get(2);
    let crashes: i64 = row.get(3);
    let attempt = u32::try_from(row.get::<_, i64>(4)).unwrap_or(u32::MAX);
    let target = target_of(
        &row.get::<_, String>(5),
        &row.get::<_, String>(6),
        row.get(7),
    )?;
    let fence: i64 = row.get(8);
    let is_run = row.get::<_, String>(9) == "run";
    let cancel_requested: bool = row.get(10);
    let end = |state: RunPhase, error: RunError| {
        let (tenant, target) = (tenant.clone(), target.clone());
        async move {
            if is_run {
                crate::outbox::completion_webhooks(
                    tx,
                    &tenant,
                    run,
                    attempt,
                    u64::try_from(fence + 1).unwrap_or(0),
                    &target,
                    state,
                    Some(&error),
                    now,
                )
                .await?;
            }
            tx.execute(
                "UPDATE tenant_queue SET running = running - 1 WHERE tenant = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
            Ok::<_, StoreError>(())
        }
    };
    if cancel_requested {
        let error = RunError::new(
            ErrorKind::Cancelled,
            "cancelled; its host stopped meanwhile",
        );
        let report = RunReport::not_started(run, attempt, error.clone());
        tx.execute(
            "UPDATE runs SET state = 'cancelled', lease_owner = NULL, lease_expires_ms = NULL,
                 error_kind = 'cancelled', report = $2, finished_ms = $3, fence = fence + 1,
                 charged_cost = 0
             WHERE seq = $1",
            &[&seq, &encode("report", &report)?, &now],
        )
        .await
        .map_err(pg)?;
        end(RunPhase::Cancelled, error).await?;
        return Ok(None);
    }
    let retry: RetryPolicy = decode("retry policy", &retry)?;
    let crashes = crashes + 1;
    if crashes > i64::from(retry.max_crash_redeliveries) {
        let error = RunError::new(
            ErrorKind::Crashed,
            format!(
                "its host stopped while running it {crashes} times (at most {} redeliveries)",
                retry.max_crash_redeliveries
            ),
        );
        let report = RunReport::not_started(run, attempt, error.clone());
        let attempts = push_attempt(
            tx,
            seq,
            AttemptSummary {
                attempt,
                node: None,
                outcome: ErrorKind::Crashed.as_str().to_owned(),
                message: Some(error.message.clone()),
                finished_ms: now,
                usage: fluxo_core::Usage::default(),
            },
        )
        .await?;
        tx.execute(
            "UPDATE runs SET state = 'dead', crash_redeliveries = $2, lease_owner = NULL,
                 lease_expires_ms = NULL, error_kind = 'crashed', report = $3,
                 attempts = $4, finished_ms = $5, fence = fence + 1, charged_cost = 0
             WHERE seq = $1",
            &[&seq, &crashes, &encode("report", &report)?, &attempts, &now],
        )
        .await
        .map_err(pg)?;
        end(RunPhase::Dead, error).await?;
        return Ok(None);
    }
    let expires = now.saturating_add(i64::try_from(request.lease_ms).unwrap_or(i64::MAX));
    let row = tx
        .query_one(
            &format!(
                "UPDATE runs SET attempt = attempt + 1, fence = fence + 1, lease_owner = $2,
                     node = $2, lease_expires_ms = $3, started_ms = $4, crash_redeliveries = $5
                 WHERE seq = $1 RETURNING {CLAIMED_COLUMNS}"
            ),
            &[&seq, &request.node, &expires, &now, &crashes],
        )
        .await
        .map_err(pg)?;
    into_claimed(&row, expires, true).map(Some)
}

async fn claim(
    tx: &Tx<'_>,
    request: &ClaimRequest,
    quantum: i64,
) -> Result<Vec<Claimed>, StoreError> {
    // One claim at a time over the cluster: the round robin's state moves in turn.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await
        .map_err(pg)?;
    let now = now_ms();
    fire_timers(tx, now, quantum).await?;
    let max = i64::from(request.max);
    let per_tenant = i64::from(request.per_tenant);
    let mut claimed = Vec::new();
    let expired: Vec<i64> = tx
        .query(
            "SELECT seq FROM runs WHERE state = 'running' AND lease_expires_ms < $1
             ORDER BY lease_expires_ms LIMIT $2",
            &[&now, &max],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for seq in expired {
        match take_over(tx, seq, request, now).await {
            Ok(Some(run)) => claimed.push(run),
            Ok(None) => {}
            Err(error) if error.is_corrupt() => fail_corrupt(tx, seq, &error, now).await?,
            Err(error) => return Err(error),
        }
    }
    while i64::try_from(claimed.len()).unwrap_or(i64::MAX) < max {
        match pick(tx, now, per_tenant, quantum).await? {
            Some(seq) => match claim_row(tx, seq, request, now).await {
                Ok(run) => claimed.push(run),
                Err(error) if error.is_corrupt() => fail_corrupt(tx, seq, &error, now).await?,
                Err(error) => return Err(error),
            },
            None => break,
        }
    }
    Ok(claimed)
}

/// Timers: waiting runs whose timeout passed are queued (to go on at their
/// `on_timeout` port), each counted runnable for its tenant. At most 10 000 a claim.
async fn fire_timers(tx: &Tx<'_>, now: i64, quantum: i64) -> Result<(), StoreError> {
    let rows = tx
        .query(
            "UPDATE runs SET state = 'queued', available_ms = $1, wake_ms = NULL, reply = NULL
             WHERE seq IN (SELECT seq FROM runs WHERE state = 'waiting' AND wake_ms <= $1
                           ORDER BY wake_ms LIMIT 10000 FOR UPDATE SKIP LOCKED)
             RETURNING tenant",
            &[&now],
        )
        .await
        .map_err(pg)?;
    // One statement per tenant, not per run (a round trip each): 10 000 timers of one
    // tenant falling due at once are one upsert.
    let mut fired: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for row in rows {
        *fired.entry(row.get::<_, String>(0)).or_default() += 1;
    }
    for (tenant, count) in fired {
        add_runnable_n(tx, &tenant, count, quantum).await?;
    }
    Ok(())
}

/// Serializes, per contact, a message's delivery with a run starting to wait for that
/// contact (until the transaction ends). Without it, under READ COMMITTED, a delivery
/// could miss a wait committed at the same moment (the run not yet `waiting` to it) while
/// that commit missed the message (not yet in the inbox to it), and the message would
/// be lost to the run. SQLite needs none: its one writer serializes every write.
/// Lock order: this lock, then run rows, then `tenant_queue` rows (a commit takes it
/// before it touches the tenant's queue row).
pub(crate) async fn lock_conversation(
    tx: &Tx<'_>,
    tenant: &str,
    contact: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 7))",
        &[&tenant, &contact],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Records a contact's message and ends the waits of the runs waiting for it.
async fn deliver_reply(
    tx: &Tx<'_>,
    tenant: &str,
    contact: &str,
    message: &Message,
    quantum: i64,
) -> Result<Vec<RunId>, StoreError> {
    lock_conversation(tx, tenant, contact).await?;
    let now = now_ms();
    let bytes = encode("reply", message)?;
    let seq: i64 = tx
        .query_one(
            "INSERT INTO inbox (tenant, contact, message, received_ms) VALUES ($1, $2, $3, $4)
             RETURNING seq",
            &[&tenant, &contact, &bytes, &now],
        )
        .await
        .map_err(pg)?
        .get(0);
    let resumed = tx
        .query(
            "UPDATE runs SET state = 'queued', available_ms = $4, wake_ms = NULL,
                 reply = $3, reply_seq = $5
             WHERE tenant = $1 AND wait_contact = $2 AND state = 'waiting'
             RETURNING id",
            &[&tenant, &contact, &bytes, &now, &seq],
        )
        .await
        .map_err(pg)?;
    if !resumed.is_empty() {
        add_runnable_n(
            tx,
            tenant,
            i64::try_from(resumed.len()).unwrap_or(i64::MAX),
            quantum,
        )
        .await?;
    }
    resumed
        .iter()
        .map(|row| parse_id(&row.get::<_, String>(0)))
        .collect()
}

/// A run stopping at a wait: a message from its contact recorded since the run was
/// accepted and after the last one it was given ends the wait at once (the caller holds
/// [`lock_conversation`]). Whether it did.
pub(crate) async fn answer_from_inbox(
    tx: &Tx<'_>,
    seq: i64,
    tenant: &str,
    contact: &str,
    quantum: i64,
) -> Result<bool, StoreError> {
    let waiting = tx
        .query_opt(
            "SELECT i.seq, i.message FROM inbox i JOIN runs r ON r.seq = $1
             WHERE i.tenant = $2 AND i.contact = $3 AND i.received_ms >= r.created_ms
               AND i.seq > r.reply_seq
             ORDER BY i.seq LIMIT 1",
            &[&seq, &tenant, &contact],
        )
        .await
        .map_err(pg)?;
    let Some(row) = waiting else {
        return Ok(false);
    };
    let (inbox_seq, message): (i64, Vec<u8>) = (row.get(0), row.get(1));
    tx.execute(
        "UPDATE runs SET state = 'queued', available_ms = $2, wake_ms = NULL, reply = $3,
             reply_seq = $4
         WHERE seq = $1",
        &[&seq, &now_ms(), &message, &inbox_seq],
    )
    .await
    .map_err(pg)?;
    add_runnable(tx, tenant, quantum).await?;
    Ok(true)
}

/// Ends a run whose stored record does not decode: failed with the reason, so one bad
/// row never stops every tenant's claims.
async fn fail_corrupt(
    tx: &Tx<'_>,
    seq: i64,
    error: &StoreError,
    now: i64,
) -> Result<(), StoreError> {
    tracing::error!(seq, %error, "a stored run does not decode; it is failed");
    let row = tx
        .query_one(
            "SELECT id, tenant, attempt FROM runs WHERE seq = $1",
            &[&seq],
        )
        .await
        .map_err(pg)?;
    let tenant: String = row.get(1);
    let failure = RunError::new(
        ErrorKind::InvalidLimits,
        format!("the stored run does not decode: {error}"),
    )
    .blamed_on(Blame::Host);
    let report = parse_id(&row.get::<_, String>(0))
        .ok()
        .map(|run| {
            RunReport::not_started(
                run,
                u32::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                failure,
            )
        })
        .map(|report| encode("report", &report))
        .transpose()?;
    tx.execute(
        "UPDATE runs SET state = 'failed', error_kind = 'invalid_limits', report = $2,
             finished_ms = $3, lease_owner = NULL, lease_expires_ms = NULL,
             fence = fence + 1, charged_cost = 0
         WHERE seq = $1",
        &[&seq, &report, &now],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE tenant_queue SET running = GREATEST(0, running - 1) WHERE tenant = $1",
        &[&tenant],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn release(tx: &Tx<'_>, lease: &Lease, quantum: i64) -> Result<(), StoreError> {
    let row = tx
        .query_opt(
            "UPDATE runs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,
                 lease_expires_ms = NULL, available_ms = $3
             WHERE id = $1 AND fence = $2 AND state = 'running'
             RETURNING tenant, charged_cost",
            &[&lease.run.to_string(), &fence_of(lease), &now_ms()],
        )
        .await
        .map_err(pg)?;
    let Some(row) = row else {
        return Err(StoreError::lease_lost(format!(
            "run {} is no longer held under fence {}",
            lease.run, lease.fence
        )));
    };
    let tenant: String = row.get(0);
    let charged: i64 = row.get(1);
    // Given back unrun: the tenant gets back what the claim charged.
    tx.execute(
        "UPDATE tenant_queue SET running = running - 1, deficit = deficit + $2 WHERE tenant = $1",
        &[&tenant, &charged],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE runs SET charged_cost = 0 WHERE id = $1",
        &[&lease.run.to_string()],
    )
    .await
    .map_err(pg)?;
    add_runnable(tx, &tenant, quantum).await
}

async fn cancel(tx: &Tx<'_>, tenant: &str, id: RunId) -> Result<CancelOutcome, StoreError> {
    let row = tx
        .query_opt(
            "SELECT seq, state, attempt, target_kind, target_name, target_version, fence, mode
             FROM runs WHERE tenant = $1 AND id = $2 FOR UPDATE",
            &[&tenant, &id.to_string()],
        )
        .await
        .map_err(pg)?;
    let Some(row) = row else {
        return Err(StoreError::not_found(format!("no run {id}")));
    };
    let seq: i64 = row.get(0);
    let state = RunPhase::parse(&row.get::<_, String>(1))
        .map_err(|error| StoreError::corrupt("run state", error))?;
    match state {
        RunPhase::Queued | RunPhase::Retrying | RunPhase::Waiting => {
            let now = now_ms();
            let attempt = u32::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            let error = RunError::new(
                ErrorKind::Cancelled,
                if state == RunPhase::Waiting {
                    "cancelled while it waited; what it committed before the wait stays"
                } else {
                    "cancelled before it ran"
                },
            );
            let report = RunReport::not_started(id, attempt, error.clone());
            tx.execute(
                "UPDATE runs SET state = 'cancelled', error_kind = 'cancelled', report = $2,
                     finished_ms = $3, checkpoint = NULL, reply = NULL
                 WHERE seq = $1",
                &[&seq, &encode("report", &report)?, &now],
            )
            .await
            .map_err(pg)?;
            // A waiting run is not counted runnable.
            if state != RunPhase::Waiting {
                tx.execute(
                    "UPDATE tenant_queue SET runnable = runnable - 1 WHERE tenant = $1",
                    &[&tenant],
                )
                .await
                .map_err(pg)?;
            }
            if row.get::<_, String>(7) == "run" {
                let target = target_of(
                    &row.get::<_, String>(3),
                    &row.get::<_, String>(4),
                    row.get(5),
                )?;
                crate::outbox::completion_webhooks(
                    tx,
                    tenant,
                    id,
                    attempt,
                    u64::try_from(row.get::<_, i64>(6)).unwrap_or(0),
                    &target,
                    RunPhase::Cancelled,
                    Some(&error),
                    now,
                )
                .await?;
            }
            Ok(CancelOutcome::Cancelled)
        }
        RunPhase::Running => {
            tx.execute(
                "UPDATE runs SET cancel_requested = TRUE WHERE seq = $1",
                &[&seq],
            )
            .await
            .map_err(pg)?;
            Ok(CancelOutcome::Requested)
        }
        final_state => Ok(CancelOutcome::AlreadyFinal(final_state)),
    }
}

async fn retry_dead(
    tx: &Tx<'_>,
    tenant: &str,
    id: RunId,
    quantum: i64,
) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE runs SET state = 'queued', attempt = 0, crash_redeliveries = 0,
                 cancel_requested = FALSE, available_ms = $3, finished_ms = NULL,
                 committed_fence = NULL, committed_result = NULL
             WHERE tenant = $1 AND id = $2 AND state = 'dead'",
            &[&tenant, &id.to_string(), &now_ms()],
        )
        .await
        .map_err(pg)?;
    if changed == 1 {
        add_runnable(tx, tenant, quantum).await?;
    }
    Ok(changed == 1)
}

const RECORD_COLUMNS: &str = "id, target_kind, target_name, target_version, mode, state, attempt,
     error_kind, event, report, attempts, idempotency_key, created_ms, started_ms, finished_ms,
     available_ms, node, segments, wake_ms, limits";

fn into_record(row: &Row) -> Result<RunRecord, StoreError> {
    let state = RunPhase::parse(&row.get::<_, String>(5))
        .map_err(|error| StoreError::corrupt("run state", error))?;
    let target = target_of(
        &row.get::<_, String>(1),
        &row.get::<_, String>(2),
        row.get(3),
    )?;
    let error_kind = row
        .get::<_, Option<String>>(7)
        .map(|kind| {
            serde_json::from_value::<ErrorKind>(serde_json::Value::String(kind))
                .map_err(|error| StoreError::corrupt("error kind", error))
        })
        .transpose()?;
    let event: Vec<u8> = row.get(8);
    let report: Option<Vec<u8>> = row.get(9);
    let attempts: Option<Vec<u8>> = row.get(10);
    Ok(RunRecord {
        id: parse_id(&row.get::<_, String>(0))?,
        action: target.name().clone(),
        version: target.version(),
        mode: parse_mode(&row.get::<_, String>(4))?,
        state,
        attempt: u32::try_from(row.get::<_, i64>(6)).unwrap_or(0),
        error_kind,
        event: decode("event", &event)?,
        // Shown when it decodes: a run whose limits do not is failed for it, and listed.
        limits: decode("limits", &row.get::<_, Vec<u8>>(19)).ok(),
        report: report.map(|bytes| decode("report", &bytes)).transpose()?,
        attempts: match attempts {
            Some(bytes) => decode("attempts", &bytes)?,
            None => Vec::new(),
        },
        idempotency_key: row.get(11),
        created_ms: row.get(12),
        started_ms: row.get(13),
        finished_ms: row.get(14),
        next_attempt_ms: (state == RunPhase::Retrying).then(|| row.get(15)),
        node: row.get(16),
        segments: u32::try_from(row.get::<_, i64>(17)).unwrap_or(0),
        waiting_until_ms: row
            .get::<_, Option<i64>>(18)
            .filter(|_| state == RunPhase::Waiting),
    })
}

impl RunQueue for PostgresStore {
    fn on_work(&self, wake: fluxo_store::WorkHint) {
        crate::hint::Hints::register(&self.hints, &self.url, wake);
    }

    fn enqueue(&self, run: NewRun) -> StoreFuture<'_, Enqueued> {
        let backlog = self.options.backlog_per_tenant;
        let quantum = self.options.quantum;
        Box::pin(async move {
            let outcome = self
                .tx({
                    let run = run.clone();
                    move |tx| {
                        let run = run.clone();
                        Box::pin(async move { enqueue(tx, &run, backlog, quantum).await })
                    }
                })
                .await;
            let result = match (outcome, &run.idempotency_key) {
                // Another node accepted the same key at the same moment: that run.
                (Err(error), Some(key)) if error.is_conflict() => {
                    let tenant = run.tenant.to_string();
                    let key = key.clone();
                    self.read(move |client| {
                        Box::pin(async move {
                            let row = client
                                .query_one(
                                    "SELECT id, state FROM runs
                                     WHERE tenant = $1 AND idempotency_key = $2",
                                    &[&tenant, &key],
                                )
                                .await
                                .map_err(pg)?;
                            enqueued_earlier(&row)
                        })
                    })
                    .await
                }
                (outcome, _) => outcome,
            };
            if result.as_ref().is_ok_and(|enqueued| !enqueued.deduplicated) {
                self.hints.note_work();
            }
            result
        })
    }

    fn deliver_reply<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: &'a ContactId,
        message: &'a Message,
    ) -> StoreFuture<'a, Vec<RunId>> {
        let quantum = self.options.quantum;
        let (tenant, contact) = (tenant.to_string(), contact.to_string());
        Box::pin(async move {
            let resumed = self
                .tx(move |tx| {
                    let (tenant, contact, message) =
                        (tenant.clone(), contact.clone(), message.clone());
                    Box::pin(async move {
                        deliver_reply(tx, &tenant, &contact, &message, quantum).await
                    })
                })
                .await;
            if resumed.as_ref().is_ok_and(|ids| !ids.is_empty()) {
                self.hints.note_work();
            }
            resumed
        })
    }

    fn claim<'a>(&'a self, request: &'a ClaimRequest) -> StoreFuture<'a, Vec<Claimed>> {
        let request = request.clone();
        let quantum = self.options.quantum;
        Box::pin(self.tx(move |tx| {
            let request = request.clone();
            Box::pin(async move { claim(tx, &request, quantum).await })
        }))
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease, lease_ms: u64) -> StoreFuture<'a, Heartbeat> {
        let lease = *lease;
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let expires = now_ms().saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
                let row = client
                    .query_opt(
                        "UPDATE runs SET lease_expires_ms = $3
                         WHERE id = $1 AND fence = $2 AND state = 'running'
                         RETURNING cancel_requested",
                        &[&lease.run.to_string(), &fence_of(&lease), &expires],
                    )
                    .await
                    .map_err(pg)?;
                match row {
                    Some(row) => Ok(Heartbeat {
                        expires_ms: expires,
                        cancel_requested: row.get(0),
                    }),
                    None => Err(StoreError::lease_lost(format!(
                        "run {} is no longer held under fence {}",
                        lease.run, lease.fence
                    ))),
                }
            })
        }))
    }

    fn abandon<'a>(&'a self, node: &'a str) -> StoreFuture<'a, u64> {
        let node = node.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "UPDATE runs SET lease_expires_ms = 0
                         WHERE state = 'running' AND lease_owner = $1",
                        &[&node],
                    )
                    .await
                    .map_err(pg)
            })
        }))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let lease = *lease;
        let quantum = self.options.quantum;
        Box::pin(async move {
            self.tx(move |tx| Box::pin(async move { release(tx, &lease, quantum).await }))
                .await?;
            self.hints.note_work();
            Ok(())
        })
    }

    fn cancel<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, CancelOutcome> {
        let tenant = tenant.to_string();
        Box::pin(self.tx(move |tx| {
            let tenant = tenant.clone();
            Box::pin(async move { cancel(tx, &tenant, id).await })
        }))
    }

    fn retry_dead<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        let quantum = self.options.quantum;
        Box::pin(async move {
            let queued = self
                .tx(move |tx| {
                    let tenant = tenant.clone();
                    Box::pin(async move { retry_dead(tx, &tenant, id, quantum).await })
                })
                .await?;
            if queued {
                self.hints.note_work();
            }
            Ok(queued)
        })
    }

    fn run<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, Option<RunRecord>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        &format!("SELECT {RECORD_COLUMNS} FROM runs WHERE tenant = $1 AND id = $2"),
                        &[&tenant, &id.to_string()],
                    )
                    .await
                    .map_err(pg)?
                    .as_ref()
                    .map(into_record)
                    .transpose()
            })
        }))
    }

    fn run_by_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>> {
        let (tenant, key) = (tenant.to_string(), key.to_owned());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        &format!(
                            "SELECT {RECORD_COLUMNS} FROM runs
                             WHERE tenant = $1 AND idempotency_key = $2"
                        ),
                        &[&tenant, &key],
                    )
                    .await
                    .map_err(pg)?
                    .as_ref()
                    .map(into_record)
                    .transpose()
            })
        }))
    }

    fn runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a RunFilter,
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        let tenant = tenant.to_string();
        let action = filter.action.as_ref().map(ToString::to_string);
        let state = filter.state.map(RunPhase::as_str);
        let limit = i64::from(filter.limit.unwrap_or(50).min(500));
        let after = filter.after.map(|id| id.to_string());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let cursor: Option<i64> = match &after {
                    Some(id) => Some(
                        client
                            .query_opt(
                                "SELECT seq FROM runs WHERE tenant = $1 AND id = $2",
                                &[&tenant, id],
                            )
                            .await
                            .map_err(pg)?
                            .ok_or_else(|| {
                                StoreError::not_found(format!("no run {id} to list after"))
                            })?
                            .get(0),
                    ),
                    None => None,
                };
                let order = if cursor.is_some() { "ASC" } else { "DESC" };
                // The state and the cursor are written into the statement only when
                // given, so the plan is a range of `runs_by_state` (state, tenant, seq)
                // from the cursor rather than a walk over every row of the tenant.
                let state_test = if state.is_some() {
                    "state = $3"
                } else {
                    "$3::TEXT IS NULL"
                };
                let cursor_test = if cursor.is_some() {
                    "seq > $5"
                } else {
                    "$5::BIGINT IS NULL"
                };
                client
                    .query(
                        &format!(
                            "SELECT {RECORD_COLUMNS} FROM runs WHERE tenant = $1 AND mode = 'run'
                               AND ($2::TEXT IS NULL OR target_name = $2)
                               AND {state_test} AND {cursor_test}
                             ORDER BY seq {order} LIMIT $4"
                        ),
                        &[&tenant, &action, &state, &limit, &cursor],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(into_record)
                    .collect()
            })
        }))
    }

    fn run_counts(&self) -> StoreFuture<'_, RunCounts> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let rows = client
                    .query("SELECT state, COUNT(*) FROM runs GROUP BY state", &[])
                    .await
                    .map_err(pg)?;
                let mut counts = RunCounts::default();
                for row in rows {
                    let state = RunPhase::parse(&row.get::<_, String>(0))
                        .map_err(|error| StoreError::corrupt("run state", error))?;
                    counts
                        .by_state
                        .push((state, u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)));
                }
                Ok(counts)
            })
        }))
    }

    fn prune<'a>(&'a self, scope: &'a PruneScope) -> StoreFuture<'a, Pruned> {
        let before_ms = scope.before_ms;
        let tenant = scope.tenant_text();
        let except = scope.except_texts();
        Box::pin(self.tx(move |tx| {
            // The transaction may be retried: each try gets its own copies.
            let (tenant, except) = (tenant.clone(), except.clone());
            Box::pin(async move {
                crate::state::sweep_some(tx, 100).await?;
                // Contacts' messages outlive no wait that could still take them.
                let inbox = tx
                    .execute(
                        "DELETE FROM inbox WHERE seq IN (
                             SELECT seq FROM inbox WHERE received_ms < $1 LIMIT 10000)",
                        &[&(now_ms() - fluxo_store::INBOX_RETENTION_MS)],
                    )
                    .await
                    .map_err(pg)?;
                tx.execute(
                    "DELETE FROM run_trees WHERE (tenant, root) IN (
                         SELECT tenant, root FROM run_trees WHERE updated_ms < $1 LIMIT 10000)",
                    &[&(now_ms() - fluxo_store::RUN_TREE_RETENTION_MS)],
                )
                .await
                .map_err(pg)?;
                // In batches: a long retention's backlog never makes one huge transaction.
                let runs = tx
                    .execute(
                        "DELETE FROM runs WHERE seq IN (
                             SELECT seq FROM runs WHERE finished_ms IS NOT NULL AND finished_ms < $1
                               AND state IN ('succeeded', 'failed', 'dead', 'cancelled')
                               AND ($2::TEXT IS NULL OR tenant = $2)
                               AND NOT (tenant = ANY($3::TEXT[]))
                             LIMIT 1000)",
                        &[&before_ms, &tenant, &except],
                    )
                    .await
                    .map_err(pg)?;
                let outbox = tx
                    .execute(
                        "DELETE FROM outbox WHERE id IN (
                             SELECT id FROM outbox
                             WHERE status IN ('sent', 'failed') AND updated_ms < $1
                               AND ($2::TEXT IS NULL OR tenant = $2)
                               AND NOT (tenant = ANY($3::TEXT[]))
                             LIMIT 1000)",
                        &[&before_ms, &tenant, &except],
                    )
                    .await
                    .map_err(pg)?;
                Ok(Pruned {
                    runs,
                    outbox,
                    inbox,
                })
            })
        }))
    }
}
