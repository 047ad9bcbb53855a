//! Runs one action: the only place that creates a `Store`.
//!
//! A run gets a fresh store with its fuel budget, an epoch deadline, the memory and table
//! limiter and its own journal; the call is also bounded on the host side, so time spent
//! in host calls counts against the deadline. Traps and limit hits become a typed
//! [`RunError`]. Effects are applied only when `run` returned `ok` within every limit.

pub mod limits;
pub mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Engine, Store, Trap};

use self::limits::LimitHit;
use self::report::{ErrorKind, RunError, RunOutcome, RunReport, RunStatus, Usage};
use crate::bindings::fluxo::action::types as wit;
use crate::config::Limits;
use crate::engine::{EPOCH_TICK, Metering, deadline_ticks};
use crate::event::{Event, Trigger};
use crate::host::contact::{ContactStore, to_wit};
use crate::host::email::Mailer;
use crate::host::secrets::Redactor;
use crate::host::{RunState, Services, state};
use crate::journal::Effect;
use crate::registry::ActionComponent;

/// Host-side slack past the deadline before the call is dropped; the epoch normally
/// stops wasm first, within a tick.
const BACKSTOP_TICKS: u32 = 5;

/// Runs actions against the engine and the platform's backends.
pub(crate) struct Executor {
    pub(crate) engine: Engine,
    /// Which of fuel and epochs the engine compiles in.
    pub(crate) metering: Metering,
    pub(crate) services: Arc<Services>,
    pub(crate) contacts: Arc<dyn ContactStore>,
    pub(crate) mailer: Arc<dyn Mailer>,
}

/// How the guest's call ended, before effects are considered.
enum CallEnd {
    Returned(wit::Outcome),
    Failed(RunError),
}

