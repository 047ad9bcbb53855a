//! The conformance suite every backend runs: one property per function, each given a
//! fresh, empty store. A backend's tests call [`crate::conformance_tests!`] with an
//! expression that makes one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a test suite: failures are panics"
)]

use std::sync::Arc;
use std::time::Duration;

use fluxo_core::{
    ActionName, Bytes, Contact, ContactId, Effect, ErrorKind, Event, FieldValue, Limits,
    MessageKind, OutgoingEmail, PlatformMessage, RetryPolicy, RunError, RunId, RunReport, StateKey,
    StateScope, TenantId,
};

use crate::{
    CancelOutcome, ClaimRequest, Claimed, Commit, ContactChange, ContactOwner, ContactUpdate, Cost,
    Decision, NewRun, NewVersion, OutboxKind, OutboxPayload, Priority, PruneScope, RunFilter,
    RunMode, RunPhase, RunTarget, Settlement, Store, VersionKind,
};

/// Generates one `#[tokio::test]` per property for a backend; `$make` is an async
/// expression giving an `Arc<dyn Store>` (fresh and empty).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            idempotent_enqueue, lease_exclusivity, fence_rejection, atomic_commit,
            state_cap_in_the_transaction, commit_is_idempotent,
            platform_owned_contacts_get_one_update_row, fair_claim, per_tenant_cap,
            interactive_first, exactly_once_outbox_claim, outbox_claims_merge_kinds_by_due_time,
            crash_redeliveries_end_dead,
            cancel_and_release, tests_are_not_listed, work_conserving,
            version_numbers_are_never_reused, stale_lease_gets_lease_lost_not_a_result,
            retention_per_tenant, waits_resume_on_a_reply_a_timer_or_an_early_message,
            started_runs_are_queued_once_by_the_commit_that_applies,
            a_released_row_is_queued_again_untried, listing_filters_by_state_action_and_cursor);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: std::sync::Arc<dyn $crate::Store> = $make;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

const ALL_KINDS: [OutboxKind; 4] = [
    OutboxKind::Email,
    OutboxKind::Webhook,
    OutboxKind::Message,
    OutboxKind::ContactUpdate,
];

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn action() -> ActionName {
    ActionName::parse("act").unwrap()
}

fn contact() -> ContactId {
    ContactId::parse("c1").unwrap()
}

/// A new run of `tenant`'s `act` version 1.
pub fn new_run(tenant_id: &str) -> NewRun {
    let mut event = Event::new(tenant(tenant_id), action());
    event.contact = Contact::with_id(contact());
    NewRun {
        id: RunId::new(),
        tenant: tenant(tenant_id),
        target: RunTarget::Action {
            name: action(),
            version: 1,
        },
        event,
        limits: Limits::default(),
        retry: RetryPolicy::default(),
        mode: RunMode::Run,
        priority: Priority::Background,
        idempotency_key: None,
    }
}

/// A claim by `node-a` of up to `max` runs, `per_tenant` at most of one tenant, each
/// leased for `lease_ms` milliseconds.
pub fn request(max: u32, lease_ms: u64, per_tenant: u32) -> ClaimRequest {
    ClaimRequest {
        node: "node-a".to_owned(),
        max,
        lease_ms,
        per_tenant,
    }
}

fn report_for(claimed: &Claimed, error: Option<RunError>) -> RunReport {
    match error {
        Some(error) => RunReport::not_started(claimed.lease.run, claimed.lease.attempt, error),
        None => RunReport {
            status: fluxo_core::RunStatus::Succeeded,
            error: None,
            outcome: Some(fluxo_core::RunOutcome {
                output: serde_json::json!({}),
                replies: Vec::new(),
                branch: None,
            }),
            ..RunReport::not_started(
                claimed.lease.run,
                claimed.lease.attempt,
                RunError::new(ErrorKind::Trap, "placeholder"),
            )
        },
    }
}

/// `node-a`'s commit of `claimed` with `effects` and `decision`: a succeeded report for
/// `Succeeded` and `Wait`, a trap otherwise.
pub fn commit(claimed: &Claimed, effects: Vec<Effect>, decision: Decision) -> Commit {
    let error = match decision {
        Decision::Succeeded | Decision::Wait { .. } => None,
        _ => Some(RunError::new(ErrorKind::Trap, "it failed")),
    };
    Commit {
        lease: claimed.lease,
        node: "node-a".to_owned(),
        tenant: claimed.tenant.clone(),
        contact: claimed.event.contact.id.clone(),
        effects,
        report: report_for(claimed, error),
        decision,
        cost: Cost {
            fuel: 0,
            wall_ms: 1,
        },
        spawned: Vec::new(),
        contact_owner: ContactOwner::Embedded,
    }
}

/// `node-a`'s claim of the one run due next (leased 30 s, up to 10 of a tenant).
async fn claim_one(store: &Arc<dyn Store>) -> Claimed {
    store
        .claim(&request(1, 30_000, 10))
        .await
        .unwrap()
        .remove(0)
}

async fn enqueue(store: &Arc<dyn Store>, run: NewRun) -> RunId {
    let tenant_id = run.tenant.clone();
    store.create_tenant(&tenant_id).await.unwrap();
    store.enqueue(run).await.unwrap().id
}

pub async fn idempotent_enqueue(store: Arc<dyn Store>) {
    let mut run = new_run("acme");
    run.idempotency_key = Some("order-7".to_owned());
    let first = enqueue(&store, run.clone()).await;
    let mut again = new_run("acme");
    again.idempotency_key = Some("order-7".to_owned());
    let second = store.enqueue(again).await.unwrap();
    assert_eq!(second.id, first);
    assert!(second.deduplicated);
    let mut other_tenant = new_run("other");
    other_tenant.idempotency_key = Some("order-7".to_owned());
    let other = enqueue(&store, other_tenant).await;
    assert_ne!(other, first, "keys are per tenant");
    let claimed = store.claim(&request(10, 30_000, 10)).await.unwrap();
    assert_eq!(claimed.len(), 2, "one run per key and tenant");
}

