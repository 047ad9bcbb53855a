//! One attempt of a workflow run: its blocks through the interpreter in the run's
//! context, the way a component's attempt runs its guest. The scheduler treats the
//! result like any other [`Execution`]: committed in one transaction when it succeeded,
//! retried by the action's policy when it failed retryably.
//!
//! The event's `input` (an object) gives the starting variables; the variables at the
//! end are the outcome's `output`. Each step leaves a line in the run's log as it runs (source
//! `host`), so `fluxo logs RUN_ID` shows the path the run took.
//!
//! A run that reaches a `wait_for_reply` step stops there (`Attempted::suspended`): the
//! scheduler commits what it journaled so far and stores a [`Parked`] run — the
//! interpreter's checkpoint with the contact as the run left it and its quota counters.
//! The claim that resumes it ([`fluxo_store::Resume`]) brings it back with the reply or
//! the timeout.

use std::sync::Arc;
use std::time::Instant;

use fluxo_core::{
    ActionName, Blame, Contact, Counters, ErrorKind, Event, Message, RunError, RunOutcome, Trigger,
    Usage,
};
use fluxo_sandbox::{Execution, RunContext};
use fluxo_store::Resume;
use fluxo_workflow::{
    ActionRunner, Checkpoint, HttpMode, Interpreter, Resolution, Start, Waits, Workflow,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::registry::{Implementation, Registry, RegistryError};

/// A workflow run stopped at a wait, as stored with it (JSON): the interpreter's
/// checkpoint, the contact with the run's writes so far, and the quota counters so far
/// (quotas, e-mail and message ids, HTTP idempotency keys continue after the wait).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    /// Where the interpreter stopped.
    pub checkpoint: Checkpoint,
    /// The contact as the run left it.
    pub contact: Contact,
    /// What the run used so far.
    pub counters: Counters,
}

/// An attempt's execution, and where it waits when it stopped at a wait.
pub(crate) struct Attempted {
    /// What it did.
    pub execution: Execution,
    /// The run to store and how long it waits, when it stopped at a wait.
    pub suspended: Option<(Parked, std::time::Duration)>,
}

impl From<Execution> for Attempted {
    fn from(execution: Execution) -> Self {
        Self {
            execution,
            suspended: None,
        }
    }
}

/// Runs `workflow` for `event` in `ctx` with live HTTP: from its start, or from the wait
/// `resume` names.
pub(crate) async fn execute(
    interpreter: &Interpreter,
    workflow: &Workflow,
    mut ctx: RunContext,
    event: &Event,
    resume: Option<&Resume>,
) -> Attempted {
    let started = Instant::now();
    let vars = match event.input.value() {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => Map::from_iter([("input".to_owned(), other.clone())]),
    };
    let mut start = Start {
        message: event.message.clone(),
        vars,
        waits: Waits::Suspend,
        resume: None,
    };
    if let Some(resume) = resume {
        let parked: Parked = match serde_json::from_str(&resume.checkpoint) {
            Ok(parked) => parked,
            Err(error) => {
                // Written by another build that this one cannot read: running it again
                // would fail the same way.
                let error = RunError::new(
                    ErrorKind::InvalidComponent,
                    format!("the run's stored checkpoint does not read: {error}"),
                )
                .blamed_on(Blame::Host);
                return Execution::finish(ctx, Err(error), Usage::default()).into();
            }
        };
        ctx = ctx
            .with_contact(parked.contact)
            .with_counters(parked.counters);
        let resolution = resume
            .reply
            .clone()
            .map_or(Resolution::Timeout, Resolution::Reply);
        start.resume = Some((parked.checkpoint, resolution));
    }
    let run = interpreter
        .run(
            workflow,
            &mut ctx,
            start,
            &HttpMode::Live,
            &mut rand::random::<f64>,
        )
        .await;
    let suspended = match (&run.error, run.waiting) {
        (None, Some(checkpoint)) => {
            let timeout = std::time::Duration::from_secs(checkpoint.timeout_seconds);
            let parked = Parked {
                checkpoint,
                contact: ctx.contact(),
                counters: *ctx.counters(),
            };
            Some((parked, timeout))
        }
        _ => None,
    };
    let end = match run.error {
        Some(failure) => Err(failure.error),
        None => Ok(RunOutcome {
            output: Value::Object(run.vars),
            replies: Vec::new(),
            branch: None,
        }),
    };
    // The components its action steps ran used fuel and memory; the run's wall time is
    // its own (it includes theirs).
    let children = ctx.children_usage();
    let usage = Usage {
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..children
    };
    Attempted {
        execution: Execution::finish(ctx, end, usage),
        suspended,
    }
}

