//! The ledger: one attempt's commit in one transaction (one write job of the writer's
//! batch, in its own savepoint): the lease's fence checked, the effects applied (contacts,
//! state with the tenant's cap checked after the changes, e-mail outbox rows), the run's
//! new state and report, the fairness bookkeeping, and completion webhooks. A tenant
//! whose contacts the platform owns gets one contact-update outbox row instead of a
//! change to the embedded contact.

use fluxo_core::codec::{decode, encode};
use fluxo_core::{Blame, ContactId, Effect, ErrorKind, RunError, RunId, TenantId};
use fluxo_store::{
    AttemptSummary, Commit, Committed, ContactChange, ContactOwner, ContactUpdate, Decision,
    Ledger, OutboxPayload, RunMode, RunPhase, StoreError, StoreFuture,
};
use rusqlite::{Connection, params};

use crate::queue::{add_runnable, push_attempt};
use crate::writer::sql;
use crate::{Failpoint, SqliteOptions, SqliteStore, now_ms, optional};
use fluxo_store::columns::target_of;

struct Row {
    seq: i64,
    state: String,
    fence: i64,
    mode: String,
    committed_fence: Option<i64>,
    committed_result: Option<Vec<u8>>,
    charged_cost: i64,
    cancel_requested: bool,
    kind: String,
    name: String,
    version: i64,
    tenant: String,
}

fn load(connection: &Connection, run: RunId) -> Result<Option<Row>, StoreError> {
    optional(connection.query_row(
        "SELECT seq, state, fence, mode, committed_fence, committed_result, cancel_requested,
                target_kind, target_name, target_version, tenant, charged_cost
         FROM runs WHERE id = ?1",
        params![run.to_string()],
        |row| {
            Ok(Row {
                seq: row.get(0)?,
                state: row.get(1)?,
                fence: row.get(2)?,
                mode: row.get(3)?,
                committed_fence: row.get(4)?,
                committed_result: row.get(5)?,
                cancel_requested: row.get(6)?,
                kind: row.get(7)?,
                name: row.get(8)?,
                version: row.get(9)?,
                tenant: row.get(10)?,
                charged_cost: row.get(11)?,
            })
        },
    ))
}

