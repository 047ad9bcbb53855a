//! The store port's records: what backends keep and hand back. Backend-neutral: no
//! backend type appears here; times are milliseconds since the Unix epoch.

use fluxo_core::{
    ActionName, ContactId, Effect, ErrorKind, Event, LimitOverrides, Limits, OutgoingEmail,
    RetryPolicy, RunError, RunId, RunReport, TenantId, Usage,
};
use serde::{Deserialize, Serialize};

/// An action as listed: its current settings and active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionRecord {
    /// The action's name, unique per tenant.
    pub name: ActionName,
    /// What it does, for people.
    pub description: String,
    /// Whether new runs are accepted.
    pub enabled: bool,
    /// The version new runs use.
    pub active_version: u32,
    /// When it was first uploaded.
    pub created_ms: i64,
    /// Limits tighter than the host's, for this action's runs.
    pub limits: LimitOverrides,
    /// How its retryable failures are retried.
    pub retry: RetryPolicy,
}

/// What a version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum VersionKind {
    /// A WebAssembly component.
    #[default]
    Component,
    /// A workflow definition (JSON).
    Workflow,
}

impl VersionKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Workflow => "workflow",
        }
    }

    /// The kind stored as `text`.
    ///
    /// # Errors
    /// [`crate::StoreError`] (corrupt) for a name no version kind has.
    pub fn parse(text: &str) -> Result<Self, crate::StoreError> {
        match text {
            "component" => Ok(Self::Component),
            "workflow" => Ok(Self::Workflow),
            other => Err(crate::StoreError::corrupt(
                "version kind",
                format!("unknown kind {other:?}"),
            )),
        }
    }
}

/// One uploaded version of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionRecord {
    /// 1, 2, … per action.
    pub version: u32,
    /// A component or a workflow definition.
    pub kind: VersionKind,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Component size in bytes.
    pub size: u64,
    /// What the version may use: a component's imports, or the capability interfaces a
    /// workflow's blocks use. The action's permissions.
    pub imports: Vec<String>,
    /// Upload time.
    pub created_ms: i64,
}

/// A version to record.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// The action.
    pub name: &'a ActionName,
    /// A description (kept when `None` and the action exists).
    pub description: Option<&'a str>,
    /// A component or a workflow definition.
    pub kind: VersionKind,
    /// SHA-256 of the component, hex.
    pub hash: &'a str,
    /// Component size in bytes.
    pub size: u64,
    /// The component's imports.
    pub imports: &'a [String],
}

/// What a run runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunTarget {
    /// A component action at a pinned version.
    Action {
        /// The action.
        name: ActionName,
        /// The pinned version.
        version: u32,
    },
}

impl RunTarget {
    /// The target's name.
    #[must_use]
    pub fn name(&self) -> &ActionName {
        match self {
            Self::Action { name, .. } => name,
        }
    }

    /// The pinned version.
    #[must_use]
    pub fn version(&self) -> u32 {
        match self {
            Self::Action { version, .. } => *version,
        }
    }
}

/// Whether a run's effects are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunMode {
    /// A real run: its effects are committed when it succeeds.
    Run,
    /// A test (the platform's Test button): executed the same way, nothing applied, never
    /// retried, not listed with the tenant's runs.
    Test,
}

/// Which runs go first when workers are scarce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// New background work.
    Background,
    /// A run a person waits for (a Test), or one resumed from a wait.
    Interactive,
}

impl Priority {
    /// The stored number (higher goes first).
    #[must_use]
    pub fn rank(self) -> i64 {
        match self {
            Self::Background => 0,
            Self::Interactive => 1,
        }
    }

