//! Fluxo's store port: what the orchestrator, the server and the CLI need from a store,
//! as traits over backend-neutral [`records`], with one opaque [`StoreError`].
//!
//! Backends (the embedded SQLite one, PostgreSQL for several nodes) implement every
//! trait and pass the `conformance` suite (feature `conformance`), one property per
//! test: idempotent enqueue, lease exclusivity, fence rejection, atomic commit, fair
//! claims, exactly-once outbox claims.
//!
//! The unit of work is [`Ledger::commit`]: one transaction applies a run's effects,
//! writes its outbox rows and its new state, conditioned on the worker's lease.

pub mod columns;
pub mod error;
pub mod records;
pub mod webhook;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::collections::BTreeMap;

use fluxo_core::{ActionName, Contact, ContactId, LimitOverrides, RetryPolicy, RunId, TenantId};
pub use fluxo_core::{StateKey, StateUsage};

pub use self::error::{StoreError, StoreErrorKind};
pub use self::records::*;

/// Webhook endpoints one tenant may register: every commit writes one outbox row per
/// endpoint, so their number is bounded.
pub const MAX_WEBHOOK_ENDPOINTS: u64 = 10;

/// A boxed future, for traits that must be object safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The answer of a store call.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Tenants, token hashes, actions and versions, secrets, webhook endpoints.
pub trait Catalog: Send + Sync + 'static {
    /// Creates a tenant; `false` when it exists.
    fn create_tenant<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool>;
    /// Whether the tenant exists.
    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, bool>;
    /// Stores a token's hash for a tenant.
    fn add_token<'a>(&'a self, tenant: &'a TenantId, hash: &'a str) -> StoreFuture<'a, ()>;
    /// The tenant of a token hash.
    fn token_tenant<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<TenantId>>;
    /// Records a new version and makes it active (creating the action on its first
    /// upload); returns its number.
    fn add_version<'a>(&'a self, version: NewVersion<'a>) -> StoreFuture<'a, u32>;
    /// The tenant's actions, by name.
    fn actions<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<ActionRecord>>;
    /// One action.
    fn action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<ActionRecord>>;
    /// An action's versions, oldest first.
    fn versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Vec<VersionRecord>>;
    /// One version.
    fn version<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, Option<VersionRecord>>;
    /// Enables or disables; `false` when absent.
    fn set_enabled<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        enabled: bool,
    ) -> StoreFuture<'a, bool>;
    /// Sets limit overrides; `false` when absent.
    fn set_limits<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        limits: &'a LimitOverrides,
    ) -> StoreFuture<'a, bool>;
    /// Sets the retry policy; `false` when absent.
    fn set_retry<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        retry: &'a RetryPolicy,
    ) -> StoreFuture<'a, bool>;
    /// Activates a version; `false` when absent.
    fn activate<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
        version: u32,
    ) -> StoreFuture<'a, bool>;
    /// Deletes an action and its versions; `None` when absent, else the component hashes
    /// no version of any action uses any more (their blobs may go).
    fn delete_action<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a ActionName,
    ) -> StoreFuture<'a, Option<Vec<String>>>;
    /// Sets a secret.
    fn set_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, ()>;
    /// Deletes a secret; `false` when absent.
    fn delete_secret<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool>;
    /// The tenant's secrets, by name.
    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, BTreeMap<String, String>>;
    /// Registers a webhook endpoint with its first signing secret (`whsec_…`).
    fn add_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        url: &'a str,
        secret: &'a str,
    ) -> StoreFuture<'a, WebhookEndpoint>;
    /// The tenant's endpoints.
    fn endpoints<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<WebhookEndpoint>>;
    /// An endpoint and its signing secrets, newest first (several during a rotation).
    fn endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<(WebhookEndpoint, Vec<String>)>>;
    /// Adds a new signing secret, keeping the older ones until `keep_until_ms`.
    fn rotate_endpoint_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        secret: &'a str,
        keep_until_ms: i64,
    ) -> StoreFuture<'a, bool>;
    /// Disables an endpoint with the reason (a 410 from it).
    fn disable_endpoint<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Deletes an endpoint; `false` when absent.
    fn delete_endpoint<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> StoreFuture<'a, bool>;
    /// Creates inbound hook `hook` with its secret (`whsec_…`, sealed by the caller), or
    /// changes an existing one's workflow and contact path (its secret stays); returns
    /// whether it was created.
    ///
    /// Fails with [`StoreErrorKind::Conflict`] when creating one past
    /// [`MAX_INBOUND_HOOKS`].
    fn put_hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        hook: &'a InboundHook,
        secret: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// The tenant's inbound hooks, by name.
    fn hooks<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<InboundHook>>;
    /// An inbound hook and its secret (as stored).
    fn hook<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<(InboundHook, String)>>;
    /// Deletes an inbound hook; `false` when absent.
    fn delete_hook<'a>(&'a self, tenant: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool>;
    /// Whether the store answers and its schema is this Fluxo's (for `/readyz`).
    fn ready(&self) -> StoreFuture<'_, ()>;
    /// Every stored secret value of every tenant, tenant secrets and webhook signing
    /// secrets alike, as stored (sealed by the caller; the store never sees plaintext
    /// once sealing is on). For sealing values stored before it, and key rotation.
    fn stored_secrets(&self) -> StoreFuture<'_, Vec<StoredSecret>>;
    /// Replaces the values of the given stored secrets (matched by kind and row), in one
    /// transaction: all or none.
    fn replace_stored_secrets(&self, values: Vec<StoredSecret>) -> StoreFuture<'_, ()>;
}

