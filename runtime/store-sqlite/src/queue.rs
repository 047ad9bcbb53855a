//! The run queue: enqueue (durable on return, idempotent per key, a backlog cap per
//! tenant), claims (fair across tenants by deficit round robin weighted by cost,
//! interactive runs first, per-tenant caps, expired leases taken over), heartbeats,
//! release, cancel, retry of dead runs, reads, pruning.
//!
//! Fairness lives in `tenant_queue`, one row per tenant: `runnable` and `running`
//! counts, a `deficit` in cost units, and `served`, the claim counter's value when the
//! tenant was last served (round-robin order). A claim visits tenants below their cap in
//! `served` order and takes the first with a positive deficit and a run available; when
//! none has credit left, every waiting tenant gets one more quantum (a new round). A
//! claim charges the tenant's average run cost; the commit corrects it with the real
//! cost, so a tenant whose runs are expensive gets fewer of them per round.

use fluxo_core::codec::{decode, encode};
use fluxo_core::{
    ContactId, ErrorKind, Event, Limits, Message, RetryPolicy, RunError, RunId, RunReport, TenantId,
};
use fluxo_store::{
    AttemptSummary, CancelOutcome, ClaimRequest, Claimed, Enqueued, Heartbeat, Lease, NewRun,
    PruneScope, Pruned, Resume, RunCounts, RunFilter, RunPhase, RunQueue, RunRecord, StoreError,
    StoreFuture,
};
use rusqlite::{Connection, Row, params};

use crate::writer::sql;
use crate::{SqliteStore, now_ms, optional};
use fluxo_store::columns::{mode_text, parse_id, parse_mode, target_columns, target_of};

/// Tenants looked at per pick.
const CANDIDATES: u32 = 64;

/// Bumps the claim counter and returns its new value.
fn next_served(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .query_row(
            "UPDATE counters SET value = value + 1 WHERE name = 'served' RETURNING value",
            [],
            |row| row.get(0),
        )
        .map_err(sql)
}

/// Records that `tenant` has one more runnable run (a new one, a retry, a release),
/// giving it a quantum of credit when it was idle.
pub(crate) fn add_runnable(
    connection: &Connection,
    tenant: &str,
    quantum: i64,
) -> Result<(), StoreError> {
    add_runnable_n(connection, tenant, 1, quantum)
}

/// Records that `tenant` has `count` more runnable runs in one statement, exactly as
/// `count` calls of [`add_runnable`] would (the credit rule looks at the counts before
/// the first of them).
pub(crate) fn add_runnable_n(
    connection: &Connection,
    tenant: &str,
    count: i64,
    quantum: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO tenant_queue (tenant, runnable, deficit, served)
             VALUES (?1, ?3, ?2, (SELECT value FROM counters WHERE name = 'served'))
             ON CONFLICT (tenant) DO UPDATE SET
                 deficit = CASE WHEN runnable = 0 AND running = 0 THEN MAX(deficit, ?2) ELSE deficit END,
                 runnable = runnable + ?3",
        )
        .and_then(|mut statement| statement.execute(params![tenant, quantum, count]))
        .map_err(sql)?;
    Ok(())
}

/// Appends an attempt's summary to a run's list.
pub(crate) fn push_attempt(
    connection: &Connection,
    seq: i64,
    summary: AttemptSummary,
) -> Result<Vec<u8>, StoreError> {
    let stored: Option<Vec<u8>> = connection
        .query_row(
            "SELECT attempts FROM runs WHERE seq = ?1",
            params![seq],
            |row| row.get(0),
        )
        .map_err(sql)?;
    let mut attempts: Vec<AttemptSummary> = match stored {
        Some(bytes) => decode("attempts", &bytes)?,
        None => Vec::new(),
    };
    attempts.push(summary);
    Ok(encode("attempts", &attempts)?)
}

/// Counts `spawned` against their tree ([`fluxo_core::MAX_RUNS_PER_TREE`]); the refusal
/// when the tree would pass its cap (the caller rolls the count back with the effects).
pub(crate) fn count_tree(
    connection: &Connection,
    tenant: &str,
    spawned: &[NewRun],
    now: i64,
) -> Result<Option<fluxo_core::RunError>, StoreError> {
    let Some(root) = spawned.first().and_then(|run| run.event.root) else {
        return Ok(None);
    };
    let added = i64::try_from(spawned.len()).unwrap_or(i64::MAX);
    let started: i64 = connection
        .query_row(
            "INSERT INTO run_trees (tenant, root, started, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, root) DO UPDATE
               SET started = started + excluded.started, updated_ms = excluded.updated_ms
             RETURNING started",
            params![tenant, root.to_string(), added, now],
            |row| row.get(0),
        )
        .map_err(sql)?;
    let started = u64::try_from(started).unwrap_or(u64::MAX);
    Ok((started > fluxo_core::MAX_RUNS_PER_TREE).then(|| fluxo_store::tree_refusal(root, started)))
}