    /// From the stored number.
    #[must_use]
    pub fn from_rank(rank: i64) -> Self {
        if rank > 0 {
            Self::Interactive
        } else {
            Self::Background
        }
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunPhase {
    /// Accepted (durably), waiting for a worker.
    Queued,
    /// A worker holds its lease.
    Running,
    /// An attempt failed retryably; the next one waits for its time.
    Retrying,
    /// A workflow run committed what it did so far and waits for the contact's reply or
    /// its timeout; it holds no lease, memory or task.
    Waiting,
    /// It succeeded and its effects were committed.
    Succeeded,
    /// It failed for good (the failure was not retryable); nothing was applied.
    Failed,
    /// Out of attempts, or it took its host down too often: parked with the last error.
    Dead,
    /// Cancelled before it could finish; nothing was applied.
    Cancelled,
}

impl RunPhase {
    /// Every phase.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Waiting,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    /// The unknown text (a corrupt record: callers never read it as `queued`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|phase| phase.as_str() == text)
            .ok_or_else(|| format!("unknown run state {text:?}"))
    }

    /// Whether the run is over.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Dead | Self::Cancelled
        )
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run to accept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// The tenant.
    pub tenant: TenantId,
    /// What it runs.
    pub target: RunTarget,
    /// What it runs for.
    pub event: Event,
    /// The limits it runs under, fixed now: a run recovered after a restart runs under
    /// the limits it was accepted with.
    pub limits: Limits,
    /// Its retry policy, fixed now.
    pub retry: RetryPolicy,
    /// Committed or a test.
    pub mode: RunMode,
    /// Background or interactive.
    pub priority: Priority,
    /// The caller's idempotency key: the same key (per tenant) returns the same run.
    pub idempotency_key: Option<String>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The run's id (the earlier run's, when deduplicated).
    pub id: RunId,
    /// Whether the idempotency key named an earlier run (nothing new was accepted).
    pub deduplicated: bool,
    /// The run's state now (`Queued` for a new one).
    pub state: RunPhase,
}

/// A claim for runnable runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming node (in records and logs).
    pub node: String,
    /// At most this many runs.
    pub max: u32,
    /// How long the lease lasts unless renewed, in milliseconds.
    pub lease_ms: u64,
    /// Runs of one tenant running at once, over every node.
    pub per_tenant: u32,
}

/// A worker's lease on one attempt of a run. Every write for the run is conditioned on
/// `fence`, which grows with every claim: a holder whose lease was taken over can write
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run: RunId,
    /// The attempt this lease is for (1-based).
    pub attempt: u32,
    /// The fencing token.
    pub fence: u64,
    /// When the lease ends unless renewed.
    pub expires_ms: i64,
}

/// A claimed run: what the worker needs to execute it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The lease.
    pub lease: Lease,
    /// The tenant.
    pub tenant: TenantId,
    /// What it runs.
    pub target: RunTarget,
    /// What it runs for.
    pub event: Event,
    /// Its limits snapshot.
    pub limits: Limits,
    /// Its retry policy snapshot.
    pub retry: RetryPolicy,
    /// Committed or a test.
    pub mode: RunMode,
    /// How many times it was found unfinished after its host died.
    pub crash_redeliveries: u32,
    /// Whether this claim took the run over from a lease that expired (a crash
    /// redelivery), rather than from the queue.
    pub taken_over: bool,
    /// A workflow run going on after a wait: where it stopped and how the wait ended.
    pub resume: Option<Resume>,
}

/// A waiting run going on: the checkpoint its host stored and the reply that ended the
/// wait (`None`: the wait timed out).
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The host's checkpoint, as it was committed (opaque to the store).
    pub checkpoint: String,
    /// The contact's message that ended the wait; `None` when its timeout did.
    pub reply: Option<fluxo_core::Message>,
    /// Segments committed so far (one per wait).
    pub segments: u32,
}

/// What an attempt amounted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptSummary {
    /// The attempt (1-based).
    pub attempt: u32,
    /// The node that ran it.
    #[serde(default)]
    pub node: Option<String>,
    /// `succeeded`, `waiting` (a workflow's segment committed at a wait), or the error
    /// kind.
    pub outcome: String,
    /// The error message, when it failed.
    #[serde(default)]
    pub message: Option<String>,
    /// When it finished.
    pub finished_ms: i64,
    /// What it used.
    #[serde(default)]
    pub usage: Usage,
}