/// Uploaded component bytes, by SHA-256 (hex). Shared by every node, so each can compile
/// every action.
pub trait ComponentStore: Send + Sync + 'static {
    /// Stores `bytes` under `hash` (a no-op when present).
    fn put_component<'a>(&'a self, hash: &'a str, bytes: &'a [u8]) -> StoreFuture<'a, ()>;
    /// The bytes under `hash`.
    fn component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Removes the bytes under `hash`; `false` when absent.
    fn delete_component<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, bool>;
}

/// Called when runs may have become claimable elsewhere (see [`RunQueue::on_work`]).
pub type WorkHint = std::sync::Arc<dyn Fn() + Send + Sync>;

/// The durable run queue: accepted runs, claims with leases and fencing tokens.
pub trait RunQueue: Send + Sync + 'static {
    /// Registers `wake`, called from a background task when another node may have
    /// queued work — a hint only, which may come late, twice or never: claimers keep
    /// polling, so a lost hint costs latency, never correctness. The default (one
    /// process per store, as SQLite) never calls it.
    fn on_work(&self, wake: WorkHint) {
        let _ = wake;
    }

    /// Accepts a run; durable when this returns. With an idempotency key already used by
    /// the tenant, returns that run instead (`deduplicated`).
    fn enqueue(&self, run: NewRun) -> StoreFuture<'_, Enqueued>;
    /// Claims runnable runs: fair across tenants (deficit round robin weighted by what
    /// their runs cost), skipping tenants at `per_tenant` running runs, interactive runs
    /// first; expired leases are taken over (a crash redelivery, `attempt + 1`), and a
    /// run redelivered more than its policy allows is parked as dead instead.
    fn claim<'a>(&'a self, request: &'a ClaimRequest) -> StoreFuture<'a, Vec<Claimed>>;
    /// Extends a lease by `lease_ms` from now.
    ///
    /// Fails with [`StoreErrorKind::LeaseLost`] when the fence no longer matches.
    fn heartbeat<'a>(&'a self, lease: &'a Lease, lease_ms: u64) -> StoreFuture<'a, Heartbeat>;
    /// Ends the leases `node` held (it restarted, so nothing of its runs is running): the
    /// next claim takes them over as crash redeliveries. Returns how many.
    fn abandon<'a>(&'a self, node: &'a str) -> StoreFuture<'a, u64>;
    /// Gives a claimed run back without counting an attempt (a node shutting down).
    fn release<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()>;
    /// Cancels a run.
    fn cancel<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, CancelOutcome>;
    /// Records `message` from `contact` and ends the wait of every run of the tenant
    /// waiting for that contact's reply (each is queued with it, now). The message is
    /// kept for [`INBOX_RETENTION_MS`] so that a run that was queued or running when it
    /// arrived, and which then waits, gets it too ([`Decision::Wait`]). Returns the runs
    /// resumed.
    fn deliver_reply<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: &'a ContactId,
        message: &'a fluxo_core::Message,
    ) -> StoreFuture<'a, Vec<RunId>>;
    /// Queues a dead run again (its attempts start over); `false` when it is not dead.
    fn retry_dead<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, bool>;
    /// One of the tenant's runs.
    fn run<'a>(&'a self, tenant: &'a TenantId, id: RunId) -> StoreFuture<'a, Option<RunRecord>>;
    /// The tenant's run accepted under `key`, if any.
    fn run_by_key<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>>;
    /// The tenant's runs, newest first (tests excluded).
    fn runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a RunFilter,
    ) -> StoreFuture<'a, Vec<RunRecord>>;
    /// Runs by state, over every tenant.
    fn run_counts(&self) -> StoreFuture<'_, RunCounts>;
    /// Removes up to a batch (1 000 of each) of the finished runs and settled outbox
    /// rows `scope` names; call again until it removes nothing.
    fn prune<'a>(&'a self, scope: &'a PruneScope) -> StoreFuture<'a, Pruned>;
}