pub(crate) fn commit(
    connection: &Connection,
    commit: Commit,
    options: &SqliteOptions,
) -> Result<Committed, StoreError> {
    let lease = commit.lease;
    let Some(row) = load(connection, lease.run)? else {
        return Err(StoreError::not_found(format!("no run {}", lease.run)));
    };
    // The same lease committing again (a retried commit whose answer was lost): the
    // first result, applied once. Keyed on the fence, unique per lease.
    if row.committed_fence == Some(i64::try_from(lease.fence).unwrap_or(-1)) {
        let first: Committed = match &row.committed_result {
            Some(bytes) => decode("commit result", bytes)?,
            None => return Err(StoreError::corrupt("commit result", "missing")),
        };
        return Ok(Committed {
            first: false,
            ..first
        });
    }
    if row.state != "running" || row.fence != i64::try_from(lease.fence).unwrap_or(-1) {
        return Err(StoreError::lease_lost(format!(
            "run {} is no longer held under fence {} (state {})",
            lease.run, lease.fence, row.state
        )));
    }
    if row.tenant != commit.tenant.as_str() {
        return Err(StoreError::conflict(format!(
            "run {} belongs to another tenant",
            lease.run
        )));
    }
    let mut decision = commit.decision;
    let mut report = commit.report;
    if row.cancel_requested {
        decision = Decision::Cancelled;
        report = report.failed_with(RunError::new(
            ErrorKind::Cancelled,
            "cancelled while it ran; nothing was applied",
        ));
    }
    let mode = if row.mode == "test" {
        RunMode::Test
    } else {
        RunMode::Run
    };
    let now = now_ms();
    let mut refused = None;
    let applies = matches!(decision, Decision::Succeeded | Decision::Wait { .. });
    if applies && mode == RunMode::Run && !commit.effects.is_empty() {
        connection.execute_batch("SAVEPOINT effects").map_err(sql)?;
        let applied = apply_effects(
            connection,
            Writes {
                run: lease.run,
                fence: lease.fence,
                tenant: &row.tenant,
                contact: commit.contact.as_ref(),
                contact_owner: commit.contact_owner,
                effects: &commit.effects,
            },
            options,
            now,
        );
        match applied {
            Ok(None) => {
                match crate::queue::count_tree(connection, &row.tenant, &commit.spawned, now)? {
                    None => {
                        // Started runs are not held to the backlog cap (the run that asked
                        // was accepted under it): the per-run quota, the depth and the tree
                        // cap bound them.
                        for child in &commit.spawned {
                            crate::queue::enqueue(connection, child, u64::MAX, options.quantum)?;
                        }
                        connection.execute_batch("RELEASE effects").map_err(sql)?;
                        report.applied = true;
                    }
                    Some(refusal) => {
                        connection
                            .execute_batch("ROLLBACK TO effects; RELEASE effects")
                            .map_err(sql)?;
                        decision = Decision::Failed;
                        report = report.failed_with(refusal.clone());
                        refused = Some(refusal);
                    }
                }
            }
            Ok(Some(refusal)) => {
                connection
                    .execute_batch("ROLLBACK TO effects; RELEASE effects")
                    .map_err(sql)?;
                decision = Decision::Failed;
                report = report.failed_with(refusal.clone());
                refused = Some(refusal);
            }
            Err(error) => {
                // The writer rolls the whole job back (its savepoint) on this error.
                return Err(error);
            }
        }
    } else if applies && mode == RunMode::Run {
        report.applied = true;
    }
    let wait = decision
        .wait()
        .map(|(until_ms, checkpoint)| (until_ms, checkpoint.to_owned()));
    let (state, finished, available) = match decision {
        Decision::Succeeded => (RunPhase::Succeeded, Some(now), None),
        Decision::Failed => (RunPhase::Failed, Some(now), None),
        Decision::Dead => (RunPhase::Dead, Some(now), None),
        Decision::Cancelled => (RunPhase::Cancelled, Some(now), None),
        Decision::Retry { at_ms } => (RunPhase::Retrying, None, Some(at_ms)),
        Decision::Wait { .. } => (RunPhase::Waiting, None, None),
    };
    let committed = Committed {
        state,
        refused,
        first: true,
    };
    let error = report.error.clone();
    let attempts = push_attempt(
        connection,
        row.seq,
        AttemptSummary {
            attempt: lease.attempt,
            node: Some(commit.node.clone()),
            outcome: fluxo_store::attempt_outcome(state, error.as_ref()),
            message: error.as_ref().map(|e| e.message.clone()),
            finished_ms: now,
            usage: report.usage,
        },
    )?;
    connection
        .execute(
            "UPDATE runs SET state = ?2, report = ?3, error_kind = ?4, attempts = ?5,
                 lease_owner = NULL, lease_expires_ms = NULL, finished_ms = ?6,
                 available_ms = COALESCE(?7, available_ms), committed_attempt = ?8,
                 committed_result = ?9, cancel_requested = 0, committed_fence = ?10,
                 charged_cost = 0,
                 checkpoint = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN NULL
                                   ELSE checkpoint END,
                 reply = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN NULL
                              ELSE reply END
             WHERE seq = ?1",
            params![
                row.seq,
                state.as_str(),
                encode("report", &report)?,
                error.as_ref().map(|e| e.kind.as_str()),
                attempts,
                finished,
                available,
                lease.attempt,
                encode("commit result", &committed)?,
                i64::try_from(lease.fence).unwrap_or(-1),
            ],
        )
        .map_err(sql)?;
    let cost = commit.cost.units();
    connection
        .execute(
            "UPDATE tenant_queue SET running = running - 1,
                 deficit = deficit - (?2 - ?3),
                 est_cost = MAX(1, (est_cost * 7 + ?2 + 7) / 8)
             WHERE tenant = ?1",
            params![row.tenant, cost, row.charged_cost],
        )
        .map_err(sql)?;
    if state == RunPhase::Retrying {
        add_runnable(connection, &row.tenant, options.quantum)?;
    }
    if let Some((until_ms, checkpoint)) = wait {
        // The next segment's attempts count from one again: a retry policy bounds the
        // failures of one segment, not of a conversation.
        connection
            .execute(
                "UPDATE runs SET checkpoint = ?2, wake_ms = ?3, wait_contact = ?4, reply = NULL,
                     attempt = 0, crash_redeliveries = 0, segments = segments + 1
                 WHERE seq = ?1",
                params![
                    row.seq,
                    checkpoint,
                    until_ms,
                    commit.contact.as_ref().map(ToString::to_string)
                ],
            )
            .map_err(sql)?;
        if let Some(contact) = &commit.contact {
            crate::queue::answer_from_inbox(
                connection,
                row.seq,
                &row.tenant,
                contact.as_str(),
                options.quantum,
            )?;
        }
    }
    if mode == RunMode::Run {
        let target = target_of(&row.kind, &row.name, row.version)?;
        crate::outbox::completion_webhooks(
            connection,
            &row.tenant,
            lease.run,
            lease.attempt,
            lease.fence,
            &target,
            state,
            error.as_ref(),
            now,
        )?;
    }
    Ok(committed)
}

