//! [`Sandbox`]: the engine, its epoch ticker and the linker; it loads components and
//! executes runs. `execute` is the only place that creates a `Store`, and it never
//! commits anything: it returns an [`Execution`] — how the run ended, its journal, HTTP
//! records, logs and usage — for the caller to commit (or not).
//!
//! **Cancel safety.** Dropping the future of [`Sandbox::execute`] drops the `Store` and
//! the run with it; nothing was committed, because nothing is committed here. HTTP
//! requests already sent stay sent (they are live by design).
//!
//! **Guests never hold the async runtime.** Each epoch tick past a run's epoch deadline
//! calls back into the host: before the run's deadline the guest yields to the async
//! runtime (`tokio::task::yield_now`) and gets one more tick; at the deadline it traps.
//! A spinning guest thus gives its worker thread back every tick (10 ms), so API
//! handlers, timers, heartbeats and other runs keep running.

use std::time::Instant;

use fluxo_core::{
    Counters, ErrorKind, Event, HttpExchange, Journal, LimitHit, LogLevel, LogLine, LogSource,
    RunError, RunOutcome, RunReport, RunStatus, Usage,
};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::SandboxError;
use crate::context::{RunContext, RunMeta};
use crate::engine::{self, EPOCH_TICK, EngineOptions, EpochTicker};
use crate::load::{self, ActionComponent, LoadError, Pre};
use crate::redact::Redactor;
use crate::wasm::WasmState;

/// Host-side slack past the deadline before the call is dropped; the epoch normally
/// stops wasm first, within a tick.
const BACKSTOP_TICKS: u32 = 5;

/// The engine of a host and what it needs to run components.
pub struct Sandbox {
    engine: Engine,
    options: EngineOptions,
    linker: Linker<WasmState>,
    fingerprint: String,
    // Dropped last among the fields that matter: stops the epoch thread (if one runs).
    _ticker: Option<EpochTicker>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine and the linker, and starts the epoch thread.
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when the engine cannot be created on this machine (pool
    /// sizes it cannot reserve, say).
    pub fn new(options: EngineOptions) -> Result<Self, SandboxError> {
        let engine = engine::build(options)?;
        let mut linker = Linker::<WasmState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|error| SandboxError::Engine(format!("linking WASI: {error:#}")))?;
        // Every published version of the world is linked: the instance names carry the
        // version (`fluxo:action/http@0.1.0`, `…@0.2.0`), so they never clash.
        crate::bindings::v0_1::Action::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|error| SandboxError::Engine(format!("linking fluxo:action@0.1.0: {error:#}")))?;
        crate::bindings::v0_2::Action::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|error| SandboxError::Engine(format!("linking fluxo:action@0.2.0: {error:#}")))?;
        let ticker = if options.metering.epoch {
            Some(EpochTicker::start(engine.clone())?)
        } else {
            None
        };
        let fingerprint = load::fingerprint(&engine);
        Ok(Self {
            engine,
            options,
            linker,
            fingerprint,
            _ticker: ticker,
        })
    }

    /// The settings this sandbox was built with.
    #[must_use]
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The wasmtime engine (deliberately public: embedders may precompile or inspect;
    /// Fluxo's semver follows wasmtime's LTS line).
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What a precompiled artifact must match to load here (part of artifact names).
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Checks, compiles (in this process: CPU-bound, run it off async threads for large
    /// components) and links `bytes`.
    ///
    /// # Errors
    /// [`LoadError`]: too large, not a component, outside the world, no `run` export.
    pub fn load(&self, bytes: &[u8], max_bytes: usize) -> Result<ActionComponent, LoadError> {
        self.check(bytes, max_bytes)?;
        let component = wasmtime::component::Component::new(&self.engine, bytes)
            .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        load::link(&self.engine, &self.linker, &component, bytes.len())
    }

    /// The checks that need no compilation (milliseconds): size, framing, imports inside
    /// the world, and a shape that fits a pool slot.
    ///
    /// # Errors
    /// [`LoadError`] naming what was refused.
    pub fn check(&self, bytes: &[u8], max_bytes: usize) -> Result<load::ComponentShape, LoadError> {
        load::pre_check(bytes, max_bytes)?;
        let shape = load::inspect(bytes)?;
        load::check_shape(&shape, self.options.shape)?;
        Ok(shape)
    }

    /// Loads a precompiled artifact this host's compiler wrote, after checking it against
    /// its recorded SHA-256 (`checksum`, hex), and links it. CPU-bound.
    ///
    /// # Errors
    /// [`LoadError::CorruptArtifact`] on a checksum mismatch (recompile it);
    /// [`LoadError::Invalid`] when it does not load or link.
    pub fn load_artifact(
        &self,
        artifact: &[u8],
        checksum: &str,
        component_size: usize,
    ) -> Result<ActionComponent, LoadError> {
        let component = load::deserialize(&self.engine, artifact, checksum)?;
        load::link(&self.engine, &self.linker, &component, component_size)
    }

    /// Executes `component` for `event` in a fresh store with `ctx`'s limits. Commits
    /// nothing.
    pub async fn execute(
        &self,
        component: &ActionComponent,
        mut ctx: RunContext,
        event: &Event,
    ) -> Execution {
        for warning in &event.warnings {
            ctx.push_log(LogLevel::Warn, LogSource::Host, warning.clone());
        }
        let limits = ctx.limits().clone();
        let deadline = ctx.deadline();
        let mut store = Store::new(&self.engine, WasmState::new(ctx));
        store.limiter(|state| &mut state.limiter);
        if self.options.metering.epoch {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline {
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(tokio::task::yield_now()),
                    ))
                }
            });
        }
        let started = Instant::now();
        let fueled = if self.options.metering.fuel {
            store.set_fuel(limits.fuel)
        } else {
            Ok(())
        };
        let end = match fueled {
            Ok(()) => call(component, &mut store, event, deadline, &limits).await,
            Err(error) => Err(call_error(&error, &limits)),
        };
        let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let fuel = if self.options.metering.fuel {
            limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        let state = store.into_data();
        let usage = Usage {
            fuel,
            wall_ms,
            peak_memory_bytes: state.limiter.peak_memory_bytes(),
        };
        let mut ctx = state.ctx;
        let end = end.and_then(|outcome| check_outcome(outcome, &mut ctx));
        Execution::finish(ctx, end, usage)
    }
}