pub(crate) fn enqueue(
    connection: &Connection,
    run: &NewRun,
    backlog: u64,
    quantum: i64,
) -> Result<Enqueued, StoreError> {
    let tenant = run.tenant.as_str();
    if let Some(key) = &run.idempotency_key {
        let earlier: Option<(String, String)> = optional(connection.query_row(
            "SELECT id, state FROM runs WHERE tenant = ?1 AND idempotency_key = ?2",
            params![tenant, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        ))?;
        if let Some((id, state)) = earlier {
            return Ok(Enqueued {
                id: parse_id(&id)?,
                deduplicated: true,
                state: RunPhase::parse(&state)
                    .map_err(|error| StoreError::corrupt("run state", error))?,
            });
        }
    }
    let waiting: i64 = optional(connection.query_row(
        "SELECT runnable FROM tenant_queue WHERE tenant = ?1",
        params![tenant],
        |row| row.get(0),
    ))?
    .unwrap_or(0);
    if u64::try_from(waiting).unwrap_or(0) >= backlog {
        return Err(StoreError::overloaded(format!(
            "tenant {tenant} has {waiting} runs waiting, its backlog's cap"
        )));
    }
    let (kind, name, version) = target_columns(&run.target);
    let now = now_ms();
    connection
        .execute(
            "INSERT INTO runs (id, tenant, target_kind, target_name, target_version, mode, priority,
                 state, available_ms, idempotency_key, event, limits, retry, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12, ?8)",
            params![
                run.id.to_string(),
                tenant,
                kind,
                name,
                version,
                mode_text(run.mode),
                run.priority.rank(),
                now,
                run.idempotency_key,
                encode("event", &run.event)?,
                encode("limits", &run.limits)?,
                encode("retry policy", &run.retry)?,
            ],
        )
        .map_err(sql)?;
    add_runnable(connection, tenant, quantum)?;
    Ok(Enqueued {
        id: run.id,
        deduplicated: false,
        state: RunPhase::Queued,
    })
}

/// The next run to claim, if any: interactive runs first, then deficit round robin.
fn pick(
    connection: &Connection,
    now: i64,
    per_tenant: u32,
    quantum: i64,
) -> Result<Option<i64>, StoreError> {
    let interactive = optional(connection.query_row(
        "SELECT r.seq FROM runs r JOIN tenant_queue t ON t.tenant = r.tenant
         WHERE r.priority > 0 AND r.state IN ('queued', 'retrying') AND r.available_ms <= ?1
           AND t.running < ?2
         ORDER BY r.seq LIMIT 1",
        params![now, per_tenant],
        |row| row.get::<_, i64>(0),
    ))?;
    if interactive.is_some() {
        return Ok(interactive);
    }
    for round in 0..2 {
        let candidates: Vec<(String, i64)> = {
            let mut statement = connection
                .prepare_cached(
                    "SELECT tenant, deficit FROM tenant_queue
                     WHERE runnable > 0 AND running < ?1 ORDER BY served LIMIT ?2",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map(params![per_tenant, CANDIDATES], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        if candidates.is_empty() {
            return Ok(None);
        }
        // The largest credit among tenants with a run available now.
        let mut best: Option<i64> = None;
        for (tenant, deficit) in candidates {
            let next = optional(connection.query_row(
                "SELECT seq FROM runs WHERE tenant = ?1 AND state IN ('queued', 'retrying')
                   AND available_ms <= ?2
                 ORDER BY priority DESC, available_ms, seq LIMIT 1",
                params![tenant, now],
                |row| row.get::<_, i64>(0),
            ))?;
            let Some(seq) = next else {
                // Only future retries: to the back of the line, so it does not hold the
                // front of every later pick.
                let served = next_served(connection)?;
                connection
                    .execute(
                        "UPDATE tenant_queue SET served = ?2 WHERE tenant = ?1",
                        params![tenant, served],
                    )
                    .map_err(sql)?;
                continue;
            };
            if deficit > 0 {
                return Ok(Some(seq));
            }
            best = Some(best.map_or(deficit, |best: i64| best.max(deficit)));
        }
        let Some(best) = best else {
            return Ok(None);
        };
        if round == 1 {
            return Ok(None);
        }
        // Every tenant with work has used its credit: as many rounds as it takes for
        // the first of them to have credit again, at once. DRR stays work-conserving —
        // a worker never idles while a run is available — however much more than a
        // quantum one run cost (a 700 ms run is 7 quanta).
        let rounds = (1 - best).div_euclid(quantum.max(1)) + 1;
        connection
            .execute(
                "UPDATE tenant_queue SET deficit = MIN(deficit + ?1 * ?2, ?2) WHERE runnable > 0",
                params![rounds, quantum],
            )
            .map_err(sql)?;
    }
    Ok(None)
}

struct ClaimedRow {
    id: String,
    tenant: String,
    kind: String,
    name: String,
    version: i64,
    mode: String,
    event: Vec<u8>,
    limits: Vec<u8>,
    retry: Vec<u8>,
    attempt: i64,
    fence: i64,
    crash_redeliveries: i64,
    checkpoint: Option<String>,
    reply: Option<Vec<u8>>,
    segments: i64,
}

fn claimed_row(row: &Row<'_>) -> rusqlite::Result<ClaimedRow> {
    Ok(ClaimedRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        kind: row.get(2)?,
        name: row.get(3)?,
        version: row.get(4)?,
        mode: row.get(5)?,
        event: row.get(6)?,
        limits: row.get(7)?,
        retry: row.get(8)?,
        attempt: row.get(9)?,
        fence: row.get(10)?,
        crash_redeliveries: row.get(11)?,
        checkpoint: row.get(12)?,
        reply: row.get(13)?,
        segments: row.get(14)?,
    })
}