pub async fn lease_exclusivity(store: Arc<dyn Store>) {
    for _ in 0..20 {
        enqueue(&store, new_run("acme")).await;
    }
    let claims = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim(&request(8, 30_000, 100)).await.unwrap() })
    });
    let mut seen = std::collections::HashSet::new();
    for claim in claims {
        for run in claim.await.unwrap() {
            assert!(seen.insert(run.lease.run), "claimed twice: {:?}", run.lease);
        }
    }
    assert_eq!(seen.len(), 20);
}

pub async fn fence_rejection(store: Arc<dyn Store>) {
    enqueue(&store, new_run("acme")).await;
    let stale = store.claim(&request(1, 1, 10)).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fresh = claim_one(&store).await;
    assert_eq!(fresh.lease.run, stale.lease.run);
    assert!(fresh.lease.fence > stale.lease.fence);
    assert_eq!(fresh.lease.attempt, stale.lease.attempt + 1);
    let late = store
        .commit(commit(&stale, vec![], Decision::Succeeded))
        .await
        .unwrap_err();
    assert!(late.is_lease_lost(), "{late:?}");
    assert!(
        store
            .heartbeat(&stale.lease, 1000)
            .await
            .unwrap_err()
            .is_lease_lost()
    );
    assert!(store.heartbeat(&fresh.lease, 30_000).await.is_ok());
    let done = store
        .commit(commit(&fresh, vec![], Decision::Succeeded))
        .await
        .unwrap();
    assert_eq!(done.state, RunPhase::Succeeded);
}

fn effects(run: RunId, state_bytes: usize) -> Vec<Effect> {
    vec![
        Effect::SetField {
            name: "stage".into(),
            value: "won".into(),
        },
        Effect::AddTag { tag: "vip".into() },
        Effect::SetState {
            scope: StateScope::Contact,
            key: "k".into(),
            value: Bytes(vec![7; state_bytes]),
            ttl_seconds: None,
        },
        Effect::SendEmail(OutgoingEmail::sample(&format!("<{run}.1@fluxo>"))),
        Effect::SendMessage(PlatformMessage {
            message_id: format!("msg_{run}.1"),
            run_id: run,
            kind: MessageKind::Reply,
            contact: contact(),
            text: "Here is your slip".into(),
            to: None,
            service: None,
        }),
    ]
}

pub async fn atomic_commit(store: Arc<dyn Store>) {
    let id = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    let done = store
        .commit(commit(&claimed, effects(id, 10), Decision::Succeeded))
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.refused.clone(), done.first),
        (RunPhase::Succeeded, None, true)
    );
    let stored = store
        .contact(&tenant("acme"), &contact())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.fields["stage"], "won".into());
    assert_eq!(stored.tags, ["vip"]);
    let key = StateKey::of(&tenant("acme"), Some(&contact()), StateScope::Contact, "k").unwrap();
    assert_eq!(store.state(&key).await.unwrap(), Some(vec![7; 10]));
    assert_eq!(
        store.outbox().await.unwrap().len(),
        2,
        "the e-mail and the reply"
    );
    let messages = store
        .claim_due("n1", &[OutboxKind::Message], 10, 30_000)
        .await
        .unwrap();
    assert!(
        matches!(&messages[..], [item] if matches!(&item.payload,
            OutboxPayload::Message(message) if message.message_id == format!("msg_{id}.1"))),
        "{messages:?}"
    );
    let record = store.run(&tenant("acme"), id).await.unwrap().unwrap();
    assert_eq!(record.state, RunPhase::Succeeded);
    assert!(record.report.unwrap().applied);
    assert_eq!(record.attempts.len(), 1);
}

/// Two runs whose state together exceeds the tenant's cap commit **at once**: exactly one
/// succeeds; the other is refused whole — none of its contact field, tag, state or
/// e-mail lands, and its report says `applied: false` (review C2: a refused run's
/// contact changes once stayed committed).
pub async fn state_cap_in_the_transaction(store: Arc<dyn Store>) {
    let first = enqueue(&store, new_run("acme")).await;
    let second = enqueue(&store, new_run("acme")).await;
    let claimed = store.claim(&request(2, 30_000, 10)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // Each run alone fits the cap (1 MiB by default); both together do not. Each writes
    // a field and a tag of its own, so what the refused one would have left shows.
    let big = 700 << 10;
    let mut commits = Vec::new();
    for run in &claimed {
        let id = run.lease.run;
        let mut effects = effects(id, big);
        effects[0] = Effect::SetField {
            name: format!("f-{id}"),
            value: "set".into(),
        };
        effects[1] = Effect::AddTag {
            tag: format!("t-{id}"),
        };
        if let Some(Effect::SetState { key, .. }) = effects.get_mut(2) {
            *key = format!("k-{id}");
        }
        let store = store.clone();
        let commit = commit(run, effects, Decision::Succeeded);
        commits.push(tokio::spawn(async move {
            (id, store.commit(commit).await.unwrap())
        }));
    }
    let mut results = Vec::new();
    for task in commits {
        results.push(task.await.unwrap());
    }
    let succeeded: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.state == RunPhase::Succeeded)
        .collect();
    let refused: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.refused.is_some())
        .collect();
    assert_eq!((succeeded.len(), refused.len()), (1, 1), "{results:?}");
    let (refused_id, refused) = refused[0];
    let (kept_id, _) = succeeded[0];
    let refusal = refused.refused.clone().unwrap();
    assert_eq!(refusal.kind, ErrorKind::QuotaExceeded);
    assert!(!refusal.retryable());
    assert!(refusal.message.contains("state cap"), "{}", refusal.message);
    assert_eq!(refused.state, RunPhase::Failed);
    // The refused run applied nothing: not its field, not its tag, not its e-mail.
    let stored = store
        .contact(&tenant("acme"), &contact())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.fields.contains_key(&format!("f-{kept_id}")),
        "{stored:?}"
    );
    assert!(stored.tags.contains(&format!("t-{kept_id}")), "{stored:?}");
    assert!(
        !stored.fields.contains_key(&format!("f-{refused_id}")),
        "{stored:?}"
    );
    assert!(
        !stored.tags.contains(&format!("t-{refused_id}")),
        "{stored:?}"
    );
    assert_eq!(
        store.outbox().await.unwrap().len(),
        2,
        "only the kept run's e-mail and reply"
    );
    for id in [first, second] {
        let record = store.run(&tenant("acme"), id).await.unwrap().unwrap();
        let report = record.report.unwrap();
        assert_eq!(report.applied, record.state == RunPhase::Succeeded);
    }
}

