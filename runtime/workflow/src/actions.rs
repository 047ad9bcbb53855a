//! The seam through which a workflow's `action` step runs one of the tenant's component
//! actions. The workflow crate knows no registry or sandbox; the host implements
//! [`ActionRunner`] (`fluxo-orchestrator`'s runs the action's active version in the
//! sandbox, inside the workflow's own run).

use std::future::Future;
use std::pin::Pin;

use fluxo_core::{Message, RunError, RunOutcome};
use fluxo_sandbox::RunContext;
use serde_json::Value;

/// A boxed future (runners are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs a tenant's component action as a step of a workflow's run.
pub trait ActionRunner: Send + Sync {
    /// Runs the active version of action `name` of `ctx`'s tenant with `input` (a JSON
    /// object) and the run's triggering `message`, as step `step` (its id and visit,
    /// `crm.2`: part of the action's idempotency key), in a child of `ctx`
    /// ([`RunContext::child`]): the same contact, journal, limits, deadline, secrets and
    /// quotas.
    /// Its HTTP exchanges, log lines and counters are taken back into `ctx` whatever
    /// happens, its writes only when it succeeds ([`RunContext::absorb`]).
    ///
    /// # Errors
    /// The action's own failure, as its run would end; `action_disabled` when it is
    /// disabled or no longer exists; `action_error` when it is a workflow;
    /// `backend_unavailable` (retryable) when its component cannot be loaded now.
    fn run_action<'a>(
        &'a self,
        name: &'a str,
        step: &'a str,
        input: Value,
        message: Option<Message>,
        ctx: &'a mut RunContext,
    ) -> BoxFuture<'a, Result<RunOutcome, RunError>>;

    /// Checks that action or workflow `name` of the tenant of `ctx` could start as its
    /// own run now (a `trigger_workflow` step): it exists and is enabled. The run is
    /// queued when the requesting run commits, which pins its active version then.
    ///
    /// # Errors
    /// `action_disabled` when it is disabled or does not exist; `backend_unavailable`
    /// (retryable) when the catalog cannot be read now.
    fn check_startable<'a>(
        &'a self,
        name: &'a str,
        ctx: &'a RunContext,
    ) -> BoxFuture<'a, Result<(), RunError>>;
}