const CLAIMED_COLUMNS: &str = "id, tenant, target_kind, target_name, target_version, mode, event,
     limits, retry, attempt, fence, crash_redeliveries, checkpoint, reply, segments";

fn into_claimed(
    row: &ClaimedRow,
    expires_ms: i64,
    taken_over: bool,
) -> Result<Claimed, StoreError> {
    Ok(Claimed {
        lease: Lease {
            run: parse_id(&row.id)?,
            attempt: u32::try_from(row.attempt).unwrap_or(u32::MAX),
            fence: u64::try_from(row.fence).unwrap_or(0),
            expires_ms,
        },
        tenant: row
            .tenant
            .parse()
            .map_err(|error| StoreError::corrupt("run tenant", error))?,
        target: target_of(&row.kind, &row.name, row.version)?,
        event: decode::<Event>("event", &row.event)?,
        limits: decode::<Limits>("limits", &row.limits)?,
        retry: decode::<RetryPolicy>("retry policy", &row.retry)?,
        mode: parse_mode(&row.mode)?,
        crash_redeliveries: u32::try_from(row.crash_redeliveries).unwrap_or(u32::MAX),
        taken_over,
        resume: match &row.checkpoint {
            Some(checkpoint) => Some(Resume {
                checkpoint: checkpoint.clone(),
                reply: row
                    .reply
                    .as_deref()
                    .map(|bytes| decode::<Message>("reply", bytes))
                    .transpose()?,
                segments: u32::try_from(row.segments).unwrap_or(u32::MAX),
            }),
            None => None,
        },
    })
}

/// Claims the run at `seq` for `node`.
fn claim_row(
    connection: &Connection,
    seq: i64,
    request: &ClaimRequest,
    now: i64,
) -> Result<Claimed, StoreError> {
    let expires = now.saturating_add(i64::try_from(request.lease_ms).unwrap_or(i64::MAX));
    let row = connection
        .query_row(
            &format!(
                "UPDATE runs SET state = 'running', attempt = attempt + 1, fence = fence + 1,
                     lease_owner = ?2, node = ?2, lease_expires_ms = ?3, started_ms = ?4
                 WHERE seq = ?1 RETURNING {CLAIMED_COLUMNS}"
            ),
            params![seq, request.node, expires, now],
            claimed_row,
        )
        .map_err(sql)?;
    let served = next_served(connection)?;
    let charged: i64 = connection
        .query_row(
            "UPDATE tenant_queue SET runnable = runnable - 1, running = running + 1,
                 deficit = deficit - est_cost, served = ?2
             WHERE tenant = ?1 RETURNING est_cost",
            params![row.tenant, served],
            |row| row.get(0),
        )
        .map_err(sql)?;
    // Remembered so the commit (or a release) refunds exactly what was charged.
    connection
        .execute(
            "UPDATE runs SET charged_cost = ?2 WHERE seq = ?1",
            params![seq, charged],
        )
        .map_err(sql)?;
    into_claimed(&row, expires, false)
}