/// Instantiates and calls `run`, bounded by the deadline plus a small backstop.
async fn call(
    component: &ActionComponent,
    store: &mut Store<WasmState>,
    event: &Event,
    deadline: Instant,
    limits: &fluxo_core::Limits,
) -> Result<GuestOutcome, RunError> {
    let guest = async {
        match &component.pre {
            Pre::V0_1(pre) => {
                let action = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| instantiate_error(&error, limits))?;
                let wit_event = v0_1::event(event, &store.data().ctx);
                match action.call_run(&mut *store, &wit_event).await {
                    Err(error) => Err(call_error(&error, limits)),
                    Ok(Err(action_error)) => Err(v0_1::action_error(action_error)),
                    Ok(Ok(outcome)) => Ok(v0_1::outcome(outcome)),
                }
            }
            Pre::V0_2(pre) => {
                let action = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| instantiate_error(&error, limits))?;
                let wit_event = v0_2::event(event, &store.data().ctx);
                match action.call_run(&mut *store, &wit_event).await {
                    Err(error) => Err(call_error(&error, limits)),
                    Ok(Err(action_error)) => Err(v0_2::action_error(action_error)),
                    Ok(Ok(outcome)) => Ok(v0_2::outcome(outcome)),
                }
            }
        }
    };
    // The backstop is armed only when the guest waits (a host call, an epoch yield): a
    // guest that runs through in one poll never needs it.
    let backstop = || tokio::time::Instant::from_std(deadline) + EPOCH_TICK * BACKSTOP_TICKS;
    match crate::bounded::ready_or_until(guest, backstop).await {
        Err(_elapsed) => Err(deadline_error(limits)),
        Ok(result) => result,
    }
}

/// What a guest returned, before its size and shape are checked.
struct GuestOutcome {
    output: String,
    replies: Vec<String>,
    branch: Option<String>,
}

