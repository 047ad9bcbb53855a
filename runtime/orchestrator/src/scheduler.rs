//! The scheduler: accepts runs into the durable queue, and runs this node's workers —
//! claim → resolve → execute → commit, with heartbeats.
//!
//! - **Accepted = durable.** `submit` returns once the run's row is committed (the
//!   store batches concurrent submits into one fsync).
//! - **Claims, not hand-offs.** A worker claims only runs it can start now (a free
//!   worker here, a free slot of the run's tenant over every node): a busy tenant never
//!   parks a worker. Tests go first; tenants share by cost.
//! - **Leases and fences.** A run is held under a lease renewed by heartbeats (a third of
//!   the lease); its commit is conditioned on the lease's fencing token, so a worker that
//!   stalled past its lease commits nothing. A run whose lease expired is claimed again
//!   (`attempt + 1`) by whichever node claims next, up to the policy's crash
//!   redeliveries, then parked dead.
//! - **Retries** of retryable failures follow the run's policy (full jitter, an
//!   upstream's `Retry-After` honoured up to a cap); after the last attempt the run is
//!   dead, with every attempt's summary.
//! - **Cancel**: a queued run never runs; a running one is dropped at once on this node
//!   (at its next heartbeat on another) and commits nothing but its cancellation.
//! - **Shutdown**: stop claiming, let running runs finish up to a grace period, give the
//!   leases of the rest back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fluxo_core::{
    ActionName, Blame, Contact, Effect, ErrorKind, Event, Limits, RetryPolicy, RunError, RunId,
    TenantId, Trigger,
};
use fluxo_sandbox::platform::SecretSource;
use fluxo_sandbox::{Capabilities, Execution, RunContext, RunMeta};
use fluxo_store::{
    CancelOutcome, ClaimRequest, Claimed, Commit, ContactOwnership, Cost, Decision, Enqueued,
    NewRun, Priority, RunMode, RunPhase, RunRecord, RunTarget, Store, StoreError,
};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::registry::{Implementation, Registry, RegistryError};
use crate::workflow_run::Attempted;

/// Settings of a node's scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// This node's name, stable across restarts (in leases, records and logs).
    pub node: String,
    /// Runs executing at once on this node.
    pub workers: usize,
    /// Runs of one tenant executing at once, over every node.
    pub per_tenant: u32,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
    /// How long an idle worker waits before claiming again (submits on this node wake
    /// it at once).
    pub poll: Duration,
    /// Runs claimed at most per claim.
    pub claim_batch: u32,
    /// Who keeps each tenant's contacts: where a run's field and tag changes go at
    /// commit.
    pub contact_owners: ContactOwnership,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            node: "local".to_owned(),
            workers: 8,
            per_tenant: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            claim_batch: 16,
            contact_owners: ContactOwnership::default(),
        }
    }
}