/// Takes over a run whose lease expired: a crash redelivery, or dead past the policy.
fn take_over(
    connection: &Connection,
    seq: i64,
    request: &ClaimRequest,
    now: i64,
) -> Result<Option<Claimed>, StoreError> {
    #[allow(clippy::type_complexity, reason = "one row's columns")]
    let (id, tenant, retry, crashes, attempt, kind, name, version, fence, mode, cancel_requested): (
        String,
        String,
        Vec<u8>,
        i64,
        i64,
        String,
        String,
        i64,
        i64,
        String,
        bool,
    ) = connection
        .query_row(
            "SELECT id, tenant, retry, crash_redeliveries, attempt, target_kind, target_name,
                    target_version, fence, mode, cancel_requested
             FROM runs WHERE seq = ?1",
            params![seq],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                    row.get(9)?,
                    row.get(10)?,
                ))
            },
        )
        .map_err(sql)?;
    let run = parse_id(&id)?;
    let attempt_now = u32::try_from(attempt).unwrap_or(u32::MAX);
    let is_run = mode == "run";
    let target = target_of(&kind, &name, version)?;
    if cancel_requested {
        // Cancelled while its node was down: it ends here, never run again.
        let error = RunError::new(
            ErrorKind::Cancelled,
            "cancelled; its host stopped meanwhile",
        );
        let report = RunReport::not_started(run, attempt_now, error.clone());
        connection
            .execute(
                "UPDATE runs SET state = 'cancelled', lease_owner = NULL, lease_expires_ms = NULL,
                     error_kind = 'cancelled', report = ?2, finished_ms = ?3, fence = fence + 1,
                     charged_cost = 0
                 WHERE seq = ?1",
                params![seq, encode("report", &report)?, now],
            )
            .map_err(sql)?;
        connection
            .execute(
                "UPDATE tenant_queue SET running = running - 1 WHERE tenant = ?1",
                params![tenant],
            )
            .map_err(sql)?;
        if is_run {
            crate::outbox::completion_webhooks(
                connection,
                &tenant,
                run,
                attempt_now,
                u64::try_from(fence + 1).unwrap_or(0),
                &target,
                RunPhase::Cancelled,
                Some(&error),
                now,
            )?;
        }
        return Ok(None);
    }
    let retry: RetryPolicy = decode("retry policy", &retry)?;
    let crashes = crashes + 1;
    if crashes > i64::from(retry.max_crash_redeliveries) {
        let attempt = attempt_now;
        let error = RunError::new(
            ErrorKind::Crashed,
            format!(
                "its host stopped while running it {crashes} times (at most {} redeliveries)",
                retry.max_crash_redeliveries
            ),
        );
        let report = RunReport::not_started(run, attempt, error.clone());
        let attempts = push_attempt(
            connection,
            seq,
            AttemptSummary {
                attempt,
                node: None,
                outcome: ErrorKind::Crashed.as_str().to_owned(),
                message: Some(error.message.clone()),
                finished_ms: now,
                usage: fluxo_core::Usage::default(),
            },
        )?;
        connection
            .execute(
                "UPDATE runs SET state = 'dead', crash_redeliveries = ?2, lease_owner = NULL,
                     lease_expires_ms = NULL, error_kind = 'crashed', report = ?3,
                     attempts = ?4, finished_ms = ?5, fence = fence + 1, charged_cost = 0
                 WHERE seq = ?1",
                params![seq, crashes, encode("report", &report)?, attempts, now],
            )
            .map_err(sql)?;
        connection
            .execute(
                "UPDATE tenant_queue SET running = running - 1 WHERE tenant = ?1",
                params![tenant],
            )
            .map_err(sql)?;
        if is_run {
            crate::outbox::completion_webhooks(
                connection,
                &tenant,
                run,
                attempt,
                u64::try_from(fence + 1).unwrap_or(0),
                &target,
                RunPhase::Dead,
                Some(&error),
                now,
            )?;
        }
        return Ok(None);
    }
    let expires = now.saturating_add(i64::try_from(request.lease_ms).unwrap_or(i64::MAX));
    let row = connection
        .query_row(
            &format!(
                "UPDATE runs SET attempt = attempt + 1, fence = fence + 1, lease_owner = ?2,
                     node = ?2, lease_expires_ms = ?3, started_ms = ?4, crash_redeliveries = ?5
                 WHERE seq = ?1 RETURNING {CLAIMED_COLUMNS}"
            ),
            params![seq, request.node, expires, now, crashes],
            claimed_row,
        )
        .map_err(sql)?;
    into_claimed(&row, expires, true).map(Some)
}