/// An attempt's outcome as its summary gives it: `succeeded`, `waiting` (a segment
/// committed at a wait), or the error's kind.
#[must_use]
pub fn attempt_outcome(state: RunPhase, error: Option<&RunError>) -> String {
    match error {
        Some(error) => error.kind.as_str().to_owned(),
        None if state == RunPhase::Waiting => "waiting".to_owned(),
        None => "succeeded".to_owned(),
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The action's name.
    pub action: ActionName,
    /// The version it is pinned to.
    pub version: u32,
    /// Committed or a test.
    pub mode: RunMode,
    /// Where it is.
    pub state: RunPhase,
    /// The current (or last) attempt; 0 before the first claim.
    pub attempt: u32,
    /// The error kind of its last failure.
    pub error_kind: Option<ErrorKind>,
    /// The event it runs for.
    pub event: Event,
    /// The limits it runs under: the host's, tightened by the action's overrides, as
    /// they were when it was accepted (`None` in a record from a host that did not say).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// The report of its last attempt.
    pub report: Option<RunReport>,
    /// Every attempt's summary, oldest first.
    pub attempts: Vec<AttemptSummary>,
    /// The idempotency key it was submitted with.
    pub idempotency_key: Option<String>,
    /// When it was accepted.
    pub created_ms: i64,
    /// When a worker last took it.
    pub started_ms: Option<i64>,
    /// When it finished.
    pub finished_ms: Option<i64>,
    /// When it may run next (a retry's time).
    pub next_attempt_ms: Option<i64>,
    /// The node holding or last holding it.
    pub node: Option<String>,
    /// Segments committed at a wait (a workflow run commits at each wait, then at its
    /// end): each is in `attempts` with the outcome `waiting`.
    #[serde(default)]
    pub segments: u32,
    /// While it waits: when the wait times out (Unix milliseconds).
    #[serde(default)]
    pub waiting_until_ms: Option<i64>,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this action's runs.
    pub action: Option<ActionName>,
    /// Only runs in this state.
    pub state: Option<RunPhase>,
    /// At most this many; 50 when absent, 500 at most.
    pub limit: Option<u32>,
    /// Only runs created after this one, oldest first (for following; a cursor that no
    /// longer exists is `NotFound`). Without it, the newest first.
    pub after: Option<RunId>,
}

/// What a finished attempt asks the ledger to do with the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It succeeded: apply the effects, mark it succeeded.
    Succeeded,
    /// It failed for good.
    Failed,
    /// It failed retryably: queue it again at `at_ms`.
    Retry {
        /// When the next attempt may start.
        at_ms: i64,
    },
    /// It failed and may not be retried again.
    Dead,
    /// It was cancelled while running.
    Cancelled,
    /// A workflow run stopped at a wait: apply the effects so far (a segment that no
    /// later failure undoes), store `checkpoint`, and wait for the contact's reply or
    /// `until_ms`. A message from the contact recorded since the run was accepted and
    /// after the last one it was given ends the wait at once: it arrived while the run
    /// was queued or running, before it could wait ([`crate::INBOX_RETENTION_MS`]). The
    /// commit's result then still says `Waiting`; the run is queued.
    Wait {
        /// When the wait times out (Unix milliseconds).
        until_ms: i64,
        /// The host's checkpoint (JSON, opaque to the store).
        checkpoint: String,
    },
}

impl Decision {
    /// A wait's timeout (Unix milliseconds) and checkpoint, when this is a wait.
    #[must_use]
    pub fn wait(&self) -> Option<(i64, &str)> {
        match self {
            Self::Wait {
                until_ms,
                checkpoint,
            } => Some((*until_ms, checkpoint.as_str())),
            _ => None,
        }
    }
}

/// What a run cost, for fair scheduling across tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Fuel burnt.
    pub fuel: u64,
    /// Wall time, in milliseconds.
    pub wall_ms: u64,
}

impl Cost {
    /// The cost in scheduling units: a millisecond of wall time or a million fuel units
    /// each count one, at least one a run.
    #[must_use]
    pub fn units(self) -> i64 {
        let units = self.wall_ms.saturating_add(self.fuel / 1_000_000).max(1);
        i64::try_from(units).unwrap_or(i64::MAX)
    }
}