/// Why a run was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The tenant's backlog is full; try again after the hint.
    #[error("the tenant's run backlog is full; retry in {} s", .retry_after.as_secs())]
    Overloaded {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The action or version cannot run.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SubmitError {
    fn from(error: StoreError) -> Self {
        if error.is_overloaded() {
            Self::Overloaded {
                retry_after: Duration::from_secs(1),
            }
        } else {
            Self::Store(error)
        }
    }
}

/// The run service of one node.
pub struct Scheduler {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    capabilities: Arc<Capabilities>,
    secrets: Arc<dyn SecretSource>,
    limits: Limits,
    options: SchedulerOptions,
    metrics: Arc<Metrics>,
    wake: Notify,
    finished: broadcast::Sender<RunId>,
    running: Mutex<HashMap<RunId, CancellationToken>>,
    stop_claiming: CancellationToken,
    release_now: CancellationToken,
    tasks: TaskTracker,
    workflows: fluxo_workflow::Interpreter,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How an attempt stopped before its guest returned.
enum Interrupted {
    Cancelled,
    LeaseLost,
    Released,
}

impl Scheduler {
    /// A scheduler over `store`; `secrets` gives each run its tenant's secrets
    /// ([`crate::adapters::StoreSecrets`] opens the store's sealed values); `limits` are
    /// the host's (actions' overrides only tighten them). Call [`Scheduler::start`] to
    /// run this node's workers.
    #[must_use]
    #[allow(
        clippy::too_many_arguments,
        reason = "the scheduler's collaborators, each once"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        capabilities: Arc<Capabilities>,
        secrets: Arc<dyn SecretSource>,
        limits: Limits,
        options: SchedulerOptions,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let workflows = fluxo_workflow::Interpreter::new().with_actions(Arc::new(
            crate::workflow_run::RegistryActions::new(registry.clone()),
        ));
        let scheduler = Arc::new(Self {
            store,
            registry,
            capabilities,
            secrets,
            limits,
            options,
            metrics,
            wake: Notify::new(),
            finished: broadcast::channel(1024).0,
            running: Mutex::new(HashMap::new()),
            stop_claiming: CancellationToken::new(),
            release_now: CancellationToken::new(),
            tasks: TaskTracker::new(),
            workflows,
        });
        // Work queued on another node (PostgreSQL's LISTEN/NOTIFY) wakes an idle claim
        // loop before its next poll.
        let weak = Arc::downgrade(&scheduler);
        scheduler.store.on_work(Arc::new(move || {
            if let Some(scheduler) = weak.upgrade() {
                scheduler.wake.notify_one();
            }
        }));
        scheduler
    }

    /// The host's limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This node's settings.
    #[must_use]
    pub fn options(&self) -> &SchedulerOptions {
        &self.options
    }

    /// Starts this node's workers: first the runs this node held before it restarted are
    /// made claimable (crash redeliveries), then the claim loop runs until shutdown.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        // Tracked like the runs: shutdown waits for a claim in flight to come back.
        self.tasks.spawn(async move {
            match this.store.abandon(&this.options.node).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(
                    count,
                    "runs this node held before it stopped are claimable again"
                ),
                Err(error) => {
                    tracing::warn!(%error, "could not release this node's earlier leases")
                }
            }
            this.claim_loop().await;
        })
    }

    /// Accepts a run of `tenant`'s `action` (at `version`, else the active one) for
    /// `event`; durable when this returns. With `idempotency_key` already used by the
    /// tenant, returns that run.
    ///
    /// # Errors
    /// [`SubmitError`]: a missing or disabled action or version, a full backlog, the
    /// store.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        action: &ActionName,
        version: Option<u32>,
        event: Event,
        idempotency_key: Option<String>,
    ) -> Result<Enqueued, SubmitError> {
        // A client repeating a submit gets its run, even if the action changed since.
        if let Some(key) = &idempotency_key
            && let Some(earlier) = self.store.run_by_key(tenant, key).await?
        {
            return Ok(Enqueued {
                id: earlier.id,
                deduplicated: true,
                state: earlier.state,
            });
        }
        let run = self
            .new_run(tenant, action, version, event, idempotency_key)
            .await?;
        let enqueued = self.store.enqueue(run).await.inspect_err(|error| {
            if error.is_overloaded() {
                self.metrics.record_rejected_submit();
            }
        })?;
        self.wake.notify_one();
        Ok(enqueued)
    }

    /// A background run of `tenant`'s `action` (at `version`, else the active one),
    /// with the action's limits and retry policy.
    async fn new_run(
        &self,
        tenant: &TenantId,
        action: &ActionName,
        version: Option<u32>,
        event: Event,
        idempotency_key: Option<String>,
    ) -> Result<NewRun, SubmitError> {
        let (record, version) = self.pin(tenant, action, version).await?;
        if !record.enabled {
            return Err(RegistryError::Disabled(action.to_string()).into());
        }
        Ok(NewRun {
            id: RunId::new(),
            tenant: tenant.clone(),
            target: RunTarget::Action {
                name: action.clone(),
                version,
            },
            event,
            limits: self.limits.tightened_by(&record.limits),
            retry: record.retry,
            mode: RunMode::Run,
            priority: Priority::Background,
            idempotency_key,
        })
    }

    /// The runs `effects`' start requests become, pinned now (the commit queues them).
    /// A request whose target was deleted or disabled since its step checked it is
    /// taken out of `effects` and returned with a note (its request id first): the rest
    /// of the run (a segment's messages, a wait) commits without it.
    ///
    /// # Errors
    /// `backend_unavailable` (retryable) when the catalog cannot be read.
    async fn spawned(
        &self,
        tenant: &TenantId,
        effects: &mut Vec<Effect>,
    ) -> Result<(Vec<NewRun>, Vec<(String, String)>), RunError> {
        let mut runs = Vec::new();
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(effects.len());
        for effect in std::mem::take(effects) {
            let Effect::StartRun(request) = &effect else {
                kept.push(effect);
                continue;
            };
            let Ok(action) = ActionName::parse(&request.action) else {
                dropped.push((
                    request.request_id.clone(),
                    format!("`{}` is not an action name", request.action),
                ));
                continue;
            };
            let mut event = Event::new(tenant.clone(), action.clone());
            event.trigger = Trigger::Workflow;
            if let Some(contact) = &request.contact {
                event.contact = Contact::with_id(contact.clone());
            }
            event.input = request.input.clone().into();
            event.depth = request.depth;
            event.root = Some(request.root);
            match self
                .new_run(
                    tenant,
                    &action,
                    None,
                    event,
                    Some(request.request_id.clone()),
                )
                .await
            {
                Ok(run) => {
                    runs.push(run);
                    kept.push(effect);
                }
                Err(SubmitError::Registry(error)) => {
                    dropped.push((
                        request.request_id.clone(),
                        format!("`{action}` was not started: {error}"),
                    ));
                }
                Err(other) => {
                    return Err(
                        RunError::new(ErrorKind::BackendUnavailable, other.to_string())
                            .blamed_on(Blame::Platform),
                    );
                }
            }
        }
        *effects = kept;
        Ok((runs, dropped))
    }

    /// Tests `tenant`'s `action` on `event`: a run like any other (the tenant's slots,
    /// the same limits and policy) that applies nothing and goes before background runs.
    /// Waits for it and returns its record.
    ///
    /// # Errors
    /// As [`Scheduler::submit`]; a test that does not finish in time is a store
    /// `Transient` error.
    pub async fn test(
        &self,
        tenant: &TenantId,
        action: &ActionName,
        version: Option<u32>,
        event: Event,
    ) -> Result<RunRecord, SubmitError> {
        let (record, version) = self.pin(tenant, action, version).await?;
        let limits = self.limits.tightened_by(&record.limits);
        let patience = Duration::from_millis(limits.deadline_ms) + Duration::from_secs(60);
        let run = NewRun {
            id: RunId::new(),
            tenant: tenant.clone(),
            target: RunTarget::Action {
                name: action.clone(),
                version,
            },
            event,
            limits,
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            mode: RunMode::Test,
            priority: Priority::Interactive,
            idempotency_key: None,
        };
        let id = self.store.enqueue(run).await?.id;
        self.wake.notify_one();
        match self.wait(tenant, id, patience).await? {
            Some(record) if record.state.is_final() => Ok(record),
            _ => Err(SubmitError::Store(StoreError::transient(format!(
                "the test did not finish within {} s",
                patience.as_secs()
            )))),
        }
    }

    /// The action's record and the version a run pins.
    async fn pin(
        &self,
        tenant: &TenantId,
        action: &ActionName,
        version: Option<u32>,
    ) -> Result<(fluxo_store::ActionRecord, u32), SubmitError> {
        let record = self
            .store
            .action(tenant, action)
            .await?
            .ok_or_else(|| RegistryError::NotFound(action.to_string()))?;
        let version = version.unwrap_or(record.active_version);
        if self.store.version(tenant, action, version).await?.is_none() {
            return Err(RegistryError::NoSuchVersion(action.to_string(), version).into());
        }
        Ok((record, version))
    }

    /// Waits (at most `timeout`) until the run is final or waits for a reply; returns its
    /// record as last seen (`None` when the tenant has no such run).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn wait(
        &self,
        tenant: &TenantId,
        id: RunId,
        timeout: Duration,
    ) -> Result<Option<RunRecord>, StoreError> {
        let until = Instant::now() + timeout;
        let mut finished = self.finished.subscribe();
        loop {
            let record = self.store.run(tenant, id).await?;
            match record {
                Some(record)
                    if !record.state.is_final()
                        && record.state != RunPhase::Waiting
                        && Instant::now() < until => {}
                other => return Ok(other),
            }
            // A finish on this node wakes the wait at once; one elsewhere is seen by the
            // next poll.
            let poll = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                () = poll => {}
                _ = finished.recv() => {}
            }
        }
    }

    /// Reports a message from `contact`: every run of the tenant waiting for that
    /// contact's reply goes on with it (at once, on this node or another); a run still
    /// running when it arrived gets it when it reaches its wait. Returns the runs resumed.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn deliver_reply(
        &self,
        tenant: &TenantId,
        contact: &fluxo_core::ContactId,
        message: &fluxo_core::Message,
    ) -> Result<Vec<RunId>, StoreError> {
        let resumed = self.store.deliver_reply(tenant, contact, message).await?;
        if !resumed.is_empty() {
            self.wake.notify_one();
        }
        Ok(resumed)
    }

    /// Cancels a run: a queued one never runs; a running one is stopped (at once on this
    /// node) and commits nothing but its cancellation.
    ///
    /// # Errors
    /// [`fluxo_store::StoreErrorKind::NotFound`] for another tenant's or no run.
    pub async fn cancel(&self, tenant: &TenantId, id: RunId) -> Result<CancelOutcome, StoreError> {
        let outcome = self.store.cancel(tenant, id).await?;
        if outcome == CancelOutcome::Requested
            && let Some(token) = self
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
        {
            token.cancel();
        }
        if outcome == CancelOutcome::Cancelled {
            let _ = self.finished.send(id);
        }
        Ok(outcome)
    }

    /// Queues a dead run again.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn retry(&self, tenant: &TenantId, id: RunId) -> Result<bool, StoreError> {
        let retried = self.store.retry_dead(tenant, id).await?;
        if retried {
            self.wake.notify_one();
        }
        Ok(retried)
    }

    /// Stops claiming new runs (the first step of a shutdown; call it as soon as the
    /// signal arrives, before draining the API).
    pub fn stop_claiming(&self) {
        self.stop_claiming.cancel();
        self.wake.notify_waiters();
    }

    /// Stops claiming, lets running runs finish for up to `grace`, then gives the leases
    /// of the rest back (they run again elsewhere, or here after a restart).
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_claiming.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            self.release_now.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        }
    }

    /// Subscribes to the ids of runs this node finishes.
    #[must_use]
    pub fn finished(&self) -> broadcast::Receiver<RunId> {
        self.finished.subscribe()
    }

    async fn claim_loop(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.options.workers.max(1)));
        let lease_ms = u64::try_from(self.options.lease.as_millis()).unwrap_or(u64::MAX);
        loop {
            if self.stop_claiming.is_cancelled() {
                return;
            }
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    () = self.stop_claiming.cancelled() => return,
                    permit = slots.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            let request = ClaimRequest {
                node: self.options.node.clone(),
                max: u32::try_from(free)
                    .unwrap_or(u32::MAX)
                    .min(self.options.claim_batch),
                lease_ms,
                per_tenant: self.options.per_tenant,
            };
            let started = Instant::now();
            let claims = match self.store.claim(&request).await {
                Ok(claims) => claims,
                Err(error) => {
                    tracing::warn!(%error, "claiming runs failed");
                    tokio::time::sleep(self.options.poll).await;
                    continue;
                }
            };
            self.metrics.record_claim(started.elapsed().as_secs_f64());
            let taken_over = claims.iter().filter(|claimed| claimed.taken_over).count();
            self.metrics
                .record_lease_expiries(u64::try_from(taken_over).unwrap_or(0));
            if self.stop_claiming.is_cancelled() {
                // Shutdown began while this claim was in flight: give the runs back.
                for claimed in claims {
                    if let Err(error) = self.store.release(&claimed.lease).await {
                        tracing::warn!(%error, "could not give a claimed run back at shutdown");
                    }
                }
                return;
            }
            if claims.is_empty() {
                tokio::select! {
                    () = self.stop_claiming.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.options.poll) => {}
                }
                continue;
            }
            for claimed in claims {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // More runs than free workers (never, by the request): give it back.
                    if let Err(error) = self.store.release(&claimed.lease).await {
                        tracing::warn!(%error, "could not give a claimed run back");
                    }
                    continue;
                };
                let span = tracing::info_span!(
                    "run",
                    tenant = %claimed.tenant,
                    action = %claimed.target.name(),
                    run = %claimed.lease.run,
                    attempt = claimed.lease.attempt,
                    node = %self.options.node,
                );
                let this = self.clone();
                self.tasks.spawn(
                    async move {
                        this.run_claimed(claimed).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
    }

    async fn run_claimed(&self, claimed: Claimed) {
        let id = claimed.lease.run;
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, cancel.clone());
        let outcome = self.attempt(&claimed, &cancel).await;
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let attempted = match outcome {
            Ok(attempted) => attempted,
            Err(Interrupted::LeaseLost) => {
                self.metrics.record_lease_lost();
                tracing::warn!("the lease was taken over: this attempt commits nothing");
                return;
            }
            Err(Interrupted::Released) => {
                if let Err(error) = self.store.release(&claimed.lease).await {
                    tracing::warn!(%error, "could not give the run back at shutdown");
                }
                return;
            }
            Err(Interrupted::Cancelled) => Execution::not_started(
                meta(&claimed),
                RunError::new(
                    ErrorKind::Cancelled,
                    "cancelled while it ran; nothing was applied",
                ),
            )
            .into(),
        };
        self.commit(&claimed, attempted).await;
        let _ = self.finished.send(id);
        // A slot of this node and of the tenant is free: claim again now, not at the
        // next poll (found by the API benchmark: runs of one tenant went 4 per 200 ms).
        self.wake.notify_one();
    }

    /// Executes one claimed attempt, heartbeating its lease; stops early on a cancel, a
    /// lost lease or shutdown.
    async fn attempt(
        &self,
        claimed: &Claimed,
        cancel: &CancellationToken,
    ) -> Result<Attempted, Interrupted> {
        let prepare = self.prepare(claimed);
        let execute = async {
            match prepare.await {
                Ok((Implementation::Component(component), ctx)) => self
                    .registry
                    .sandbox()
                    .execute(&component, ctx, &claimed.event)
                    .await
                    .into(),
                Ok((Implementation::Workflow(workflow), ctx)) => {
                    crate::workflow_run::execute(
                        &self.workflows,
                        &workflow,
                        ctx,
                        &claimed.event,
                        claimed.resume.as_ref(),
                    )
                    .await
                }
                Err(error) => Execution::not_started(meta(claimed), error).into(),
            }
        };
        let lease_ms = u64::try_from(self.options.lease.as_millis()).unwrap_or(u64::MAX);
        let heartbeat = async {
            loop {
                tokio::time::sleep(self.options.lease / 3).await;
                match self.store.heartbeat(&claimed.lease, lease_ms).await {
                    Ok(beat) if beat.cancel_requested => return Interrupted::Cancelled,
                    Ok(_) => {}
                    Err(error) if error.is_lease_lost() => return Interrupted::LeaseLost,
                    Err(error) => tracing::warn!(%error, "heartbeat failed; the lease may expire"),
                }
            }
        };
        tokio::select! {
            execution = execute => Ok(execution),
            stop = heartbeat => Err(stop),
            () = cancel.cancelled() => Err(Interrupted::Cancelled),
            () = self.release_now.cancelled() => Err(Interrupted::Released),
        }
    }

    /// What the run runs (a component or a workflow) and its context, or why the run
    /// cannot start.
    async fn prepare(&self, claimed: &Claimed) -> Result<(Implementation, RunContext), RunError> {
        let RunTarget::Action { name, version } = &claimed.target;
        let (action, _, component) = self
            .registry
            .resolve_implementation(&claimed.tenant, name, Some(*version))
            .await
            .map_err(|error| match error {
                RegistryError::NotFound(_) | RegistryError::NoSuchVersion(..) => RunError::new(
                    ErrorKind::ActionDisabled,
                    format!("action {name} version {version} was deleted"),
                ),
                // The store's fault, not the guest's: retried by the run's policy.
                RegistryError::Store(error) => RunError::new(
                    ErrorKind::BackendUnavailable,
                    format!("reading the catalog: {error}"),
                )
                .blamed_on(Blame::Platform),
                // A stored definition this host no longer accepts: running it again
                // would fail the same way.
                error @ RegistryError::Workflow(_) => {
                    RunError::new(ErrorKind::InvalidComponent, error.to_string())
                }
                other => RunError::new(
                    ErrorKind::BackendUnavailable,
                    format!("loading the component: {other}"),
                )
                .blamed_on(Blame::Host),
            })?;
        if !action.enabled && claimed.mode == RunMode::Run {
            return Err(RunError::new(
                ErrorKind::ActionDisabled,
                format!("action {name} is disabled"),
            ));
        }
        let secrets = self
            .tenant_secrets(&claimed.tenant, claimed.limits.host_call_timeout_ms)
            .await?;
        let ctx = RunContext::new(
            meta(claimed),
            claimed.limits.clone(),
            self.capabilities.clone(),
        )
        .with_contact(claimed.event.contact.clone())
        .with_secrets(secrets);
        Ok((component, ctx))
    }

    /// The tenant's secrets, read within `timeout_ms`.
    async fn tenant_secrets(
        &self,
        tenant: &TenantId,
        timeout_ms: u64,
    ) -> Result<fluxo_sandbox::Secrets, RunError> {
        let timeout = Duration::from_millis(timeout_ms);
        match tokio::time::timeout(timeout, self.secrets.secrets(tenant)).await {
            Ok(Ok(secrets)) => Ok(secrets),
            // Retryable: a store that was down comes back, a missing key is restored.
            Ok(Err(error)) => Err(RunError::new(
                ErrorKind::BackendUnavailable,
                format!("secrets: {error}"),
            )
            .blamed_on(Blame::Platform)),
            Err(_) => Err(
                RunError::new(ErrorKind::BackendUnavailable, "secrets: timed out")
                    .blamed_on(Blame::Platform),
            ),
        }
    }

    /// A context for testing a workflow of `tenant`'s about `contact`: the host's limits,
    /// the tenant's secrets, the host's egress client and state reader, a fresh run id.
    /// Nothing journaled in it is committed (the caller shows it).
    ///
    /// # Errors
    /// The secrets could not be read (`backend_unavailable`).
    pub async fn test_context(
        &self,
        tenant: &TenantId,
        name: ActionName,
        contact: Contact,
    ) -> Result<RunContext, RunError> {
        let secrets = self
            .tenant_secrets(tenant, self.limits.host_call_timeout_ms)
            .await?;
        Ok(RunContext::new(
            RunMeta::new(tenant.clone(), name),
            self.limits.clone(),
            self.capabilities.clone(),
        )
        .with_contact(contact)
        .with_secrets(secrets))
    }

    /// Decides the run's fate and commits the attempt, retrying transient store errors;
    /// when the commit cannot land, commits the attempt as failed without its effects
    /// (so the run is retried by its policy, not mistaken for a host crash). A workflow
    /// stopped at a wait commits its segment and waits (a test run just ends there).
    async fn commit(&self, claimed: &Claimed, attempted: Attempted) {
        let Attempted {
            execution,
            suspended,
        } = attempted;
        let mut decision = decide(claimed, &execution);
        if decision == Decision::Succeeded
            && claimed.mode == RunMode::Run
            && let Some((parked, timeout)) = suspended
        {
            match serde_json::to_string(&parked) {
                Ok(checkpoint) => {
                    decision = Decision::Wait {
                        until_ms: fluxo_store::now_ms()
                            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
                        checkpoint,
                    };
                }
                Err(error) => {
                    tracing::error!(%error, "the run's checkpoint does not serialize");
                    decision = Decision::Failed;
                }
            }
        }
        let mut report = execution.report(false);
        let mut effects = if execution.succeeded() && decision != Decision::Failed {
            execution.journal.into_effects()
        } else {
            Vec::new()
        };
        let mut spawned = Vec::new();
        if claimed.mode == RunMode::Run && !effects.is_empty() {
            match self.spawned(&claimed.tenant, &mut effects).await {
                Ok((runs, dropped)) => {
                    spawned = runs;
                    report.effects.retain(|effect| {
                        !matches!(effect, Effect::StartRun(request)
                            if dropped.iter().any(|(id, _)| *id == request.request_id))
                    });
                    for (_, note) in dropped {
                        tracing::info!(%note, "a run's start request was dropped at commit");
                        report.logs.push(fluxo_core::LogLine {
                            level: fluxo_core::LogLevel::Warn,
                            source: fluxo_core::LogSource::Host,
                            message: note,
                        });
                    }
                }
                Err(error) => {
                    decision = decide_error(claimed, &error);
                    report = report.failed_with(error);
                    effects.clear();
                }
            }
        }
        let commit = Commit {
            lease: claimed.lease,
            node: self.options.node.clone(),
            tenant: claimed.tenant.clone(),
            contact: claimed.event.contact.id.clone(),
            effects,
            report,
            decision,
            cost: Cost {
                fuel: execution.usage.fuel,
                wall_ms: execution.usage.wall_ms,
            },
            spawned,
            contact_owner: self.options.contact_owners.of(&claimed.tenant),
        };
        let failure = match self.commit_with_retries(commit.clone()).await {
            Ok(committed) => {
                self.record(claimed, &commit, &committed);
                return;
            }
            Err(error) if error.is_lease_lost() => {
                self.metrics.record_lease_lost();
                tracing::warn!(%error, "the lease was taken over: the attempt was not committed");
                return;
            }
            Err(error) => error,
        };
        tracing::error!(error = %failure, "the attempt's commit failed; committing it as failed without its effects");
        let error = RunError::new(
            ErrorKind::ApplyFailed,
            format!("the run's effects could not be committed: {failure}"),
        )
        .blamed_on(Blame::Platform);
        let mut report = commit.report.clone();
        report = report.failed_with(error.clone());
        let fallback = Commit {
            effects: Vec::new(),
            spawned: Vec::new(),
            decision: decide_error(claimed, &error),
            report,
            ..commit
        };
        match self.commit_with_retries(fallback.clone()).await {
            Ok(committed) => self.record(claimed, &fallback, &committed),
            Err(error) => {
                tracing::error!(%error, "even the failure could not be committed; the lease will expire and the run be redelivered");
            }
        }
    }

    /// Commits, retrying transient errors with a doubling pause (6 tries, ~1.5 s).
    async fn commit_with_retries(
        &self,
        commit: Commit,
    ) -> Result<fluxo_store::Committed, StoreError> {
        let mut pause = Duration::from_millis(50);
        let mut last = None;
        for _ in 0..6 {
            match self.store.commit(commit.clone()).await {
                Ok(committed) => return Ok(committed),
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "commit failed; trying again");
                    last = Some(error);
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::transient("the commit kept failing")))
    }

    /// Records what the commit did (not what the guest hoped): the state it committed,
    /// a refusal, retries and dead runs — once, by the commit that was first.
    fn record(&self, claimed: &Claimed, commit: &Commit, committed: &fluxo_store::Committed) {
        if !committed.first {
            return;
        }
        if let Some(refusal) = &committed.refused {
            tracing::info!(reason = %refusal, "the commit refused the run's effects");
        }
        // A segment committed at a wait: the run is counted once, when it ends.
        if committed.state == RunPhase::Waiting {
            tracing::debug!("the run waits for its contact's reply");
            return;
        }
        let mode = match claimed.mode {
            RunMode::Run => "run",
            RunMode::Test => "test",
        };
        let mut report = commit.report.clone();
        if let Some(refusal) = &committed.refused {
            report = report.failed_with(refusal.clone());
        }
        if committed.state == RunPhase::Cancelled
            && report.error_kind() != Some(ErrorKind::Cancelled)
        {
            report = report.failed_with(RunError::new(ErrorKind::Cancelled, "cancelled"));
        }
        self.metrics.record_run(mode, &report);
        match committed.state {
            RunPhase::Retrying => self.metrics.record_retry(),
            RunPhase::Dead => {
                self.metrics.record_dead();
                tracing::warn!("the run is dead");
            }
            _ => {}
        }
    }
}