pub async fn commit_is_idempotent(store: Arc<dyn Store>) {
    let id = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    let once = commit(&claimed, effects(id, 5), Decision::Succeeded);
    let first = store.commit(once.clone()).await.unwrap();
    let again = store.commit(once).await.unwrap();
    assert!(first.first && !again.first);
    assert_eq!(again.state, first.state);
    assert_eq!(
        store.outbox().await.unwrap().len(),
        2,
        "the e-mail and the reply are queued once"
    );
}

/// A tenant whose contacts the platform owns: a commit leaves the embedded contact store
/// alone and writes one contact-update row with the run's field and tag changes in order,
/// named by the run and the lease's fence and numbered per contact — once however often
/// the commit is repeated, once per segment of a waiting run, never for a commit the
/// state cap refuses (which takes no number either); a direct run's update has fence 0.
pub async fn platform_owned_contacts_get_one_update_row(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let id = enqueue(&store, new_run("acme")).await;
    let first = claim_one(&store).await;
    let mut changes = effects(id, 10);
    changes.push(Effect::RemoveTag { tag: "lead".into() });
    let hour_from_now = crate::now_ms() + 3_600_000;
    let mut once = commit(&first, changes, wait(hour_from_now, "cp-1"));
    once.contact_owner = ContactOwner::Platform;
    let committed = store.commit(once.clone()).await.unwrap();
    assert_eq!(
        (committed.state, committed.refused.clone()),
        (RunPhase::Waiting, None)
    );
    assert!(!store.commit(once).await.unwrap().first);
    assert_eq!(
        store.contact(&acme, &contact()).await.unwrap(),
        None,
        "the embedded store keeps nothing of a platform-owned contact"
    );
    let key = StateKey::of(&acme, Some(&contact()), StateScope::Contact, "k").unwrap();
    assert_eq!(
        store.state(&key).await.unwrap(),
        Some(vec![7; 10]),
        "state is still Fluxo's"
    );
    assert_eq!(
        store.outbox().await.unwrap().len(),
        3,
        "the e-mail, the reply and one contact update"
    );

    // The contact answers; the next segment sends an update of its own.
    store
        .deliver_reply(&acme, &contact(), &said("yes"))
        .await
        .unwrap();
    let second = claim_one(&store).await;
    assert_eq!(second.lease.run, id);
    let mut next = commit(
        &second,
        vec![Effect::SetField {
            name: "stage".into(),
            value: FieldValue::Null,
        }],
        Decision::Succeeded,
    );
    next.contact_owner = ContactOwner::Platform;
    assert_eq!(store.commit(next).await.unwrap().state, RunPhase::Succeeded);
    let updates = store
        .claim_due("n1", &[OutboxKind::ContactUpdate], 10, 30_000)
        .await
        .unwrap();
    let mut updates: Vec<ContactUpdate> = updates
        .into_iter()
        .filter_map(|item| match item.payload {
            OutboxPayload::ContactUpdate(update) => Some(update),
            _ => None,
        })
        .collect();
    updates.sort_by_key(|update| update.sequence);
    assert_eq!(
        updates,
        [
            ContactUpdate::new(
                id,
                first.lease.fence,
                contact(),
                1,
                vec![
                    ContactChange::SetField {
                        name: "stage".into(),
                        value: "won".into(),
                    },
                    ContactChange::AddTag { tag: "vip".into() },
                    ContactChange::RemoveTag { tag: "lead".into() },
                ],
            ),
            ContactUpdate::new(
                id,
                second.lease.fence,
                contact(),
                2,
                vec![ContactChange::SetField {
                    name: "stage".into(),
                    value: FieldValue::Null,
                }],
            ),
        ]
    );
    assert_ne!(updates[0].update_id, updates[1].update_id);

    // Refused by the state cap: no update, and no number taken.
    enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    let mut refused = commit(
        &claimed,
        effects(claimed.lease.run, 2 << 20),
        Decision::Succeeded,
    );
    refused.contact_owner = ContactOwner::Platform;
    assert!(store.commit(refused).await.unwrap().refused.is_some());
    assert_eq!(store.outbox().await.unwrap().len(), 4);

    // A direct run (no lease): fence 0, the contact's next number.
    let direct = RunId::new();
    let refusal = store
        .apply_effects(
            &acme,
            Some(&contact()),
            ContactOwner::Platform,
            direct,
            &[Effect::AddTag { tag: "new".into() }],
        )
        .await
        .unwrap();
    assert_eq!(refusal, None);
    let updates = store
        .claim_due("n1", &[OutboxKind::ContactUpdate], 10, 30_000)
        .await
        .unwrap();
    assert!(
        matches!(&updates[..], [item] if matches!(&item.payload,
            OutboxPayload::ContactUpdate(update)
                if update.update_id == format!("cu_{direct}.0") && update.sequence == 3)),
        "{updates:?}"
    );
    assert_eq!(store.contact(&acme, &contact()).await.unwrap(), None);
}