/// The unit of work.
pub trait Ledger: Send + Sync + 'static {
    /// Commits one attempt in one transaction: checks the lease's fence, applies the
    /// effects (contacts in the embedded store, or one [`ContactUpdate`] outbox row when
    /// [`Commit::contact_owner`] says the platform owns them; state with the tenant's cap
    /// checked inside the transaction), writes e-mail and platform-message outbox rows
    /// keyed by their ids and webhook rows for a final state, and the run's new state
    /// and report. A second commit of the same attempt changes nothing and returns the
    /// first result.
    ///
    /// Fails with [`StoreErrorKind::LeaseLost`] when another holder took the run.
    fn commit(&self, commit: Commit) -> StoreFuture<'_, Committed>;

    /// Applies the effects of a run that was not queued (an embedder's direct run,
    /// `fluxo run --data-dir`) in one transaction, like a commit without the run's row
    /// (contact changes go where `contact_owner` says; a platform's update has fence 0);
    /// returns the refusal when the tenant's state cap refuses them (nothing applied).
    fn apply_effects<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: Option<&'a ContactId>,
        contact_owner: ContactOwner,
        run: RunId,
        effects: &'a [fluxo_core::Effect],
    ) -> StoreFuture<'a, Option<fluxo_core::RunError>>;
}

/// Durable state, read during runs.
pub trait StateStore: Send + Sync + 'static {
    /// The live value under `key`.
    fn state<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// The tenant's use and cap, and the size of `key`'s entry.
    fn state_usage<'a>(&'a self, key: &'a StateKey) -> StoreFuture<'a, StateUsage>;
}

/// The embedded contact store.
pub trait Contacts: Send + Sync + 'static {
    /// A stored contact.
    fn contact<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a ContactId,
    ) -> StoreFuture<'a, Option<Contact>>;
}

/// The outbox: e-mails and webhooks written by commits, delivered by dispatchers.
pub trait Outbox: Send + Sync + 'static {
    /// Claims due rows (queued and due, or claimed by a holder whose lease expired): each
    /// row is held by one claimer at a time.
    fn claim_due<'a>(
        &'a self,
        node: &'a str,
        kinds: &'a [OutboxKind],
        max: u32,
        lease_ms: u64,
    ) -> StoreFuture<'a, Vec<OutboxItem>>;
    /// Records a delivery attempt.
    ///
    /// Fails with [`StoreErrorKind::LeaseLost`] when the claim is no longer this one's.
    fn settle<'a>(&'a self, id: i64, claim: u64, settlement: Settlement) -> StoreFuture<'a, ()>;
    /// Gives claimed rows back untried, in one transaction: queued again, due at
    /// `at_ms`, their attempts and last error as they were (platform messages behind one
    /// of their conversation that was not sent wait for it, all together, so none is
    /// claimed apart from the others). Returns how many were still held under their
    /// claims (the others were taken over meanwhile and are left alone).
    fn release_rows<'a>(&'a self, rows: &'a [(i64, u64)], at_ms: i64) -> StoreFuture<'a, u64>;
    /// Every row, oldest first (for inspection).
    fn outbox(&self) -> StoreFuture<'_, Vec<OutboxRecord>>;
}

/// Every port: what a backend implements.
pub trait Store:
    Catalog + ComponentStore + RunQueue + Ledger + StateStore + Contacts + Outbox
{
}

impl<T> Store for T where
    T: Catalog + ComponentStore + RunQueue + Ledger + StateStore + Contacts + Outbox
{
}

/// How long a contact's message is kept for runs that start waiting after it arrived,
/// in milliseconds: 25 hours, the longest deadline a segment may have
/// (`fluxo_core::limits::MAX_DEADLINE_MS`, 24 h) and an hour for it to be claimed.
pub const INBOX_RETENTION_MS: i64 = 25 * 3600 * 1000;

/// How long a tree of runs starting runs is counted ([`fluxo_core::MAX_RUNS_PER_TREE`])
/// after it last started one: 31 days, the longest wait and a day. A tree that started
/// nothing for that long counts from zero again.
pub const RUN_TREE_RETENTION_MS: i64 = 31 * 24 * 3600 * 1000;

/// The refusal of a commit whose started runs would take their tree past
/// [`fluxo_core::MAX_RUNS_PER_TREE`]: nothing of the commit's effects applies.
#[must_use]
pub fn tree_refusal(root: fluxo_core::RunId, started: u64) -> fluxo_core::RunError {
    fluxo_core::RunError::new(
        fluxo_core::ErrorKind::QuotaExceeded,
        format!(
            "run tree: the runs started from run {root} would be {started}, over the {} one tree may start; nothing was applied",
            fluxo_core::MAX_RUNS_PER_TREE
        ),
    )
    .blamed_on(fluxo_core::Blame::Guest)
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
