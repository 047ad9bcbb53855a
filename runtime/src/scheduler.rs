//! Runs submitted for later: `submit` records the run and returns its id at once; workers
//! on the tokio runtime execute it under a global and a per-tenant concurrency cap.
//!
//! The queue is bounded: when it is full, `submit` fails with [`SubmitError::Overloaded`]
//! before anything is recorded, so a refused run is never half-accepted. Runs are pinned
//! to the version active when they were submitted.
//!
//! Not yet here (the durable-scheduler issue): re-queueing runs that were queued or
//! running when the process stopped, retries with backoff, cross-tenant fairness beyond
//! the per-tenant cap, webhooks.

use crate::{ActionComponent, LimitOverrides};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError};
use crate::store::StoreError;
use crate::store::port::RunStore;
use crate::store::runs::{RunRecord, RunState};
use crate::{RunStatus, Runtime};

/// Sizes of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Runs executing at once, over all tenants.
    pub workers: usize,
    /// Runs of one tenant executing at once.
    pub per_tenant: usize,
    /// Accepted runs waiting for a worker.
    pub queue_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            per_tenant: 4,
            queue_capacity: 1024,
        }
    }
}

/// Why a run was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full; try again after the hint.
    #[error("the run queue is full; retry in {} s", .retry_after.as_secs())]
    Overloaded {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The action or version cannot run.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    run_id: String,
    tenant: String,
    /// The pinned version's component, resolved once at submission (a queued run keeps
    /// it, like a running one, if the action is changed or deleted meanwhile).
    component: ActionComponent,
    /// The action's limit overrides (they only tighten the configured limits).
    overrides: LimitOverrides,
    event: Event,
}

/// The run scheduler.
pub struct Scheduler {
    sender: mpsc::Sender<Job>,
    runs: Arc<dyn RunStore>,
    registry: Arc<Registry>,
    finished: Arc<Notify>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

struct Workers {
    runtime: Arc<Runtime>,
    runs: Arc<dyn RunStore>,
    finished: Arc<Notify>,
    metrics: Arc<Metrics>,
    per_tenant: usize,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Scheduler {
    /// Starts `config.workers` workers on the current tokio runtime.
    pub fn start(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        runs: Arc<dyn RunStore>,
        metrics: Arc<Metrics>,
        config: SchedulerConfig,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let finished = Arc::new(Notify::new());
        let workers = Arc::new(Workers {
            runtime,
            runs: runs.clone(),
            finished: finished.clone(),
            metrics,
            per_tenant: config.per_tenant.max(1),
            tenants: Mutex::new(HashMap::new()),
        });
        for _ in 0..config.workers.max(1) {
            let workers = workers.clone();
            let receiver = receiver.clone();
            tokio::spawn(async move {
                loop {
                    let job = receiver.lock().await.recv().await;
                    let Some(job) = job else { return };
                    workers.execute(job).await;
                }
            });
        }
        Self {
            sender,
            runs,
            registry,
            finished,
        }
    }

    /// Accepts a run of `tenant`'s `action` (at `version`, else the active one) and
    /// returns its id without waiting for it.
    ///
    /// # Errors
    /// [`SubmitError::Overloaded`] when the queue is full; a registry error when the
    /// action does not exist, is disabled, or has no such version.
    pub async fn submit(
        &self,
        tenant: &str,
        action: &str,
        version: Option<u32>,
        mut event: Event,
    ) -> Result<String, SubmitError> {
        let (record, pinned, component) = self.registry.resolve(tenant, action, version).await?;
        if !record.enabled {
            return Err(RegistryError::Disabled(action.to_owned()).into());
        }
        let permit = self
            .sender
            .try_reserve()
            .map_err(|_| SubmitError::Overloaded {
                retry_after: Duration::from_secs(1),
            })?;
        event.tenant = tenant.to_owned();
        event.action = action.to_owned();
        let run_id = crate::executor::new_run_id();
        let event_json = serde_json::to_value(&event).unwrap_or(serde_json::Value::Null);
        self.runs
            .insert(&run_id, tenant, action, pinned.version, &event_json)
            .await?;
        permit.send(Job {
            run_id: run_id.clone(),
            tenant: tenant.to_owned(),
            component,
            overrides: record.limits,
            event,
        });
        Ok(run_id)
    }

    /// Waits until the run is finished and returns its record (`None` when the tenant
    /// has no such run).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn wait(&self, tenant: &str, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        loop {
            let notified = self.finished.notified();
            let record = self.runs.get(tenant, run_id).await?;
            match record {
                Some(record) if !record.state.is_final() => {}
                other => return Ok(other),
            }
            // A periodic re-check covers a notification that raced the read above.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}

impl Workers {
    fn tenant_slots(&self, tenant: &str) -> Arc<Semaphore> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }

    async fn execute(&self, job: Job) {
        let slots = self.tenant_slots(&job.tenant);
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        let _ = self.runs.start(&job.run_id).await;
        let options = crate::RunOptions {
            run_id: Some(job.run_id.clone()),
            limits: Some(self.runtime.config().limits.tightened_by(&job.overrides)),
            apply: true,
        };
        let report = self
            .runtime
            .run_with(&job.component, &job.event, options)
            .await;
        self.metrics.record_run(&report);
        let state = if report.status == RunStatus::Succeeded {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        let kind = report
            .error
            .as_ref()
            .and_then(|e| serde_json::to_value(e.kind).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let report = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        let _ = self
            .runs
            .finish(&job.run_id, state, kind.as_deref(), &report)
            .await;
        self.finished.notify_waiters();
    }
}