fn claim(
    connection: &Connection,
    request: &ClaimRequest,
    quantum: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let now = now_ms();
    fire_timers(connection, now, quantum)?;
    let mut claimed = Vec::new();
    let expired: Vec<i64> = {
        let mut statement = connection
            .prepare_cached(
                "SELECT seq FROM runs WHERE state = 'running' AND lease_expires_ms < ?1
                 ORDER BY lease_expires_ms LIMIT ?2",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![now, request.max], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    for seq in expired {
        match take_over(connection, seq, request, now) {
            Ok(Some(run)) => claimed.push(run),
            Ok(None) => {}
            Err(error) if error.is_corrupt() => fail_corrupt(connection, seq, &error, now)?,
            Err(error) => return Err(error),
        }
    }
    while claimed.len() < usize::try_from(request.max).unwrap_or(usize::MAX) {
        match pick(connection, now, request.per_tenant, quantum)? {
            Some(seq) => match claim_row(connection, seq, request, now) {
                Ok(run) => claimed.push(run),
                Err(error) if error.is_corrupt() => fail_corrupt(connection, seq, &error, now)?,
                Err(error) => return Err(error),
            },
            None => break,
        }
    }
    Ok(claimed)
}

/// Timers: waiting runs whose timeout passed are queued (to go on at their
/// `on_timeout` port), each counted runnable for its tenant. At most 10 000 a claim.
fn fire_timers(connection: &Connection, now: i64, quantum: i64) -> Result<(), StoreError> {
    let tenants: Vec<String> = {
        let mut statement = connection
            .prepare_cached(
                "UPDATE runs SET state = 'queued', available_ms = ?1, wake_ms = NULL, reply = NULL
                 WHERE seq IN (SELECT seq FROM runs WHERE state = 'waiting' AND wake_ms <= ?1
                               ORDER BY wake_ms LIMIT 10000)
                 RETURNING tenant",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![now], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    // One statement per tenant, not per run: 10 000 timers of one tenant falling due at
    // once are one upsert (BENCHMARKS.md, workflows: timers).
    let mut fired: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for tenant in tenants {
        *fired.entry(tenant).or_default() += 1;
    }
    for (tenant, count) in fired {
        add_runnable_n(connection, &tenant, count, quantum)?;
    }
    Ok(())
}

/// Records a contact's message and ends the waits of the runs waiting for it.
pub(crate) fn deliver_reply(
    connection: &Connection,
    tenant: &str,
    contact: &str,
    message: &Message,
    quantum: i64,
) -> Result<Vec<RunId>, StoreError> {
    let now = now_ms();
    let bytes = encode("reply", message)?;
    let seq: i64 = connection
        .query_row(
            "INSERT INTO inbox (tenant, contact, message, received_ms) VALUES (?1, ?2, ?3, ?4)
             RETURNING seq",
            params![tenant, contact, bytes, now],
            |row| row.get(0),
        )
        .map_err(sql)?;
    let resumed: Vec<String> = {
        let mut statement = connection
            .prepare_cached(
                "UPDATE runs SET state = 'queued', available_ms = ?4, wake_ms = NULL,
                     reply = ?3, reply_seq = ?5
                 WHERE tenant = ?1 AND wait_contact = ?2 AND state = 'waiting'
                 RETURNING id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![tenant, contact, bytes, now, seq], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    if !resumed.is_empty() {
        add_runnable_n(
            connection,
            tenant,
            i64::try_from(resumed.len()).unwrap_or(i64::MAX),
            quantum,
        )?;
    }
    resumed.iter().map(|id| parse_id(id)).collect()
}

/// A run stopping at a wait: a message from its contact recorded since the run was
/// accepted and after the last one it was given ends the wait at once. Whether it did.
pub(crate) fn answer_from_inbox(
    connection: &Connection,
    seq: i64,
    tenant: &str,
    contact: &str,
    quantum: i64,
) -> Result<bool, StoreError> {
    let waiting = optional(connection.query_row(
        "SELECT i.seq, i.message FROM inbox i JOIN runs r ON r.seq = ?1
         WHERE i.tenant = ?2 AND i.contact = ?3 AND i.received_ms >= r.created_ms
           AND i.seq > r.reply_seq
         ORDER BY i.seq LIMIT 1",
        params![seq, tenant, contact],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
    ))?;
    let Some((inbox_seq, message)) = waiting else {
        return Ok(false);
    };
    connection
        .execute(
            "UPDATE runs SET state = 'queued', available_ms = ?2, wake_ms = NULL, reply = ?3,
                 reply_seq = ?4
             WHERE seq = ?1",
            params![seq, now_ms(), message, inbox_seq],
        )
        .map_err(sql)?;
    add_runnable(connection, tenant, quantum)?;
    Ok(true)
}

/// Ends a run whose stored record does not decode (a downgrade, a bug, a damaged disk):
/// failed with the reason, so one bad row never stops every tenant's claims.
fn fail_corrupt(
    connection: &Connection,
    seq: i64,
    error: &StoreError,
    now: i64,
) -> Result<(), StoreError> {
    tracing::error!(seq, %error, "a stored run does not decode; it is failed");
    let (id, tenant, attempt): (String, String, i64) = connection
        .query_row(
            "SELECT id, tenant, attempt FROM runs WHERE seq = ?1",
            params![seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(sql)?;
    let failure = RunError::new(
        ErrorKind::InvalidLimits,
        format!("the stored run does not decode: {error}"),
    )
    .blamed_on(fluxo_core::Blame::Host);
    let report = parse_id(&id)
        .ok()
        .map(|run| RunReport::not_started(run, u32::try_from(attempt).unwrap_or(0), failure))
        .map(|report| encode("report", &report))
        .transpose()?;
    connection
        .execute(
            "UPDATE runs SET state = 'failed', error_kind = 'invalid_limits', report = ?2,
                 finished_ms = ?3, lease_owner = NULL, lease_expires_ms = NULL,
                 fence = fence + 1, charged_cost = 0
             WHERE seq = ?1",
            params![seq, report, now],
        )
        .map_err(sql)?;
    // It was counted running (claimed just now, or held by a lease that expired).
    connection
        .execute(
            "UPDATE tenant_queue SET running = MAX(0, running - 1) WHERE tenant = ?1",
            params![tenant],
        )
        .map_err(sql)?;
    Ok(())
}

fn heartbeat(
    connection: &Connection,
    lease: &Lease,
    lease_ms: u64,
) -> Result<Heartbeat, StoreError> {
    let expires = now_ms().saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
    let cancel = optional(connection.query_row(
        "UPDATE runs SET lease_expires_ms = ?3
         WHERE id = ?1 AND fence = ?2 AND state = 'running' RETURNING cancel_requested",
        params![
            lease.run.to_string(),
            i64::try_from(lease.fence).unwrap_or(-1),
            expires
        ],
        |row| row.get::<_, bool>(0),
    ))?;
    match cancel {
        Some(cancel_requested) => Ok(Heartbeat {
            expires_ms: expires,
            cancel_requested,
        }),
        None => Err(StoreError::lease_lost(format!(
            "run {} is no longer held under fence {}",
            lease.run, lease.fence
        ))),
    }
}

fn release(connection: &Connection, lease: &Lease, quantum: i64) -> Result<(), StoreError> {
    let tenant = optional(connection.query_row(
        "UPDATE runs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,
             lease_expires_ms = NULL, available_ms = ?3
         WHERE id = ?1 AND fence = ?2 AND state = 'running' RETURNING tenant",
        params![
            lease.run.to_string(),
            i64::try_from(lease.fence).unwrap_or(-1),
            now_ms()
        ],
        |row| row.get::<_, String>(0),
    ))?;
    let Some(tenant) = tenant else {
        return Err(StoreError::lease_lost(format!(
            "run {} is no longer held under fence {}",
            lease.run, lease.fence
        )));
    };
    // Given back unrun: the tenant gets back what the claim charged.
    connection
        .execute(
            "UPDATE tenant_queue SET running = running - 1,
                 deficit = deficit + (SELECT charged_cost FROM runs WHERE id = ?2)
             WHERE tenant = ?1",
            params![tenant, lease.run.to_string()],
        )
        .map_err(sql)?;
    connection
        .execute(
            "UPDATE runs SET charged_cost = 0 WHERE id = ?1",
            params![lease.run.to_string()],
        )
        .map_err(sql)?;
    add_runnable(connection, &tenant, quantum)
}

fn cancel(connection: &Connection, tenant: &str, id: RunId) -> Result<CancelOutcome, StoreError> {
    let row = optional(connection.query_row(
        "SELECT seq, state, attempt, target_kind, target_name, target_version, fence, mode
         FROM runs WHERE tenant = ?1 AND id = ?2",
        params![tenant, id.to_string()],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, String>(7)?,
            ))
        },
    ))?;
    let Some((seq, state, attempt, kind, name, version, fence, mode)) = row else {
        return Err(StoreError::not_found(format!("no run {id}")));
    };
    let state = RunPhase::parse(&state).map_err(|error| StoreError::corrupt("run state", error))?;
    match state {
        RunPhase::Queued | RunPhase::Retrying | RunPhase::Waiting => {
            let now = now_ms();
            let attempt = u32::try_from(attempt).unwrap_or(0);
            let error = RunError::new(
                ErrorKind::Cancelled,
                if state == RunPhase::Waiting {
                    "cancelled while it waited; what it committed before the wait stays"
                } else {
                    "cancelled before it ran"
                },
            );
            let report = RunReport::not_started(id, attempt, error.clone());
            connection
                .execute(
                    "UPDATE runs SET state = 'cancelled', error_kind = 'cancelled', report = ?2,
                         finished_ms = ?3, checkpoint = NULL, reply = NULL
                     WHERE seq = ?1",
                    params![seq, encode("report", &report)?, now],
                )
                .map_err(sql)?;
            // A waiting run is not counted runnable.
            if state != RunPhase::Waiting {
                connection
                    .execute(
                        "UPDATE tenant_queue SET runnable = runnable - 1 WHERE tenant = ?1",
                        params![tenant],
                    )
                    .map_err(sql)?;
            }
            if mode == "run" {
                let target = target_of(&kind, &name, version)?;
                crate::outbox::completion_webhooks(
                    connection,
                    tenant,
                    id,
                    attempt,
                    u64::try_from(fence).unwrap_or(0),
                    &target,
                    RunPhase::Cancelled,
                    Some(&error),
                    now,
                )?;
            }
            Ok(CancelOutcome::Cancelled)
        }
        RunPhase::Running => {
            connection
                .execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE seq = ?1",
                    params![seq],
                )
                .map_err(sql)?;
            Ok(CancelOutcome::Requested)
        }
        final_state => Ok(CancelOutcome::AlreadyFinal(final_state)),
    }
}

fn retry_dead(
    connection: &Connection,
    tenant: &str,
    id: RunId,
    quantum: i64,
) -> Result<bool, StoreError> {
    let changed = connection
        .execute(
            "UPDATE runs SET state = 'queued', attempt = 0, crash_redeliveries = 0,
                 cancel_requested = 0, available_ms = ?3, finished_ms = NULL,
                 committed_attempt = NULL, committed_result = NULL, committed_fence = NULL
             WHERE tenant = ?1 AND id = ?2 AND state = 'dead'",
            params![tenant, id.to_string(), now_ms()],
        )
        .map_err(sql)?;
    if changed == 1 {
        add_runnable(connection, tenant, quantum)?;
    }
    Ok(changed == 1)
}

const RECORD_COLUMNS: &str = "id, target_kind, target_name, target_version, mode, state, attempt,
     error_kind, event, report, attempts, idempotency_key, created_ms, started_ms, finished_ms,
     available_ms, node, segments, wake_ms, limits";

struct RecordRow {
    id: String,
    kind: String,
    name: String,
    version: i64,
    mode: String,
    state: String,
    attempt: i64,
    error_kind: Option<String>,
    event: Vec<u8>,
    report: Option<Vec<u8>>,
    attempts: Option<Vec<u8>>,
    idempotency_key: Option<String>,
    created_ms: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    available_ms: i64,
    node: Option<String>,
    segments: i64,
    wake_ms: Option<i64>,
    limits: Vec<u8>,
}

fn record_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        version: row.get(3)?,
        mode: row.get(4)?,
        state: row.get(5)?,
        attempt: row.get(6)?,
        error_kind: row.get(7)?,
        event: row.get(8)?,
        report: row.get(9)?,
        attempts: row.get(10)?,
        idempotency_key: row.get(11)?,
        created_ms: row.get(12)?,
        started_ms: row.get(13)?,
        finished_ms: row.get(14)?,
        available_ms: row.get(15)?,
        node: row.get(16)?,
        segments: row.get(17)?,
        wake_ms: row.get(18)?,
        limits: row.get(19)?,
    })
}