/// One attempt's commit: in one transaction, the effects, the outbox rows, and the run's
/// new state — conditioned on the lease's fence.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The lease the attempt ran under.
    pub lease: Lease,
    /// The node committing.
    pub node: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The run's contact.
    pub contact: Option<ContactId>,
    /// The effects to apply (only with [`Decision::Succeeded`] and [`RunMode::Run`]).
    pub effects: Vec<Effect>,
    /// The attempt's report (secrets already redacted).
    pub report: RunReport,
    /// What to do with the run.
    pub decision: Decision,
    /// What the attempt cost.
    pub cost: Cost,
    /// Runs the effects' [`Effect::StartRun`] requests become (pinned by the caller),
    /// queued in the same transaction when the effects apply, each keyed by its
    /// request's id (a second commit of the same request queues nothing).
    pub spawned: Vec<NewRun>,
    /// Where the contact effects go: the embedded contact store, or one
    /// [`ContactUpdate`] outbox row for the platform that owns the tenant's contacts.
    pub contact_owner: ContactOwner,
}

/// Who keeps a tenant's contacts, and so where a run's field and tag changes go at
/// commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactOwner {
    /// Fluxo's embedded contact store: the changes are applied to the stored contact in
    /// the commit's transaction (`GET /v1/contacts/{id}` shows them).
    #[default]
    Embedded,
    /// The embedding platform: the embedded store is left alone and the commit writes
    /// one [`ContactUpdate`] outbox row with the run's changes, in order, delivered at
    /// least once through the platform's `ContactSync` (by default a signed
    /// `contact.updated` webhook).
    Platform,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    /// The run's state now.
    pub state: RunPhase,
    /// Why the effects were refused, when they were (the tenant's state cap, checked in
    /// the transaction): the run was recorded failed with this error instead.
    pub refused: Option<RunError>,
    /// False when this exact attempt had already been committed and this call changed
    /// nothing (it returns the first result).
    pub first: bool,
}

/// Counts of runs by state (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Runs per state.
    pub by_state: Vec<(RunPhase, u64)>,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued, retrying or waiting: it will never run.
    Cancelled,
    /// The run is running: it is marked, its worker stops it at the next heartbeat and
    /// commits nothing.
    Requested,
    /// The run was already over.
    AlreadyFinal(RunPhase),
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// When the lease now ends.
    pub expires_ms: i64,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
}

/// What an outbox row delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// An e-mail.
    Email,
    /// A completion webhook.
    Webhook,
    /// A message for the platform: a reply, a notification, a handoff.
    Message,
    /// A contact's changes for the platform that owns the tenant's contacts.
    ContactUpdate,
}

impl OutboxKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Message => "message",
            Self::ContactUpdate => "contact_update",
        }
    }
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxPayload {
    /// An e-mail, sent over SMTP.
    Email(OutgoingEmail),
    /// A completion webhook to one endpoint.
    Webhook(WebhookMessage),
    /// A message for the platform, delivered through its `Conversation`.
    Message(fluxo_core::PlatformMessage),
    /// A contact's changes for the platform, delivered through its `ContactSync`.
    ContactUpdate(ContactUpdate),
}

impl OutboxPayload {
    /// The kind.
    #[must_use]
    pub fn kind(&self) -> OutboxKind {
        match self {
            Self::Email(_) => OutboxKind::Email,
            Self::Webhook(_) => OutboxKind::Webhook,
            Self::Message(_) => OutboxKind::Message,
            Self::ContactUpdate(_) => OutboxKind::ContactUpdate,
        }
    }
}

/// The outbox row an effect writes at commit, with its deduplication key (the message's
/// id: a commit replayed after a crash writes no second row), or `None` for effects
/// applied in place (contacts, state).
#[must_use]
pub fn outbox_row(effect: &fluxo_core::Effect) -> Option<(&str, OutboxPayload)> {
    match effect {
        fluxo_core::Effect::SendEmail(email) => {
            Some((&email.message_id, OutboxPayload::Email(email.clone())))
        }
        fluxo_core::Effect::SendMessage(message) => {
            Some((&message.message_id, OutboxPayload::Message(message.clone())))
        }
        _ => None,
    }
}

