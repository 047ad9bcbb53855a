//! The ledger on PostgreSQL: one attempt's commit in one transaction — the run's row
//! locked and its fence checked, the effects applied (contacts, state with the tenant's
//! cap checked after the changes, e-mail outbox rows) inside a savepoint, the run's new
//! state and report, the fairness bookkeeping, and completion webhooks. A tenant whose
//! contacts the platform owns gets one contact-update outbox row instead of a change to
//! the embedded contact.

use fluxo_core::codec::{decode, encode};
use fluxo_core::{Blame, ContactId, Effect, ErrorKind, RunError, RunId, TenantId};
use fluxo_store::{
    AttemptSummary, Commit, Committed, ContactChange, ContactOwner, ContactUpdate, Decision,
    Ledger, OutboxPayload, RunMode, RunPhase, StoreError, StoreFuture,
};

use crate::queue::{add_runnable, push_attempt};
use crate::{PostgresOptions, PostgresStore, Tx, now_ms, pg};
use fluxo_store::columns::target_of;

/// Applies a successful run's effects; `Some(refusal)` when the tenant's state cap
/// refuses them (the caller rolls back to before them).
async fn apply_effects(
    tx: &Tx<'_>,
    run: RunId,
    tenant: &str,
    contact: Option<&ContactId>,
    writes: &Writes<'_>,
    options: &PostgresOptions,
    now: i64,
) -> Result<Option<RunError>, StoreError> {
    let effects = writes.effects;
    if let Some(contact) = contact
        && effects.iter().any(Effect::touches_contact)
    {
        match writes.contact_owner {
            ContactOwner::Embedded => {
                crate::contacts::apply(tx, tenant, contact, effects, now).await?;
            }
            ContactOwner::Platform => {
                let sequence = crate::contacts::next_update(tx, tenant, contact).await?;
                let update = ContactUpdate::new(
                    run,
                    writes.fence,
                    contact.clone(),
                    sequence,
                    ContactChange::of(effects),
                );
                let key = update.dedup_key();
                let payload = OutboxPayload::ContactUpdate(update);
                crate::outbox::insert(tx, tenant, Some(run), &key, &payload, now).await?;
            }
        }
    }
    if let Some(refusal) = crate::state::apply(tx, tenant, contact, effects, options, now).await? {
        return Ok(Some(refusal));
    }
    for (dedup_key, payload) in effects.iter().filter_map(fluxo_store::outbox_row) {
        crate::outbox::insert(tx, tenant, Some(run), dedup_key, &payload, now).await?;
    }
    Ok(None)
}

/// What one commit writes: its effects, and the runs its start requests became; where
/// contact changes go, and the committing lease's fence (0 for a direct run), which names
/// a platform's update.
struct Writes<'a> {
    effects: &'a [Effect],
    spawned: &'a [fluxo_store::NewRun],
    contact_owner: ContactOwner,
    fence: u64,
}

/// Applies effects inside a savepoint: kept when they fit, rolled back when the state cap
/// or the run tree's cap refuses them.
async fn apply_in_savepoint(
    tx: &Tx<'_>,
    run: RunId,
    tenant: &str,
    contact: Option<&ContactId>,
    writes: Writes<'_>,
    options: &PostgresOptions,
    now: i64,
) -> Result<Option<RunError>, StoreError> {
    tx.batch_execute("SAVEPOINT effects").await.map_err(pg)?;
    let mut refusal = apply_effects(tx, run, tenant, contact, &writes, options, now).await?;
    if refusal.is_none() {
        refusal = crate::queue::count_tree(tx, tenant, writes.spawned, now).await?;
    }
    let end = if refusal.is_some() {
        "ROLLBACK TO SAVEPOINT effects; RELEASE SAVEPOINT effects"
    } else {
        "RELEASE SAVEPOINT effects"
    };
    tx.batch_execute(end).await.map_err(pg)?;
    Ok(refusal)
}