impl Executor {
    /// Runs `component` once for `event` under `limits`. With `apply` false (a dry run)
    /// nothing is applied even on success.
    pub(crate) async fn run(
        &self,
        run_id: Option<String>,
        component: &ActionComponent,
        event: &Event,
        limits: &Limits,
        apply: bool,
    ) -> RunReport {
        let run_id = run_id.unwrap_or_else(new_run_id);
        let timeout = Duration::from_millis(limits.host_call_timeout_ms);
        let secrets =
            match tokio::time::timeout(timeout, self.services.secrets.secrets(&event.tenant)).await
            {
                Ok(Ok(secrets)) => secrets,
                Ok(Err(error)) => {
                    return RunReport::unavailable(run_id, &format!("secrets: {error}"));
                }
                Err(_) => return RunReport::unavailable(run_id, "secrets: timed out"),
            };
        let state = RunState::new(
            run_id.clone(),
            event.tenant.clone(),
            event.contact.clone(),
            secrets,
            limits.clone(),
            self.services.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let deadline = Duration::from_millis(limits.deadline_ms);
        if self.metering.epoch {
            store.set_epoch_deadline(deadline_ticks(deadline));
            store.epoch_deadline_trap();
        }
        let started = Instant::now();
        let fueled = if self.metering.fuel {
            store.set_fuel(limits.fuel)
        } else {
            Ok(())
        };
        let end = match fueled {
            Ok(()) => call(component, &mut store, event, deadline, limits).await,
            Err(error) => CallEnd::Failed(trap_error(&error, limits)),
        };
        let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let fuel = if self.metering.fuel {
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
        self.finish(state, end, usage, limits, apply, run_id).await
    }

    async fn finish(
        &self,
        state: RunState,
        end: CallEnd,
        usage: Usage,
        limits: &Limits,
        apply: bool,
        run_id: String,
    ) -> RunReport {
        let redactor = Redactor::new(state.secrets.values());
        let (mut logs, logs_truncated) = state
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .finish();
        let mut result = match end {
            CallEnd::Returned(outcome) => check_outcome(outcome, limits),
            CallEnd::Failed(error) => Err(error),
        };
        let mut applied = false;
        if apply && let Ok(_) = &result {
            match self
                .apply(&state.tenant, &state.contact.id, state.journal.effects())
                .await
            {
                Ok(()) => applied = true,
                Err(error) => result = Err(error),
            }
        }
        let (status, outcome, error) = match result {
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
        let mut effects = state.journal.into_effects();
        let mut http = state.http_log;
        redact_records(&redactor, &mut effects, &mut http, &mut logs);
        RunReport {
            run_id,
            status,
            outcome,
            error,
            effects,
            applied,
            http,
            logs,
            logs_truncated,
            usage,
        }
    }

    /// Applies a successful run's effects: contact changes, state changes, then e-mails.
    async fn apply(
        &self,
        tenant: &str,
        contact_id: &str,
        effects: &[Effect],
    ) -> Result<(), RunError> {
        let failed = |what: &str, error: crate::host::BackendError| RunError {
            kind: ErrorKind::ApplyFailed,
            message: format!("applying {what} failed: {error}"),
            retryable: true,
        };
        let touches_contact = effects.iter().any(|e| {
            matches!(
                e,
                Effect::SetField { .. } | Effect::AddTag { .. } | Effect::RemoveTag { .. }
            )
        });
        if touches_contact {
            self.contacts
                .apply(tenant, contact_id, effects)
                .await
                .map_err(|e| failed("contact changes", e))?;
        }
        let state_changes = state::changes(tenant, contact_id, effects);
        if !state_changes.is_empty() {
            self.services
                .state
                .apply(&state_changes)
                .await
                .map_err(|e| failed("state changes", e))?;
        }
        for effect in effects {
            if let Effect::SendEmail(email) = effect {
                self.mailer
                    .deliver(tenant, email)
                    .await
                    .map_err(|e| failed("an e-mail", e))?;
            }
        }
        Ok(())
    }
}

/// Instantiates and calls `run`, bounded by the deadline plus a small backstop.
async fn call(
    component: &ActionComponent,
    store: &mut Store<RunState>,
    event: &Event,
    deadline: Duration,
    limits: &Limits,
) -> CallEnd {
    let wit_event = to_wit_event(event);
    let backstop = deadline + EPOCH_TICK * BACKSTOP_TICKS;
    let guest = async {
        let action = component.pre.instantiate_async(&mut *store).await?;
        action.call_run(&mut *store, &wit_event).await
    };
    match tokio::time::timeout(backstop, guest).await {
        Err(_elapsed) => CallEnd::Failed(deadline_error(limits)),
        Ok(Err(error)) => CallEnd::Failed(trap_error(&error, limits)),
        Ok(Ok(Err(action_error))) => CallEnd::Failed(RunError {
            kind: ErrorKind::ActionError,
            message: action_error.message,
            retryable: action_error.retryable,
        }),
        Ok(Ok(Ok(outcome))) => CallEnd::Returned(outcome),
    }
}

fn deadline_error(limits: &Limits) -> RunError {
    RunError {
        kind: ErrorKind::DeadlineExceeded,
        message: format!("deadline {} ms exceeded", limits.deadline_ms),
        retryable: false,
    }
}

/// Maps a trap or host error to a typed run error.
fn trap_error(error: &wasmtime::Error, limits: &Limits) -> RunError {
    let failure = |kind, message: String| RunError {
        kind,
        message,
        retryable: false,
    };
    if let Some(hit) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<LimitHit>())
    {
        let kind = match hit {
            LimitHit::Quota { .. } => ErrorKind::QuotaExceeded,
            LimitHit::Memory { .. } => ErrorKind::MemoryLimit,
            LimitHit::Table { .. } => ErrorKind::TableLimit,
            LimitHit::HostCallTimeout { .. } => ErrorKind::HostTimeout,
        };
        return RunError {
            kind,
            message: hit.to_string(),
            retryable: matches!(hit, LimitHit::HostCallTimeout { .. }),
        };
    }
    match error.chain().find_map(|cause| cause.downcast_ref::<Trap>()) {
        Some(Trap::OutOfFuel) => failure(
            ErrorKind::FuelExhausted,
            format!("fuel exhausted after {} units", limits.fuel),
        ),
        Some(Trap::Interrupt) => deadline_error(limits),
        Some(Trap::StackOverflow) => {
            failure(ErrorKind::StackOverflow, "wasm stack overflow".to_owned())
        }
        Some(trap) => failure(ErrorKind::Trap, format!("guest trapped: {trap}")),
        None => failure(ErrorKind::Trap, format!("guest failed: {error:#}")),
    }
}

/// Checks the returned outcome's size and shape.
fn check_outcome(outcome: wit::Outcome, limits: &Limits) -> Result<RunOutcome, RunError> {
    let size = outcome.output.len()
        + outcome.replies.iter().map(String::len).sum::<usize>()
        + outcome.branch.as_ref().map_or(0, String::len);
    let size = u64::try_from(size).unwrap_or(u64::MAX);
    if size > limits.max_output_bytes {
        return Err(RunError {
            kind: ErrorKind::OutputTooLarge,
            message: format!(
                "output of {size} bytes is over the {}-byte limit",
                limits.max_output_bytes
            ),
            retryable: false,
        });
    }
    let output: serde_json::Value = if outcome.output.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&outcome.output).map_err(|error| RunError {
            kind: ErrorKind::InvalidOutput,
            message: format!("output is not JSON: {error}"),
            retryable: false,
        })?
    };
    if !output.is_object() {
        return Err(RunError {
            kind: ErrorKind::InvalidOutput,
            message: "output is not a JSON object".to_owned(),
            retryable: false,
        });
    }
    Ok(RunOutcome {
        output,
        replies: outcome.replies,
        branch: outcome.branch,
    })
}