pub async fn fair_claim(store: Arc<dyn Store>) {
    for _ in 0..50 {
        enqueue(&store, new_run("busy")).await;
    }
    let quiet = enqueue(&store, new_run("quiet")).await;
    let mut order = Vec::new();
    for _ in 0..6 {
        for run in store.claim(&request(1, 30_000, 100)).await.unwrap() {
            order.push(run.lease.run);
            store
                .commit(commit(&run, vec![], Decision::Succeeded))
                .await
                .unwrap();
        }
    }
    let position = order.iter().position(|id| *id == quiet);
    assert!(
        position.is_some_and(|at| at < 3),
        "the quiet tenant's run waits behind at most a couple of the busy tenant's: {position:?}"
    );
}

/// However much more than a quantum runs cost, a claim never comes back empty while a
/// run is available (deficit round robin takes the rounds it needs at once), and a
/// tenant whose runs cost a hundred times more gets about a hundredth of the claims.
pub async fn work_conserving(store: Arc<dyn Store>) {
    for _ in 0..40 {
        enqueue(&store, new_run("heavy")).await;
        enqueue(&store, new_run("light")).await;
    }
    let mut claims = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let mut runs = store.claim(&request(1, 30_000, 100)).await.unwrap();
        assert_eq!(runs.len(), 1, "a worker is free and runs are waiting");
        let run = runs.remove(0);
        *claims.entry(run.tenant.to_string()).or_default() += 1;
        let mut done = commit(&run, vec![], Decision::Succeeded);
        done.cost.wall_ms = if run.tenant.as_str() == "heavy" {
            100_000
        } else {
            1_000
        };
        store.commit(done).await.unwrap();
    }
    let heavy = claims.get("heavy").copied().unwrap_or(0);
    assert!(
        (1..=4).contains(&heavy),
        "the heavy tenant ran {heavy} of 40: {claims:?}"
    );
}

/// A deleted action's version numbers are not given to a new action of the same name:
/// runs pin versions by number.
pub async fn version_numbers_are_never_reused(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    store.create_tenant(&acme).await.unwrap();
    let add = |hash: &'static str| {
        let (store, acme) = (store.clone(), acme.clone());
        async move {
            store
                .add_version(NewVersion {
                    tenant: &acme,
                    name: &action(),
                    description: None,
                    kind: VersionKind::Component,
                    hash,
                    size: 1,
                    imports: &[],
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(add("aa").await, 1);
    assert_eq!(add("bb").await, 2);
    store
        .delete_action(&acme, &action())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        add("cc").await,
        3,
        "a new action of the same name starts after the old"
    );
    let imports = ["fluxo:action/http".to_owned()];
    let workflow = store
        .add_version(NewVersion {
            tenant: &acme,
            name: &action(),
            description: None,
            kind: VersionKind::Workflow,
            hash: "dd",
            size: 1,
            imports: &imports,
        })
        .await
        .unwrap();
    let kinds: Vec<_> = store
        .versions(&acme, &action())
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.kind, v.imports))
        .collect();
    assert_eq!(
        kinds,
        [
            (3, VersionKind::Component, vec![]),
            (workflow, VersionKind::Workflow, imports.to_vec())
        ],
        "a version keeps its kind and imports"
    );
}