/// What one commit writes: its effects, whose they are, and where contact changes go.
#[derive(Clone, Copy)]
struct Writes<'a> {
    run: RunId,
    /// The committing lease's fence (0 for a direct run): names a platform's update.
    fence: u64,
    tenant: &'a str,
    contact: Option<&'a ContactId>,
    contact_owner: ContactOwner,
    effects: &'a [Effect],
}

/// Applies a successful run's effects; `Some(refusal)` when the tenant's state cap
/// refuses them (the caller rolls back).
fn apply_effects(
    connection: &Connection,
    writes: Writes<'_>,
    options: &SqliteOptions,
    now: i64,
) -> Result<Option<RunError>, StoreError> {
    let Writes {
        run,
        fence,
        tenant,
        contact,
        contact_owner,
        effects,
    } = writes;
    if let Some(contact) = contact
        && effects.iter().any(Effect::touches_contact)
    {
        match contact_owner {
            ContactOwner::Embedded => {
                crate::contacts::apply(connection, tenant, contact, effects, now)?;
            }
            ContactOwner::Platform => {
                let sequence = crate::contacts::next_update(connection, tenant, contact)?;
                let update = ContactUpdate::new(
                    run,
                    fence,
                    contact.clone(),
                    sequence,
                    ContactChange::of(effects),
                );
                let key = update.dedup_key();
                let payload = OutboxPayload::ContactUpdate(update);
                crate::outbox::insert(connection, tenant, Some(run), &key, &payload, now)?;
            }
        }
    }
    if options.failpoint == Some(Failpoint::AbortAfterContacts) {
        std::process::abort();
    }
    if let Some(refusal) = crate::state::apply(connection, tenant, contact, effects, options, now)?
    {
        return Ok(Some(refusal));
    }
    for (dedup_key, payload) in effects.iter().filter_map(fluxo_store::outbox_row) {
        crate::outbox::insert(connection, tenant, Some(run), dedup_key, &payload, now)?;
    }
    Ok(None)
}

impl Ledger for SqliteStore {
    fn commit(&self, commit_in: Commit) -> StoreFuture<'_, Committed> {
        let options = self.inner.options.clone();
        Box::pin(self.write(move |connection| commit(connection, commit_in, &options)))
    }

    fn apply_effects<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: Option<&'a ContactId>,
        contact_owner: ContactOwner,
        run: RunId,
        effects: &'a [Effect],
    ) -> StoreFuture<'a, Option<RunError>> {
        let options = self.inner.options.clone();
        let (tenant, contact, effects) = (tenant.to_string(), contact.cloned(), effects.to_vec());
        Box::pin(self.write(move |connection| {
            connection.execute_batch("SAVEPOINT effects").map_err(sql)?;
            let applied = apply_effects(
                connection,
                Writes {
                    run,
                    fence: 0,
                    tenant: &tenant,
                    contact: contact.as_ref(),
                    contact_owner,
                    effects: &effects,
                },
                &options,
                now_ms(),
            );
            match applied {
                Ok(None) => {
                    connection.execute_batch("RELEASE effects").map_err(sql)?;
                    Ok(None)
                }
                Ok(Some(refusal)) => {
                    connection
                        .execute_batch("ROLLBACK TO effects; RELEASE effects")
                        .map_err(sql)?;
                    Ok(Some(refusal))
                }
                // The writer rolls the whole job back (its savepoint) on this error.
                Err(error) => Err(error),
            }
        }))
    }
}

/// The refusal of a run whose state would pass the tenant's cap.
pub(crate) fn state_cap_refusal(tenant: &str, bytes: u64, cap: u64) -> RunError {
    RunError::new(
        ErrorKind::QuotaExceeded,
        format!(
            "state cap: tenant {tenant} would hold {bytes} bytes of state, over its {cap}-byte cap; nothing was applied"
        ),
    )
    .blamed_on(Blame::Guest)
}