fn into_record(row: RecordRow) -> Result<RunRecord, StoreError> {
    let state =
        RunPhase::parse(&row.state).map_err(|error| StoreError::corrupt("run state", error))?;
    let target = target_of(&row.kind, &row.name, row.version)?;
    let error_kind = row
        .error_kind
        .map(|kind| {
            serde_json::from_value::<ErrorKind>(serde_json::Value::String(kind))
                .map_err(|error| StoreError::corrupt("error kind", error))
        })
        .transpose()?;
    Ok(RunRecord {
        id: parse_id(&row.id)?,
        action: target.name().clone(),
        version: target.version(),
        mode: parse_mode(&row.mode)?,
        state,
        attempt: u32::try_from(row.attempt).unwrap_or(0),
        error_kind,
        event: decode("event", &row.event)?,
        // Shown when it decodes: a run whose limits do not is failed for it, and listed.
        limits: decode("limits", &row.limits).ok(),
        report: row
            .report
            .map(|bytes| decode("report", &bytes))
            .transpose()?,
        attempts: match row.attempts {
            Some(bytes) => decode("attempts", &bytes)?,
            None => Vec::new(),
        },
        idempotency_key: row.idempotency_key,
        created_ms: row.created_ms,
        started_ms: row.started_ms,
        finished_ms: row.finished_ms,
        next_attempt_ms: (state == RunPhase::Retrying).then_some(row.available_ms),
        node: row.node,
        segments: u32::try_from(row.segments).unwrap_or(0),
        waiting_until_ms: row.wake_ms.filter(|_| state == RunPhase::Waiting),
    })
}