/// Runs workflows' `action` steps: the active version of one of the tenant's component
/// actions, in the sandbox, inside the workflow's run (a child of its context), under
/// the workflow's limits.
pub struct RegistryActions {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for RegistryActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryActions").finish_non_exhaustive()
    }
}

impl RegistryActions {
    /// A runner resolving actions in `registry`.
    #[must_use]
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    async fn run(
        &self,
        name: &str,
        step: &str,
        input: Value,
        message: Option<Message>,
        ctx: &mut RunContext,
    ) -> Result<RunOutcome, RunError> {
        let refused =
            |kind, message: String| Err(RunError::new(kind, message).blamed_on(Blame::Guest));
        let tenant = ctx.meta().tenant.clone();
        let Ok(action) = ActionName::parse(name) else {
            return refused(
                ErrorKind::ActionError,
                format!("`{name}` is not an action name"),
            );
        };
        // Loading may compile the component on a cold cache: bounded by the run's time.
        let resolved = tokio::time::timeout(
            ctx.remaining(),
            self.registry.resolve_implementation(&tenant, &action, None),
        )
        .await;
        let Ok(resolved) = resolved else {
            return Err(RunError::new(
                ErrorKind::BackendUnavailable,
                format!("loading action `{name}` took longer than the run had left"),
            )
            .blamed_on(Blame::Platform));
        };
        let (record, _, implementation) = match resolved {
            Ok(found) => found,
            // Deleted after the workflow was saved: stopped like a disabled one.
            Err(RegistryError::NotFound(_) | RegistryError::NoSuchVersion(..)) => {
                return refused(
                    ErrorKind::ActionDisabled,
                    format!(
                        "action `{name}` does not exist (deleted since the workflow was saved?): runs of this workflow fail until it is uploaded again"
                    ),
                );
            }
            // As the scheduler treats a component it cannot load: retried later.
            Err(error) => {
                return Err(RunError::new(
                    ErrorKind::BackendUnavailable,
                    format!("action `{name}` could not be loaded: {error}"),
                )
                .blamed_on(Blame::Platform));
            }
        };
        if !record.enabled {
            return refused(
                ErrorKind::ActionDisabled,
                format!(
                    "action `{name}` is disabled: runs of this workflow fail until it is enabled"
                ),
            );
        }
        let Implementation::Component(component) = implementation else {
            return refused(
                ErrorKind::ActionError,
                format!("`{name}` is a workflow: an action step runs component actions"),
            );
        };
        let child = ctx.child(step);
        let mut event = Event::new(tenant, action);
        event.trigger = Trigger::Workflow;
        event.contact = child.contact();
        event.message = message;
        event.input = input.into();
        let execution = self
            .registry
            .sandbox()
            .execute(&component, child, &event)
            .await;
        let succeeded = execution.succeeded();
        let end = execution.end.clone();
        ctx.absorb(
            succeeded,
            execution.journal,
            execution.http,
            execution.logs,
            execution.counters,
            execution.usage,
        );
        end
    }
}

impl ActionRunner for RegistryActions {
    fn run_action<'a>(
        &'a self,
        name: &'a str,
        step: &'a str,
        input: Value,
        message: Option<Message>,
        ctx: &'a mut RunContext,
    ) -> fluxo_workflow::actions::BoxFuture<'a, Result<RunOutcome, RunError>> {
        Box::pin(self.run(name, step, input, message, ctx))
    }

    fn check_startable<'a>(
        &'a self,
        name: &'a str,
        ctx: &'a RunContext,
    ) -> fluxo_workflow::actions::BoxFuture<'a, Result<(), RunError>> {
        Box::pin(async move {
            let disabled = |message: String| {
                Err(RunError::new(ErrorKind::ActionDisabled, message).blamed_on(Blame::Guest))
            };
            let Ok(action) = ActionName::parse(name) else {
                return disabled(format!("`{name}` is not an action name"));
            };
            let found = self
                .registry
                .store()
                .action(&ctx.meta().tenant, &action)
                .await
                .map_err(|error| {
                    RunError::new(
                        ErrorKind::BackendUnavailable,
                        format!("could not read `{name}`: {error}"),
                    )
                    .blamed_on(Blame::Platform)
                })?;
            match found {
                None => disabled(format!(
                    "`{name}` does not exist (deleted since the workflow was saved?): it cannot be started"
                )),
                Some(record) if !record.enabled => {
                    disabled(format!("`{name}` is disabled: it cannot be started"))
                }
                Some(_) => Ok(()),
            }
        })
    }
}