/// The conversions of one version of the package; `$run_meta` adds the fields the
/// version's event has beyond 0.1.0's.
macro_rules! conversions {
    ($version:ident, |$meta:ident| { $($extra:tt)* }) => {
        mod $version {
            use fluxo_core::{Blame, ErrorKind, Event, RunError, Trigger};

            use super::GuestOutcome;
            use crate::bindings::$version::fluxo::action::types as wit;
            use crate::context::RunContext;

            pub(super) fn event(event: &Event, ctx: &RunContext) -> wit::Event {
                let contact = ctx.contact_snapshot();
                #[allow(unused_variables, reason = "0.1.0's event has no run fields")]
                let $meta = ctx.meta();
                wit::Event {
                    $($extra)*
                    tenant: event.tenant.to_string(),
                    action: event.action.to_string(),
                    trigger: match event.trigger {
                        Trigger::Conversation => wit::Trigger::Conversation,
                        Trigger::Automation => wit::Trigger::Automation,
                        Trigger::Workflow => wit::Trigger::Workflow,
                        Trigger::Test => wit::Trigger::Test,
                    },
                    contact: wit::ContactSnapshot {
                        id: contact.id.as_ref().map(ToString::to_string).unwrap_or_default(),
                        fields: contact
                            .fields
                            .iter()
                            .map(|(name, value)| wit::Field {
                                name: name.clone(),
                                value: field(value.clone()),
                            })
                            .collect(),
                        tags: contact.tags.clone(),
                    },
                    message: event.message.as_ref().map(|message| wit::Message {
                        text: message.text.clone(),
                        channel: message.channel.clone(),
                    }),
                    input: event.input.text().to_owned(),
                }
            }

            fn field(value: fluxo_core::FieldValue) -> wit::FieldValue {
                use fluxo_core::FieldValue;
                match value {
                    FieldValue::Text(text) => wit::FieldValue::Text(text),
                    FieldValue::Number(number) => wit::FieldValue::Number(number),
                    FieldValue::Bool(flag) => wit::FieldValue::Boolean(flag),
                    FieldValue::DateTime { date_time } => wit::FieldValue::DateTime(date_time),
                    FieldValue::Null => wit::FieldValue::Null,
                }
            }

            pub(super) fn action_error(error: wit::ActionError) -> RunError {
                let blame = if error.retryable {
                    Blame::Upstream
                } else {
                    Blame::Guest
                };
                RunError::new(ErrorKind::ActionError, error.message).blamed_on(blame)
            }

            pub(super) fn outcome(outcome: wit::Outcome) -> GuestOutcome {
                GuestOutcome {
                    output: outcome.output,
                    replies: outcome.replies,
                    branch: outcome.branch,
                }
            }
        }
    };
}

conversions!(v0_1, |meta| {});
conversions!(v0_2, |meta| {
    run_id: meta.run_id.to_string(),
    attempt: meta.attempt,
    idempotency_key: meta.idempotency_key(),
});

fn deadline_error(limits: &fluxo_core::Limits) -> RunError {
    RunError::new(
        ErrorKind::DeadlineExceeded,
        format!("deadline {} ms exceeded", limits.deadline_ms),
    )
}

/// A failed instantiation: a full instance pool is the host's (retryable), a component
/// that cannot be instantiated the guest's.
fn instantiate_error(error: &wasmtime::Error, limits: &fluxo_core::Limits) -> RunError {
    if error
        .chain()
        .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        return RunError::new(
            ErrorKind::BackendUnavailable,
            format!("no free sandbox slot: {error}"),
        )
        .blamed_on(fluxo_core::Blame::Host);
    }
    if error
        .chain()
        .any(|cause| cause.is::<Trap>() || cause.is::<LimitHit>())
    {
        return call_error(error, limits);
    }
    RunError::new(
        ErrorKind::InvalidComponent,
        format!("instantiating the component failed: {error:#}"),
    )
}

/// Maps a trap or host error to a typed run error.
fn call_error(error: &wasmtime::Error, limits: &fluxo_core::Limits) -> RunError {
    if let Some(hit) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<LimitHit>())
    {
        return RunError::from_limit(hit);
    }
    match error.chain().find_map(|cause| cause.downcast_ref::<Trap>()) {
        Some(Trap::OutOfFuel) => RunError::new(
            ErrorKind::FuelExhausted,
            format!("fuel exhausted after {} units", limits.fuel),
        ),
        Some(Trap::Interrupt) => deadline_error(limits),
        Some(Trap::StackOverflow) => RunError::new(ErrorKind::StackOverflow, "wasm stack overflow"),
        Some(trap) => RunError::new(ErrorKind::Trap, format!("guest trapped: {trap}")),
        None => RunError::new(ErrorKind::Trap, format!("guest failed: {error:#}")),
    }
}

/// Checks the returned outcome's size and shape, and charges it to the report budget.
fn check_outcome(outcome: GuestOutcome, ctx: &mut RunContext) -> Result<RunOutcome, RunError> {
    let max = ctx.limits().max_output_bytes;
    let size = outcome.output.len()
        + outcome.replies.iter().map(String::len).sum::<usize>()
        + outcome.branch.as_ref().map_or(0, String::len);
    let size64 = u64::try_from(size).unwrap_or(u64::MAX);
    if size64 > max {
        return Err(RunError::new(
            ErrorKind::OutputTooLarge,
            format!("output of {size64} bytes is over the {max}-byte limit"),
        ));
    }
    ctx.charge_output(size + outcome.replies.len() * 8)
        .map_err(|hit| RunError::from_limit(&hit))?;
    let output: serde_json::Value = if outcome.output.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&outcome.output).map_err(|error| {
            RunError::new(
                ErrorKind::InvalidOutput,
                format!("output is not JSON: {error}"),
            )
        })?
    };
    if !output.is_object() {
        return Err(RunError::new(
            ErrorKind::InvalidOutput,
            "output is not a JSON object",
        ));
    }
    Ok(RunOutcome {
        output,
        replies: outcome.replies,
        branch: outcome.branch,
    })
}