/// What one commit changed on a platform-owned contact: the run's field and tag changes,
/// in the order the run made them. Each change is absolute for its key (a field's value,
/// a tag present or absent), so the receiver deduplicates on `update_id` (delivery is at
/// least once) and, per field name and per tag, keeps the `sequence` of the update that
/// last changed it, applying a change only when its update's `sequence` is above that
/// key's: a retried older update may arrive after a newer one, and must neither undo
/// the newer one's keys nor be dropped for the keys the newer one did not touch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactUpdate {
    /// `cu_RUN-ID.FENCE`: the run and the fencing token of the lease that committed it
    /// (0 for a run applied directly), so a workflow's segments each send their own, and
    /// a retried delivery carries the same id.
    pub update_id: String,
    /// The run that made the changes.
    pub run_id: RunId,
    /// The contact.
    pub contact: ContactId,
    /// The contact's updates from 1, in commit order (a per-contact counter the commit
    /// bumps in its transaction).
    pub sequence: u64,
    /// The changes, in the run's order.
    pub changes: Vec<ContactChange>,
}

impl ContactUpdate {
    /// The update named by `run` and the committing lease's `fence`, numbered `sequence`.
    #[must_use]
    pub fn new(
        run: RunId,
        fence: u64,
        contact: ContactId,
        sequence: u64,
        changes: Vec<ContactChange>,
    ) -> Self {
        Self {
            update_id: format!("cu_{run}.{fence}"),
            run_id: run,
            contact,
            sequence,
            changes,
        }
    }

    /// Its outbox row's deduplication key (a commit replayed after a crash writes no
    /// second row).
    #[must_use]
    pub fn dedup_key(&self) -> String {
        format!("contact:{}", self.update_id)
    }
}

/// One change to a contact, as a contact update carries it (JSON: `{"kind":
/// "set_field", "name", "value"}`, `{"kind": "add_tag" | "remove_tag", "tag"}`, the
/// shape of the run's effects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContactChange {
    /// Set a field; `null` clears it.
    SetField {
        /// The field.
        name: String,
        /// The new value.
        value: fluxo_core::FieldValue,
    },
    /// Add a tag.
    AddTag {
        /// The tag.
        tag: String,
    },
    /// Remove a tag.
    RemoveTag {
        /// The tag.
        tag: String,
    },
}

impl ContactChange {
    /// The contact changes among `effects`, in order.
    #[must_use]
    pub fn of(effects: &[Effect]) -> Vec<Self> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::SetField { name, value } => Some(Self::SetField {
                    name: name.clone(),
                    value: value.clone(),
                }),
                Effect::AddTag { tag } => Some(Self::AddTag { tag: tag.clone() }),
                Effect::RemoveTag { tag } => Some(Self::RemoveTag { tag: tag.clone() }),
                _ => None,
            })
            .collect()
    }
}

/// Who keeps each tenant's contacts: one owner for every tenant, and exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactOwnership {
    /// The owner of tenants not listed.
    pub default: ContactOwner,
    /// Tenants with an owner of their own.
    pub tenants: std::collections::HashMap<TenantId, ContactOwner>,
}

impl ContactOwnership {
    /// Who keeps `tenant`'s contacts.
    #[must_use]
    pub fn of(&self, tenant: &TenantId) -> ContactOwner {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// A completion webhook: the Standard Webhooks `webhook-id` stays the same across
/// delivery attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookMessage {
    /// The endpoint it goes to.
    pub endpoint: String,
    /// `msg_…`: stable across retries, so the receiver deduplicates.
    pub webhook_id: String,
    /// The JSON body.
    pub body: String,
    /// When the event happened (seconds since the epoch); each delivery attempt is
    /// signed with its own time instead, so retries stay within receivers' tolerance.
    pub timestamp: i64,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// The row.
    pub id: i64,
    /// The tenant whose run wrote it.
    pub tenant: TenantId,
    /// What to deliver.
    pub payload: OutboxPayload,
    /// Delivery attempts before this one.
    pub attempts: u32,
    /// The claim's fencing token: settling needs it.
    pub claim: u64,
    /// When the row was written.
    pub created_ms: i64,
}

/// What a delivery attempt amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered.
    Sent,
    /// Try again at `at_ms`.
    Retry {
        /// When.
        at_ms: i64,
        /// What went wrong.
        error: String,
    },
    /// Given up.
    Failed {
        /// Why.
        error: String,
    },
}