/// Redacts the run's secrets from every record of the report, in place.
fn redact_records(
    redactor: &Redactor<'_>,
    effects: &mut [Effect],
    http: &mut [crate::host::http::HttpExchange],
    logs: &mut [crate::host::log::LogLine],
) {
    use crate::event::FieldValue;
    if redactor.is_empty() {
        return;
    }
    for effect in effects {
        match effect {
            Effect::SetField { name, value } => {
                redactor.redact_in_place(name);
                match value {
                    FieldValue::Text(text) => redactor.redact_in_place(text),
                    FieldValue::DateTime { date_time } => redactor.redact_in_place(date_time),
                    _ => {}
                }
            }
            Effect::AddTag { tag } | Effect::RemoveTag { tag } => redactor.redact_in_place(tag),
            Effect::SetState { key, value, .. } => {
                redactor.redact_in_place(key);
                redactor.redact_bytes(value);
            }
            Effect::DeleteState { key, .. } => redactor.redact_in_place(key),
            Effect::SendEmail(email) => {
                for address in email.to.iter_mut().chain(email.cc.iter_mut()) {
                    redactor.redact_in_place(address);
                }
                for text in [&mut email.reply_to, &mut email.html].into_iter().flatten() {
                    redactor.redact_in_place(text);
                }
                redactor.redact_in_place(&mut email.subject);
                redactor.redact_in_place(&mut email.text);
            }
        }
    }
    for exchange in http {
        redactor.redact_in_place(&mut exchange.url);
        for (_, value) in exchange
            .request_headers
            .iter_mut()
            .chain(exchange.response_headers.iter_mut())
        {
            redactor.redact_in_place(value);
        }
        if let Some(error) = &mut exchange.error {
            redactor.redact_in_place(error);
        }
        redactor.redact_in_place(&mut exchange.response_body);
    }
    for line in logs {
        redactor.redact_in_place(&mut line.message);
    }
}

fn to_wit_event(event: &Event) -> wit::Event {
    wit::Event {
        tenant: event.tenant.clone(),
        action: event.action.clone(),
        trigger: match event.trigger {
            Trigger::Conversation => wit::Trigger::Conversation,
            Trigger::Automation => wit::Trigger::Automation,
            Trigger::Workflow => wit::Trigger::Workflow,
            Trigger::Test => wit::Trigger::Test,
        },
        contact: wit::ContactSnapshot {
            id: event.contact.id.clone(),
            fields: event
                .contact
                .fields
                .iter()
                .map(|(name, value)| wit::Field {
                    name: name.clone(),
                    value: to_wit(value.clone()),
                })
                .collect(),
            tags: event.contact.tags.clone(),
        },
        message: event.message.as_ref().map(|message| wit::Message {
            text: message.text.clone(),
            channel: message.channel.clone(),
        }),
        // `serde_json::to_string` writes into a byte buffer; `Value`'s `Display` goes
        // through `fmt` one fragment at a time and cost ~2 µs a run for a 1 KiB event.
        input: serde_json::to_string(&event.input).unwrap_or_default(),
    }
}

/// A run id: time-ordered and unique within the process.
pub(crate) fn new_run_id() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    // `getpid` is a system call each time (glibc no longer caches it).
    static PID: OnceLock<u32> = OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("run-{millis:013x}-{pid:06x}-{sequence:x}")
}