/// A holder whose lease was taken over and whose run then ended is told it lost the
/// lease — never handed the later holder's result as if it were its own.
pub async fn stale_lease_gets_lease_lost_not_a_result(store: Arc<dyn Store>) {
    enqueue(&store, new_run("acme")).await;
    let first = store.claim(&request(1, 1, 10)).await.unwrap().remove(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = claim_one(&store).await;
    assert_eq!(second.lease.run, first.lease.run);
    store
        .commit(commit(&second, vec![], Decision::Succeeded))
        .await
        .unwrap();
    let late = store
        .commit(commit(&first, vec![], Decision::Succeeded))
        .await;
    assert!(late.is_err_and(|error| error.is_lease_lost()));
}

pub async fn per_tenant_cap(store: Arc<dyn Store>) {
    for _ in 0..5 {
        enqueue(&store, new_run("busy")).await;
    }
    enqueue(&store, new_run("quiet")).await;
    let claimed = store.claim(&request(10, 30_000, 2)).await.unwrap();
    let busy = claimed
        .iter()
        .filter(|run| run.tenant == tenant("busy"))
        .count();
    let quiet = claimed
        .iter()
        .filter(|run| run.tenant == tenant("quiet"))
        .count();
    assert_eq!(
        (busy, quiet),
        (2, 1),
        "two of the busy tenant, and the quiet one"
    );
    assert!(
        store
            .claim(&request(10, 30_000, 2))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .commit(commit(&claimed[0], vec![], Decision::Succeeded))
        .await
        .unwrap();
    assert_eq!(store.claim(&request(10, 30_000, 2)).await.unwrap().len(), 1);
}

pub async fn interactive_first(store: Arc<dyn Store>) {
    for _ in 0..5 {
        enqueue(&store, new_run("acme")).await;
    }
    let mut test = new_run("acme");
    test.mode = RunMode::Test;
    test.priority = Priority::Interactive;
    let test_id = enqueue(&store, test).await;
    let first = claim_one(&store).await;
    assert_eq!(first.lease.run, test_id);
    assert_eq!(first.mode, RunMode::Test);
}

/// A claim over several kinds takes rows by due time and id, whatever the order the
/// kinds are named in, and never more than asked: one kind's backlog does not hold
/// another kind's older rows.
pub async fn outbox_claims_merge_kinds_by_due_time(store: Arc<dyn Store>) {
    let id = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    store
        .commit(commit(&claimed, effects(id, 1), Decision::Succeeded))
        .await
        .unwrap();
    // The commit wrote the e-mail's row before the reply's (the effects' order), both
    // due at once.
    let kinds = [OutboxKind::Message, OutboxKind::Email];
    let first = store.claim_due("n1", &kinds, 1, 30_000).await.unwrap();
    assert!(
        matches!(&first[..], [item] if matches!(item.payload, OutboxPayload::Email(_))),
        "the older row, though its kind is named second: {first:?}"
    );
    let rest = store.claim_due("n1", &kinds, 5, 30_000).await.unwrap();
    assert!(
        matches!(&rest[..], [item] if matches!(item.payload, OutboxPayload::Message(_))),
        "{rest:?}"
    );
}

pub async fn exactly_once_outbox_claim(store: Arc<dyn Store>) {
    for _ in 0..10 {
        let id = enqueue(&store, new_run("acme")).await;
        let claimed = claim_one(&store).await;
        let mail = vec![Effect::SendEmail(OutgoingEmail::sample(&format!(
            "<{id}.1@fluxo>"
        )))];
        store
            .commit(commit(&claimed, mail, Decision::Succeeded))
            .await
            .unwrap();
    }
    let claims = (0..3).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_due("node", &ALL_KINDS, 10, 30_000)
                .await
                .unwrap()
        })
    });
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    for claim in claims {
        for item in claim.await.unwrap() {
            assert!(seen.insert(item.id), "row {} claimed twice", item.id);
            items.push(item);
        }
    }
    assert_eq!(seen.len(), 10);
    assert!(
        store
            .claim_due("node", &ALL_KINDS, 10, 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    let item = &items[0];
    store
        .settle(item.id, item.claim, Settlement::Sent)
        .await
        .unwrap();
    let twice = store
        .settle(item.id, item.claim, Settlement::Sent)
        .await
        .unwrap_err();
    assert!(twice.is_lease_lost());
    // An expired claim is taken over, and the old claimer can no longer settle.
    let other = &items[1];
    let retried = Settlement::Retry {
        at_ms: 0,
        error: "451".to_owned(),
    };
    store.settle(other.id, other.claim, retried).await.unwrap();
    let again = store.claim_due("node", &ALL_KINDS, 10, 1).await.unwrap();
    assert!(again.iter().any(|i| i.id == other.id));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = store
        .claim_due("node-b", &ALL_KINDS, 10, 30_000)
        .await
        .unwrap();
    let retaken = taken.iter().find(|i| i.id == other.id).unwrap();
    assert_eq!(retaken.attempts, 1);
    let stale = again.iter().find(|i| i.id == other.id).unwrap();
    assert!(
        store
            .settle(stale.id, stale.claim, Settlement::Sent)
            .await
            .unwrap_err()
            .is_lease_lost()
    );
}

pub async fn crash_redeliveries_end_dead(store: Arc<dyn Store>) {
    let mut run = new_run("acme");
    run.retry.max_crash_redeliveries = 2;
    let id = enqueue(&store, run).await;
    for attempt in 1..=3 {
        let claimed = store.claim(&request(1, 1, 10)).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        assert_eq!(claimed[0].lease.attempt, attempt);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        store
            .claim(&request(1, 30_000, 10))
            .await
            .unwrap()
            .is_empty()
    );
    let record = store.run(&tenant("acme"), id).await.unwrap().unwrap();
    assert_eq!(record.state, RunPhase::Dead);
    assert_eq!(record.error_kind, Some(ErrorKind::Crashed));
    // Its tenant's slot was given back.
    enqueue(&store, new_run("acme")).await;
    assert_eq!(store.claim(&request(1, 30_000, 1)).await.unwrap().len(), 1);
}

pub async fn cancel_and_release(store: Arc<dyn Store>) {
    let queued = enqueue(&store, new_run("acme")).await;
    assert_eq!(
        store.cancel(&tenant("acme"), queued).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let running = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    assert_eq!(claimed.lease.run, running);
    assert_eq!(
        store.cancel(&tenant("acme"), running).await.unwrap(),
        CancelOutcome::Requested
    );
    assert!(
        store
            .heartbeat(&claimed.lease, 30_000)
            .await
            .unwrap()
            .cancel_requested
    );
    let done = store
        .commit(commit(&claimed, effects(running, 3), Decision::Succeeded))
        .await
        .unwrap();
    assert_eq!(done.state, RunPhase::Cancelled);
    assert!(
        store
            .contact(&tenant("acme"), &contact())
            .await
            .unwrap()
            .is_none()
    );
    let released = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    store.release(&claimed.lease).await.unwrap();
    let again = claim_one(&store).await;
    assert_eq!((again.lease.run, again.lease.attempt), (released, 1));
    assert!(
        store
            .commit(commit(&claimed, vec![], Decision::Succeeded))
            .await
            .unwrap_err()
            .is_lease_lost()
    );
}

pub async fn tests_are_not_listed(store: Arc<dyn Store>) {
    let mut test = new_run("acme");
    test.mode = RunMode::Test;
    let test_id = enqueue(&store, test).await;
    enqueue(&store, new_run("acme")).await;
    let listed = store
        .runs(&tenant("acme"), &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed.iter().all(|run| run.id != test_id));
    assert!(store.run(&tenant("acme"), test_id).await.unwrap().is_some());
}

pub async fn backlog_cap(store: Arc<dyn Store>) {
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..3 {
        let run = new_run("acme");
        store.create_tenant(&run.tenant).await.unwrap();
        match store.enqueue(run).await {
            Ok(_) => accepted += 1,
            Err(error) if error.is_overloaded() => refused += 1,
            Err(error) => panic!("{error:?}"),
        }
    }
    // Not in `conformance_tests!`: the backend runs it on a store opened with a
    // backlog of 2 runs per tenant.
    assert_eq!((accepted, refused), (2, 1));
    enqueue(&store, new_run("other")).await;
}

pub async fn retention_per_tenant(store: Arc<dyn Store>) {
    let acme = enqueue(&store, new_run("acme")).await;
    let other = enqueue(&store, new_run("other")).await;
    for claimed in store.claim(&request(2, 30_000, 10)).await.unwrap() {
        store
            .commit(commit(&claimed, Vec::new(), Decision::Succeeded))
            .await
            .unwrap();
    }
    let waiting = enqueue(&store, new_run("acme")).await;
    let later = crate::now_ms() + 60_000;
    let everyone_but_acme = PruneScope {
        before_ms: later,
        tenant: None,
        except: vec![tenant("acme")],
    };
    assert_eq!(store.prune(&everyone_but_acme).await.unwrap().runs, 1);
    assert!(store.run(&tenant("other"), other).await.unwrap().is_none());
    assert!(
        store.run(&tenant("acme"), acme).await.unwrap().is_some(),
        "a tenant with a retention of its own is left to its own pass"
    );
    let earlier = PruneScope {
        before_ms: crate::now_ms() - 60_000,
        tenant: Some(tenant("acme")),
        except: Vec::new(),
    };
    assert_eq!(
        store.prune(&earlier).await.unwrap().runs,
        0,
        "not old enough"
    );
    let acme_only = PruneScope {
        before_ms: later,
        ..earlier
    };
    assert_eq!(store.prune(&acme_only).await.unwrap().runs, 1);
    assert!(store.run(&tenant("acme"), acme).await.unwrap().is_none());
    assert!(
        store.run(&tenant("acme"), waiting).await.unwrap().is_some(),
        "a run not finished is never pruned"
    );
}

fn wait(until_ms: i64, checkpoint: &str) -> Decision {
    Decision::Wait {
        until_ms,
        checkpoint: checkpoint.to_owned(),
    }
}

fn said(text: &str) -> fluxo_core::Message {
    fluxo_core::Message {
        text: text.to_owned(),
        channel: Some("whatsapp".to_owned()),
    }
}

/// A waiting run commits its segment, holds no claim, and goes on (attempts counted
/// afresh) with its contact's next message, with its timer, or at once with a message
/// that arrived while it still ran; a cancel ends a wait; the tenant's queue counts stay
/// right throughout.
pub async fn waits_resume_on_a_reply_a_timer_or_an_early_message(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let id = enqueue(&store, new_run("acme")).await;
    let first = claim_one(&store).await;
    assert!(first.resume.is_none());
    let hour_from_now = crate::now_ms() + 3_600_000;
    let committed = store
        .commit(commit(&first, effects(id, 4), wait(hour_from_now, "cp-1")))
        .await
        .unwrap();
    assert_eq!(committed.state, RunPhase::Waiting);
    // The segment's effects are committed before the wait.
    let stored = store.contact(&acme, &contact()).await.unwrap().unwrap();
    assert_eq!(stored.tags, ["vip"]);
    assert_eq!(
        store.outbox().await.unwrap().len(),
        2,
        "e-mail and reply queued"
    );
    let record = store.run(&acme, id).await.unwrap().unwrap();
    assert_eq!(record.state, RunPhase::Waiting);
    assert_eq!(record.segments, 1);
    assert_eq!(record.waiting_until_ms, Some(hour_from_now));
    assert_eq!(record.attempts[0].outcome, "waiting");
    assert!(
        store
            .claim(&request(5, 30_000, 10))
            .await
            .unwrap()
            .is_empty()
    );

    // Another contact's message resumes nothing; the contact's resumes the run.
    let stranger = ContactId::parse("c2").unwrap();
    assert!(
        store
            .deliver_reply(&acme, &stranger, &said("hi"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .deliver_reply(&acme, &contact(), &said("2"))
            .await
            .unwrap(),
        [id]
    );
    let second = claim_one(&store).await;
    assert_eq!(second.lease.run, id);
    assert_eq!(
        second.lease.attempt, 1,
        "a segment's attempts count from one"
    );
    let resume = second.resume.clone().unwrap();
    assert_eq!(resume.checkpoint, "cp-1");
    assert_eq!(resume.reply, Some(said("2")));
    assert_eq!(resume.segments, 1);

    // A wait already due: the next claim fires its timer (no reply), and the message
    // that ended the last wait does not end this one.
    store
        .commit(commit(&second, vec![], wait(crate::now_ms() - 1, "cp-2")))
        .await
        .unwrap();
    let third = claim_one(&store).await;
    let resume = third.resume.clone().unwrap();
    assert_eq!((resume.checkpoint.as_str(), resume.reply), ("cp-2", None));

    // A message that arrives while the run still runs ends its next wait at once.
    assert!(
        store
            .deliver_reply(&acme, &contact(), &said("3"))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .commit(commit(&third, vec![], wait(hour_from_now, "cp-3")))
        .await
        .unwrap();
    let fourth = claim_one(&store).await;
    assert_eq!(fourth.resume.clone().unwrap().reply, Some(said("3")));
    let done = store
        .commit(commit(&fourth, vec![], Decision::Succeeded))
        .await
        .unwrap();
    assert_eq!(done.state, RunPhase::Succeeded);
    let record = store.run(&acme, id).await.unwrap().unwrap();
    assert_eq!(record.segments, 3);
    assert_eq!(record.waiting_until_ms, None);

    // A message that arrives while a run is still queued ends its first wait; a
    // waiting run is cancelled where it waits; the queue still hands out new runs.
    // (Messages received before a run was accepted are not its answers.)
    tokio::time::sleep(Duration::from_millis(5)).await;
    let waiting = enqueue(&store, new_run("acme")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        store
            .deliver_reply(&acme, &contact(), &said("early"))
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = claim_one(&store).await;
    store
        .commit(commit(&claimed, vec![], wait(hour_from_now, "cp-0")))
        .await
        .unwrap();
    let claimed = claim_one(&store).await;
    assert_eq!(claimed.lease.run, waiting);
    assert_eq!(claimed.resume.clone().unwrap().reply, Some(said("early")));
    store
        .commit(commit(&claimed, vec![], wait(hour_from_now, "cp")))
        .await
        .unwrap();
    assert_eq!(
        store.cancel(&acme, waiting).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        store.run(&acme, waiting).await.unwrap().unwrap().state,
        RunPhase::Cancelled
    );
    assert!(
        store
            .deliver_reply(&acme, &contact(), &said("1"))
            .await
            .unwrap()
            .is_empty()
    );
    let next = enqueue(&store, new_run("acme")).await;
    let claimed = store.claim(&request(5, 30_000, 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease.run, next);
}

/// A run another run's `StartRun` request becomes: queued by the commit that applies the
/// effects, keyed by the request (a run already queued under the key is not queued
/// again); a commit that applies nothing (a failure, a test) queues nothing; the backlog
/// cap does not refuse it; a tree past its cap refuses the whole commit.
pub async fn started_runs_are_queued_once_by_the_commit_that_applies(store: Arc<dyn Store>) {
    fn child(key: &str, root: RunId) -> NewRun {
        let mut run = new_run("acme");
        run.event.depth = 1;
        run.event.root = Some(root);
        run.idempotency_key = Some(key.to_owned());
        run
    }
    fn start(key: &str, root: RunId) -> Effect {
        Effect::StartRun(fluxo_core::RunRequest {
            request_id: key.to_owned(),
            action: "act".to_owned(),
            contact: None,
            input: serde_json::json!({}),
            depth: 1,
            root,
        })
    }
    let acme = tenant("acme");
    enqueue(&store, new_run("acme")).await;
    enqueue(&store, new_run("acme")).await;
    let mut tested = new_run("acme");
    tested.mode = RunMode::Test;
    enqueue(&store, tested).await;
    let claimed = store.claim(&request(3, 30_000, 10)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    // The first real run succeeds, the second fails, the test succeeds.
    let mut real = 0;
    let mut outcomes = Vec::new();
    for run in &claimed {
        let id = run.lease.run;
        let key = format!("start_{id}.1");
        let fails = run.mode == RunMode::Run && {
            real += 1;
            real == 2
        };
        let decision = if fails {
            Decision::Failed
        } else {
            Decision::Succeeded
        };
        let mut once = commit(run, vec![start(&key, id)], decision);
        once.spawned = vec![child(&key, id)];
        store.commit(once.clone()).await.unwrap();
        let again = store.commit(once).await.unwrap();
        assert!(!again.first);
        let started = store.run_by_key(&acme, &key).await.unwrap();
        let queued = run.mode == RunMode::Run && !fails;
        assert_eq!(
            started.map(|record| (record.state, record.event.depth)),
            queued.then_some((RunPhase::Queued, 1)),
            "{:?} run, failed: {fails}",
            run.mode
        );
        outcomes.push(queued);
    }
    assert_eq!(outcomes.iter().filter(|queued| **queued).count(), 1);
    // Two real parents and one started run (tests are not listed).
    let listed = store.runs(&acme, &RunFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");

    // A request whose key already names a run queues nothing new.
    let mut earlier = new_run("acme");
    earlier.idempotency_key = Some("start_x.1".to_owned());
    let earlier = store.enqueue(earlier).await.unwrap().id;
    // A tree may start MAX_RUNS_PER_TREE runs: one more refuses that commit whole.
    let parent = enqueue(&store, new_run("acme")).await;
    let near = enqueue(&store, new_run("acme")).await;
    let mut claimed = store.claim(&request(10, 30_000, 10)).await.unwrap();
    claimed.retain(|run| run.lease.run == parent || run.lease.run == near);
    assert_eq!(claimed.len(), 2);
    let cap = usize::try_from(fluxo_core::MAX_RUNS_PER_TREE).unwrap();
    let root = RunId::new();
    let keys = |from: usize, count: usize, prefix: &str| -> Vec<String> {
        (from..from + count)
            .map(|n| format!("{prefix}.{n}"))
            .collect()
    };
    let filling = keys(1, cap - 1, "start_x");
    let mut first = commit(
        &claimed[0],
        filling.iter().map(|key| start(key, root)).collect(),
        Decision::Succeeded,
    );
    first.spawned = filling.iter().map(|key| child(key, root)).collect();
    let committed = store.commit(first).await.unwrap();
    assert_eq!(committed.refused, None);
    assert_eq!(
        store
            .run_by_key(&acme, "start_x.1")
            .await
            .unwrap()
            .unwrap()
            .id,
        earlier
    );
    let over = keys(1, 2, "start_y");
    let mut second = commit(
        &claimed[1],
        over.iter().map(|key| start(key, root)).collect(),
        Decision::Succeeded,
    );
    second.spawned = over.iter().map(|key| child(key, root)).collect();
    let refused = store.commit(second).await.unwrap();
    assert_eq!(refused.state, RunPhase::Failed);
    let refusal = refused.refused.unwrap();
    assert_eq!(refusal.kind, ErrorKind::QuotaExceeded);
    assert!(refusal.message.contains("run tree"), "{}", refusal.message);
    assert!(
        store
            .run_by_key(&acme, "start_y.1")
            .await
            .unwrap()
            .is_none()
    );
    let all = RunFilter {
        limit: Some(500),
        ..RunFilter::default()
    };
    let listed = store.runs(&acme, &all).await.unwrap();
    assert_eq!(listed.len(), 3 + 1 + 2 + (cap - 2), "{}", listed.len());
}

/// Rows given back untried (platform messages behind one of their conversation that
/// was not sent) are queued again together at the time given, their attempts and last
/// error as they were, and claimable again; the old claims settle nothing more.
pub async fn a_released_row_is_queued_again_untried(store: Arc<dyn Store>) {
    let id = enqueue(&store, new_run("acme")).await;
    let claimed = claim_one(&store).await;
    store
        .commit(commit(&claimed, effects(id, 5), Decision::Succeeded))
        .await
        .unwrap();
    let kinds = [OutboxKind::Email, OutboxKind::Message];
    let rows = store.claim_due("node-a", &kinds, 10, 30_000).await.unwrap();
    assert_eq!(rows.len(), 2);
    let held: Vec<(i64, u64)> = rows.iter().map(|row| (row.id, row.claim)).collect();
    assert_eq!(store.release_rows(&held, 0).await.unwrap(), 2);
    for record in store.outbox().await.unwrap() {
        assert_eq!(record.status, crate::OutboxStatus::Queued);
        assert_eq!(record.attempts, 0);
    }
    let again = store.claim_due("node-b", &kinds, 10, 30_000).await.unwrap();
    assert_eq!(again.len(), 2);
    // The old claims can settle or give back nothing any more.
    assert_eq!(store.release_rows(&held, 0).await.unwrap(), 0);
    let stale = store
        .settle(rows[0].id, rows[0].claim, Settlement::Sent)
        .await;
    assert!(stale.unwrap_err().is_lease_lost());
}

/// Listing: newest first; by state, by action and both; after a cursor, oldest first and
/// only later runs; a cursor naming no run is `NotFound`; another tenant's runs never.
pub async fn listing_filters_by_state_action_and_cursor(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let other = ActionName::parse("other").unwrap();
    let mut ids = Vec::new();
    for n in 0..6 {
        let mut run = new_run("acme");
        if n % 2 == 1 {
            run.target = RunTarget::Action {
                name: other.clone(),
                version: 1,
            };
        }
        ids.push(enqueue(&store, run).await);
    }
    let globex_run = enqueue(&store, new_run("globex")).await;
    // Claim until acme's two oldest run (globex's run may be claimed on the way): three
    // claims of one row suffice, a few more make the bound plain without hanging.
    let mut running = Vec::new();
    for _ in 0..10 {
        if running.len() == 2 {
            break;
        }
        for claimed in store.claim(&request(1, 30_000, 10)).await.unwrap() {
            if claimed.tenant == acme {
                running.push(claimed.lease.run);
            }
        }
    }
    let mut oldest = ids[..2].to_vec();
    oldest.sort();
    running.sort();
    assert_eq!(running, oldest);
    let list_up_to =
        |limit: u32, state: Option<RunPhase>, action: Option<ActionName>, after: Option<RunId>| {
            let store = store.clone();
            let acme = acme.clone();
            async move {
                let filter = RunFilter {
                    action,
                    state,
                    limit: Some(limit),
                    after,
                };
                store
                    .runs(&acme, &filter)
                    .await
                    .map(|runs| runs.iter().map(|run| run.id).collect::<Vec<_>>())
            }
        };
    let list = |state, action, after| list_up_to(10, state, action, after);
    let newest_first = |picked: &[usize]| picked.iter().rev().map(|n| ids[*n]).collect::<Vec<_>>();
    assert_eq!(
        list(None, None, None).await.unwrap(),
        newest_first(&[0, 1, 2, 3, 4, 5])
    );
    assert_eq!(
        list(Some(RunPhase::Queued), None, None).await.unwrap(),
        newest_first(&[2, 3, 4, 5])
    );
    assert_eq!(
        list(Some(RunPhase::Running), None, None).await.unwrap(),
        newest_first(&[0, 1])
    );
    assert_eq!(
        list(Some(RunPhase::Queued), Some(other.clone()), None)
            .await
            .unwrap(),
        newest_first(&[3, 5])
    );
    assert!(
        list(Some(RunPhase::Waiting), None, None)
            .await
            .unwrap()
            .is_empty()
    );
    // After a cursor: oldest first, only later runs, the filters still applied.
    assert_eq!(
        list(None, None, Some(ids[1])).await.unwrap(),
        ids[2..].to_vec()
    );
    assert_eq!(
        list(Some(RunPhase::Queued), Some(action()), Some(ids[0]))
            .await
            .unwrap(),
        vec![ids[2], ids[4]]
    );
    assert!(
        list(Some(RunPhase::Running), None, Some(ids[1]))
            .await
            .unwrap()
            .is_empty()
    );
    let missing = list(None, None, Some(RunId::new())).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let foreign = list(None, None, Some(globex_run)).await.unwrap_err();
    assert!(
        foreign.is_not_found(),
        "another tenant's run is no cursor: {foreign}"
    );
    // A limit keeps the newest runs without a cursor and the oldest after one.
    let queued = Some(RunPhase::Queued);
    assert_eq!(
        list_up_to(2, queued, None, None).await.unwrap(),
        newest_first(&[4, 5])
    );
    assert_eq!(
        list_up_to(2, queued, None, Some(ids[0])).await.unwrap(),
        vec![ids[2], ids[3]]
    );
}