/// Where an outbox row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Queued,
    /// Claimed by a delivery loop.
    Sending,
    /// Delivered.
    Sent,
    /// Given up; `last_error` says why.
    Failed,
}

/// An outbox row as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    /// The row.
    pub id: i64,
    /// The tenant.
    pub tenant: TenantId,
    /// The run that wrote it.
    pub run: Option<RunId>,
    /// What it delivers.
    pub payload: OutboxPayload,
    /// Its status.
    pub status: OutboxStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Which kind of secret a stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// A tenant's secret, read by its actions (`name` is the secret's name).
    Tenant,
    /// A webhook endpoint's signing secret (`name` is the endpoint's id).
    Webhook,
    /// An inbound hook's secret (`name` is the hook's name).
    Hook,
}

/// One stored secret value, for re-sealing. `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// What it is.
    pub kind: SecretKind,
    /// Whose.
    pub tenant: TenantId,
    /// The secret's name, or the endpoint's id.
    pub name: String,
    /// The backend's row of it (opaque; identifies one of an endpoint's secrets).
    pub row: i64,
    /// The value as stored.
    pub value: String,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("kind", &self.kind)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// A tenant's completion-webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpoint {
    /// `ep_…`.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// Whether deliveries go out (an endpoint answering 410 is disabled).
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was made.
    pub created_ms: i64,
}

/// A tenant's inbound hook: `POST /v1/hooks/{tenant}/{name}`, signed with the hook's
/// Standard Webhooks secret, starts `workflow` with the caller's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboundHook {
    /// Its name (unique per tenant; the URL's last segment).
    pub name: String,
    /// The workflow (or component action) each call starts.
    pub workflow: String,
    /// Where in the payload the run's contact id is (a path such as `ticket.external_id`
    /// or `data[contact]`); `None`: the run is about no contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_path: Option<String>,
    /// When it was made.
    pub created_ms: i64,
}

/// Inbound hooks one tenant may have.
pub const MAX_INBOUND_HOOKS: u64 = 20;

/// Which finished runs and settled outbox rows one pruning pass removes: those of
/// `tenant` (or, with `None`, of every tenant but those in `except`) that finished or
/// settled before `before_ms`. Retention per tenant is a pass per tenant with a retention
/// of its own, then one pass for everyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneScope {
    /// Rows older than this, in milliseconds since the Unix epoch.
    pub before_ms: i64,
    /// Only this tenant's rows; `None`: every tenant's but `except`'s.
    pub tenant: Option<TenantId>,
    /// Tenants a `None` pass leaves alone (they have a retention of their own).
    pub except: Vec<TenantId>,
}

impl PruneScope {
    /// The tenant as text (for SQL parameters), when the scope names one.
    #[must_use]
    pub fn tenant_text(&self) -> Option<String> {
        self.tenant
            .as_ref()
            .map(|tenant| tenant.as_str().to_owned())
    }

    /// The tenants left out, as text.
    #[must_use]
    pub fn except_texts(&self) -> Vec<String> {
        self.except
            .iter()
            .map(|tenant| tenant.as_str().to_owned())
            .collect()
    }
}

/// What pruning removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Finished runs removed.
    pub runs: u64,
    /// Delivered or failed outbox rows removed.
    pub outbox: u64,
    /// Contacts' messages removed from the inbox (past [`crate::INBOX_RETENTION_MS`]).
    pub inbox: u64,
}