async fn commit(
    tx: &Tx<'_>,
    commit: Commit,
    options: &PostgresOptions,
) -> Result<Committed, StoreError> {
    let lease = commit.lease;
    let fence = i64::try_from(lease.fence).unwrap_or(-1);
    let Some(row) = tx
        .query_opt(
            "SELECT seq, state, fence, mode, committed_fence, committed_result, cancel_requested,
                    target_kind, target_name, target_version, tenant, charged_cost
             FROM runs WHERE id = $1 FOR UPDATE",
            &[&lease.run.to_string()],
        )
        .await
        .map_err(pg)?
    else {
        return Err(StoreError::not_found(format!("no run {}", lease.run)));
    };
    let seq: i64 = row.get(0);
    let state_now: String = row.get(1);
    let row_tenant: String = row.get(10);
    // The same lease committing again (a retried commit whose answer was lost): the
    // first result, applied once. Keyed on the fence, unique per lease.
    if row.get::<_, Option<i64>>(4) == Some(fence) {
        let first: Committed = match row.get::<_, Option<Vec<u8>>>(5) {
            Some(bytes) => decode("commit result", &bytes)?,
            None => return Err(StoreError::corrupt("commit result", "missing")),
        };
        return Ok(Committed {
            first: false,
            ..first
        });
    }
    if state_now != "running" || row.get::<_, i64>(2) != fence {
        return Err(StoreError::lease_lost(format!(
            "run {} is no longer held under fence {} (state {state_now})",
            lease.run, lease.fence
        )));
    }
    if row_tenant != commit.tenant.as_str() {
        return Err(StoreError::conflict(format!(
            "run {} belongs to another tenant",
            lease.run
        )));
    }
    let mut decision = commit.decision;
    let mut report = commit.report;
    if row.get::<_, bool>(6) {
        decision = Decision::Cancelled;
        report = report.failed_with(RunError::new(
            ErrorKind::Cancelled,
            "cancelled while it ran; nothing was applied",
        ));
    }
    let mode = if row.get::<_, String>(3) == "test" {
        RunMode::Test
    } else {
        RunMode::Run
    };
    let now = now_ms();
    let mut refused = None;
    let applies = matches!(decision, Decision::Succeeded | Decision::Wait { .. });
    if applies && mode == RunMode::Run {
        if !commit.effects.is_empty()
            && let Some(refusal) = apply_in_savepoint(
                tx,
                lease.run,
                &row_tenant,
                commit.contact.as_ref(),
                Writes {
                    effects: &commit.effects,
                    spawned: &commit.spawned,
                    contact_owner: commit.contact_owner,
                    fence: lease.fence,
                },
                options,
                now,
            )
            .await?
        {
            decision = Decision::Failed;
            report = report.failed_with(refusal.clone());
            refused = Some(refusal);
        } else {
            report.applied = true;
        }
    }
    let wait = decision
        .wait()
        .map(|(until_ms, checkpoint)| (until_ms, checkpoint.to_owned()));
    // Before this transaction locks the tenant's queue row: a delivery takes the
    // conversation's lock first and that row after, so the other order would deadlock.
    let contact = commit.contact.as_ref().map(ToString::to_string);
    if wait.is_some()
        && let Some(contact) = &contact
    {
        crate::queue::lock_conversation(tx, &row_tenant, contact).await?;
    }
    // Started runs are not held to the backlog cap (the run that asked was accepted
    // under it): the per-run quota, the depth and the tree cap (counted with the
    // effects, above) bound them. After the conversation's lock, since queueing locks
    // the tenant's queue row.
    if applies && mode == RunMode::Run && refused.is_none() {
        for child in &commit.spawned {
            crate::queue::enqueue(tx, child, u64::MAX, options.quantum).await?;
        }
    }
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
        tx,
        seq,
        AttemptSummary {
            attempt: lease.attempt,
            node: Some(commit.node.clone()),
            outcome: fluxo_store::attempt_outcome(state, error.as_ref()),
            message: error.as_ref().map(|e| e.message.clone()),
            finished_ms: now,
            usage: report.usage,
        },
    )
    .await?;
    tx.execute(
        "UPDATE runs SET state = $2, report = $3, error_kind = $4, attempts = $5,
             lease_owner = NULL, lease_expires_ms = NULL, finished_ms = $6,
             available_ms = COALESCE($7, available_ms), committed_fence = $8,
             committed_result = $9, cancel_requested = FALSE, charged_cost = 0,
             checkpoint = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN NULL
                               ELSE checkpoint END,
             reply = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN NULL
                          ELSE reply END
         WHERE seq = $1",
        &[
            &seq,
            &state.as_str(),
            &encode("report", &report)?,
            &error.as_ref().map(|e| e.kind.as_str()),
            &attempts,
            &finished,
            &available,
            &fence,
            &encode("commit result", &committed)?,
        ],
    )
    .await
    .map_err(pg)?;
    let cost = commit.cost.units();
    let charged: i64 = row.get(11);
    tx.execute(
        "UPDATE tenant_queue SET running = running - 1,
             deficit = deficit - ($2::BIGINT - $3::BIGINT),
             est_cost = GREATEST(1, (est_cost * 7 + $2::BIGINT + 7) / 8)
         WHERE tenant = $1",
        &[&row_tenant, &cost, &charged],
    )
    .await
    .map_err(pg)?;
    if state == RunPhase::Retrying {
        add_runnable(tx, &row_tenant, options.quantum).await?;
    }
    if let Some((until_ms, checkpoint)) = wait {
        // The next segment's attempts count from one again: a retry policy bounds the
        // failures of one segment, not of a conversation.
        tx.execute(
            "UPDATE runs SET checkpoint = $2, wake_ms = $3, wait_contact = $4, reply = NULL,
                 attempt = 0, crash_redeliveries = 0, segments = segments + 1
             WHERE seq = $1",
            &[&seq, &checkpoint, &until_ms, &contact],
        )
        .await
        .map_err(pg)?;
        if let Some(contact) = &contact {
            crate::queue::answer_from_inbox(tx, seq, &row_tenant, contact, options.quantum).await?;
        }
    }
    if mode == RunMode::Run {
        let target = target_of(
            &row.get::<_, String>(7),
            &row.get::<_, String>(8),
            row.get(9),
        )?;
        crate::outbox::completion_webhooks(
            tx,
            &row_tenant,
            lease.run,
            lease.attempt,
            lease.fence,
            &target,
            state,
            error.as_ref(),
            now,
        )
        .await?;
    }
    Ok(committed)
}

impl Ledger for PostgresStore {
    fn commit(&self, commit_in: Commit) -> StoreFuture<'_, Committed> {
        let options = self.options.clone();
        Box::pin(self.tx(move |tx| {
            let (commit_in, options) = (commit_in.clone(), options.clone());
            Box::pin(async move { commit(tx, commit_in, &options).await })
        }))
    }

    fn apply_effects<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: Option<&'a ContactId>,
        contact_owner: ContactOwner,
        run: RunId,
        effects: &'a [Effect],
    ) -> StoreFuture<'a, Option<RunError>> {
        let options = self.options.clone();
        let (tenant, contact, effects) = (tenant.to_string(), contact.cloned(), effects.to_vec());
        Box::pin(self.tx(move |tx| {
            let (tenant, contact, effects, options) = (
                tenant.clone(),
                contact.clone(),
                effects.clone(),
                options.clone(),
            );
            Box::pin(async move {
                apply_in_savepoint(
                    tx,
                    run,
                    &tenant,
                    contact.as_ref(),
                    Writes {
                        effects: &effects,
                        spawned: &[],
                        contact_owner,
                        fence: 0,
                    },
                    &options,
                    now_ms(),
                )
                .await
            })
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