fn meta(claimed: &Claimed) -> RunMeta {
    RunMeta {
        run_id: claimed.lease.run,
        attempt: claimed.lease.attempt,
        tenant: claimed.tenant.clone(),
        action: claimed.target.name().clone(),
        step: None,
        depth: claimed.event.depth,
        root: claimed.event.root,
    }
}

/// What to do with a run after an attempt: tests are never retried; retryable failures
/// are retried while attempts are left (then the run is dead); others fail for good.
fn decide(claimed: &Claimed, execution: &Execution) -> Decision {
    let Err(error) = &execution.end else {
        return Decision::Succeeded;
    };
    decide_error(claimed, error)
}

/// [`decide`] for an attempt that ended in `error`.
fn decide_error(claimed: &Claimed, error: &RunError) -> Decision {
    if error.kind == ErrorKind::Cancelled {
        return Decision::Cancelled;
    }
    if claimed.mode == RunMode::Test || !error.retryable() {
        return Decision::Failed;
    }
    if claimed.lease.attempt >= claimed.retry.max_attempts {
        return Decision::Dead;
    }
    let delay = claimed.retry.delay(
        claimed.lease.attempt,
        rand::random::<f64>(),
        error.retry_after_ms.map(Duration::from_millis),
    );
    Decision::Retry {
        at_ms: fluxo_store::now_ms()
            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
    }
}