/// What one execution did: how it ended, the writes to commit (if it succeeded), and
/// its records. The records are raw; [`Execution::report`] redacts them.
#[derive(Debug)]
pub struct Execution {
    /// Which run.
    pub meta: RunMeta,
    /// The outcome, or why the run failed.
    pub end: Result<RunOutcome, RunError>,
    /// The writes, in order (commit them only if `end` is `Ok`).
    pub journal: Journal,
    /// Every HTTP exchange.
    pub http: Vec<HttpExchange>,
    /// The log lines.
    pub logs: Vec<LogLine>,
    /// Whether log lines were dropped at the cap.
    pub logs_truncated: bool,
    /// Fuel, wall time, peak memory.
    pub usage: Usage,
    /// Host calls and record bytes used.
    pub counters: Counters,
    redactor: Redactor,
}

impl Execution {
    /// The execution of a finished context.
    #[must_use]
    pub fn finish(ctx: RunContext, end: Result<RunOutcome, RunError>, usage: Usage) -> Self {
        let parts = ctx.into_parts();
        let end = end.map_err(|mut error| {
            if error.retryable() && error.retry_after_ms.is_none() {
                error.retry_after_ms = parts
                    .retry_after
                    .map(|after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
            }
            error
        });
        Self {
            redactor: Redactor::new(parts.secrets.values()),
            meta: parts.meta,
            end,
            journal: parts.journal,
            http: parts.http,
            logs: parts.logs.0,
            logs_truncated: parts.logs.1,
            usage,
            counters: parts.counters,
        }
    }

    /// The execution of a run that never started (its component or a backend was
    /// unavailable).
    #[must_use]
    pub fn not_started(meta: RunMeta, error: RunError) -> Self {
        Self {
            meta,
            end: Err(error),
            journal: Journal::new(),
            http: Vec::new(),
            logs: Vec::new(),
            logs_truncated: false,
            usage: Usage::default(),
            counters: Counters::default(),
            redactor: Redactor::default(),
        }
    }

    /// Whether the run succeeded.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.end.is_ok()
    }

    /// The redactor of the run's secrets (for records made from this execution).
    #[must_use]
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The report, redacted (the execution keeps its raw journal to commit).
    #[must_use]
    pub fn report(&self, applied: bool) -> RunReport {
        build_report(
            &self.redactor,
            &self.meta,
            self.end.clone(),
            self.journal.effects().to_vec(),
            self.http.clone(),
            (self.logs.clone(), self.logs_truncated),
            self.usage,
            applied,
        )
    }

    /// The report, redacted, consuming the execution.
    #[must_use]
    pub fn into_report(self, applied: bool) -> RunReport {
        build_report(
            &self.redactor,
            &self.meta,
            self.end,
            self.journal.into_effects(),
            self.http,
            (self.logs, self.logs_truncated),
            self.usage,
            applied,
        )
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private constructor shared by the borrowing and the consuming form"
)]
fn build_report(
    redactor: &Redactor,
    meta: &RunMeta,
    end: Result<RunOutcome, RunError>,
    mut effects: Vec<fluxo_core::Effect>,
    mut http: Vec<HttpExchange>,
    (mut logs, logs_truncated): (Vec<LogLine>, bool),
    usage: Usage,
    applied: bool,
) -> RunReport {
    let (status, outcome, error) = match end {
        Ok(mut outcome) => {
            redactor.redact_json(&mut outcome.output);
            outcome
                .replies
                .iter_mut()
                .for_each(|reply| redactor.redact_in_place(reply));
            (RunStatus::Succeeded, Some(outcome), None)
        }
        Err(mut error) => {
            redactor.redact_in_place(&mut error.message);
            (RunStatus::Failed, None, Some(error))
        }
    };
    effects
        .iter_mut()
        .for_each(|effect| redactor.redact_effect(effect));
    http.iter_mut()
        .for_each(|exchange| redactor.redact_exchange(exchange));
    logs.iter_mut().for_each(|line| redactor.redact_log(line));
    RunReport {
        run_id: meta.run_id,
        attempt: meta.attempt,
        status,
        outcome,
        error,
        effects,
        applied: applied && status == RunStatus::Succeeded,
        http,
        logs,
        logs_truncated,
        usage,
    }
}