/// The listing's statement: parameters tenant (?1), action or NULL (?2), state (?3),
/// limit (?4), cursor's seq (?5). Newest first; with a cursor, the runs after it oldest
/// first (so a follower that pages with the last one it saw never skips any).
///
/// The state and the cursor are written into the statement only when given, so that the
/// planner sees plain comparisons and walks `runs_by_state` (state, tenant, seq) from the
/// cursor: a `?3 IS NULL OR state = ?3` form read every row of the tenant (test
/// `tests::a_listing_by_state_walks_the_state_index`).
pub(crate) fn list_statement(by_state: bool, after_cursor: bool) -> String {
    let order = if after_cursor { "ASC" } else { "DESC" };
    let state_test = if by_state { "state = ?3" } else { "?3 IS NULL" };
    let cursor_test = if after_cursor {
        "seq > ?5"
    } else {
        "?5 IS NULL"
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM runs WHERE tenant = ?1 AND mode = 'run'
           AND (?2 IS NULL OR target_name = ?2) AND {state_test} AND {cursor_test}
         ORDER BY seq {order} LIMIT ?4"
    )
}

fn list(
    connection: &Connection,
    tenant: &str,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, StoreError> {
    let action = filter.action.as_ref().map(ToString::to_string);
    let state = filter.state.map(RunPhase::as_str);
    let limit = filter.limit.unwrap_or(50).min(500);
    let after: Option<i64> = match filter.after {
        Some(id) => Some(
            optional(connection.query_row(
                "SELECT seq FROM runs WHERE tenant = ?1 AND id = ?2",
                params![tenant, id.to_string()],
                |row| row.get(0),
            ))?
            .ok_or_else(|| StoreError::not_found(format!("no run {id} to list after")))?,
        ),
        None => None,
    };
    let mut statement = connection
        .prepare_cached(&list_statement(state.is_some(), after.is_some()))
        .map_err(sql)?;
    let rows = statement
        .query_map(params![tenant, action, state, limit, after], record_row)
        .map_err(sql)?;
    rows.map(|row| into_record(row.map_err(sql)?)).collect()
}

impl RunQueue for SqliteStore {
    fn enqueue(&self, run: NewRun) -> StoreFuture<'_, Enqueued> {
        let backlog = self.inner.options.backlog_per_tenant;
        let quantum = self.inner.options.quantum;
        Box::pin(self.write(move |connection| enqueue(connection, &run, backlog, quantum)))
    }

    fn claim<'a>(&'a self, request: &'a ClaimRequest) -> StoreFuture<'a, Vec<Claimed>> {
        let request = request.clone();
        let quantum = self.inner.options.quantum;
        Box::pin(self.write(move |connection| claim(connection, &request, quantum)))
    }

    fn heartbeat<'a>(&'a self, lease: &'a Lease, lease_ms: u64) -> StoreFuture<'a, Heartbeat> {
        let lease = *lease;
        Box::pin(self.write(move |connection| heartbeat(connection, &lease, lease_ms)))
    }

    fn abandon<'a>(&'a self, node: &'a str) -> StoreFuture<'a, u64> {
        let node = node.to_owned();
        Box::pin(self.write(move |connection| {
            let changed = connection
                .execute(
                    "UPDATE runs SET lease_expires_ms = 0 WHERE state = 'running' AND lease_owner = ?1",
                    params![node],
                )
                .map_err(sql)?;
            Ok(u64::try_from(changed).unwrap_or(0))
        }))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let lease = *lease;
        let quantum = self.inner.options.quantum;
        Box::pin(self.write(move |connection| release(connection, &lease, quantum)))
    }

    fn cancel<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, CancelOutcome> {
        let tenant = tenant.to_string();
        Box::pin(self.write(move |connection| cancel(connection, &tenant, id)))
    }

    fn retry_dead<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, bool> {
        let tenant = tenant.to_string();
        let quantum = self.inner.options.quantum;
        Box::pin(self.write(move |connection| retry_dead(connection, &tenant, id, quantum)))
    }

    fn run_by_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>> {
        let (tenant, key) = (tenant.to_string(), key.to_owned());
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM runs WHERE tenant = ?1 AND idempotency_key = ?2"
                ),
                params![tenant, key],
                record_row,
            ))?
            .map(into_record)
            .transpose()
        }))
    }

    fn deliver_reply<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: &'a ContactId,
        message: &'a Message,
    ) -> StoreFuture<'a, Vec<RunId>> {
        let quantum = self.inner.options.quantum;
        let (tenant, contact, message) = (tenant.to_string(), contact.to_string(), message.clone());
        Box::pin(self.write(move |connection| {
            deliver_reply(connection, &tenant, &contact, &message, quantum)
        }))
    }

    fn run<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, Option<RunRecord>> {
        let tenant = tenant.to_string();
        Box::pin(self.read(move |connection| {
            optional(connection.query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM runs WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id.to_string()],
                record_row,
            ))?
            .map(into_record)
            .transpose()
        }))
    }

    fn runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a RunFilter,
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        let tenant = tenant.to_string();
        let filter = filter.clone();
        Box::pin(self.read(move |connection| list(connection, &tenant, &filter)))
    }

    fn run_counts(&self) -> StoreFuture<'_, RunCounts> {
        Box::pin(self.read(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT state, COUNT(*) FROM runs GROUP BY state")
                .map_err(sql)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(sql)?;
            let mut counts = RunCounts::default();
            for row in rows {
                let (state, count) = row.map_err(sql)?;
                let state = RunPhase::parse(&state)
                    .map_err(|error| StoreError::corrupt("run state", error))?;
                counts
                    .by_state
                    .push((state, u64::try_from(count).unwrap_or(0)));
            }
            Ok(counts)
        }))
    }

    fn prune<'a>(&'a self, scope: &'a PruneScope) -> StoreFuture<'a, Pruned> {
        let before_ms = scope.before_ms;
        let tenant = scope.tenant_text();
        // The tenants left out, as a JSON array for `json_each` (one parameter, any length).
        let except =
            serde_json::to_string(&scope.except_texts()).unwrap_or_else(|_| "[]".to_owned());
        Box::pin(self.write(move |connection| {
            crate::state::sweep_some(connection, 100)?;
            // Contacts' messages outlive no wait that could still take them.
            let inbox = connection
                .execute(
                    "DELETE FROM inbox WHERE seq IN (
                         SELECT seq FROM inbox WHERE received_ms < ?1 LIMIT 10000)",
                    params![now_ms() - fluxo_store::INBOX_RETENTION_MS],
                )
                .map_err(sql)?;
            connection
                .execute(
                    "DELETE FROM run_trees WHERE rowid IN (
                         SELECT rowid FROM run_trees WHERE updated_ms < ?1 LIMIT 10000)",
                    params![now_ms() - fluxo_store::RUN_TREE_RETENTION_MS],
                )
                .map_err(sql)?;
            let runs = connection
                .execute(
                    "DELETE FROM runs WHERE seq IN (
                         SELECT seq FROM runs WHERE finished_ms IS NOT NULL AND finished_ms < ?1
                           AND state IN ('succeeded', 'failed', 'dead', 'cancelled')
                           AND (?2 IS NULL OR tenant = ?2)
                           AND tenant NOT IN (SELECT value FROM json_each(?3))
                         LIMIT 1000)",
                    params![before_ms, tenant, except],
                )
                .map_err(sql)?;
            let outbox = connection
                .execute(
                    "DELETE FROM outbox WHERE id IN (
                         SELECT id FROM outbox WHERE status IN ('sent', 'failed') AND updated_ms < ?1
                           AND (?2 IS NULL OR tenant = ?2)
                           AND tenant NOT IN (SELECT value FROM json_each(?3))
                         LIMIT 1000)",
                    params![before_ms, tenant, except],
                )
                .map_err(sql)?;
            Ok(Pruned {
                runs: u64::try_from(runs).unwrap_or(0),
                outbox: u64::try_from(outbox).unwrap_or(0),
                inbox: u64::try_from(inbox).unwrap_or(0),
            })
        }))
    }
}
