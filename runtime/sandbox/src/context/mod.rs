//! [`RunContext`]: what one run may do, with no wasm in it.
//!
//! One value carries the run's identity, the contact snapshot, its limits and the
//! counters charged against them, the deadline, the tenant's secrets, the egress client
//! and a read view of state — and the journal, HTTP records and log the run produces.
//! One method per capability applies the same three rules whoever calls it (a guest
//! through the WIT glue in `wasm/`, or a workflow's built-in block):
//!
//! 1. **charge** the quota first — past it, a [`LimitHit`] ends the run;
//! 2. **check** the input — a bad one is a capability error value, the run goes on;
//! 3. **journal** the write (committed only if the run succeeds) or **make** the request
//!    (HTTP is live and recorded).

mod contact;
mod email;
mod http;
mod log;
mod message;
mod replay;
mod secrets;
mod start;
mod state;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fluxo_core::{
    ActionName, Contact, Counters, HttpExchange, Journal, LimitHit, Limits, LogLine, Quota, RunId,
    TenantId, Usage,
};
use fluxo_egress::Egress;

pub use self::contact::{ContactError, MAX_FIELD_VALUE_BYTES, MAX_NAME_BYTES};
pub use self::email::{EmailError, EmailMessage, MAX_MESSAGE_BYTES, MAX_RECIPIENTS, check_address};
pub use self::http::IDEMPOTENCY_KEY;
pub use self::log::StdSource;
pub(crate) use self::log::{LogBuffer, StdStream};
pub use self::message::{MAX_TARGET_BYTES, MAX_TEXT_CHARS, MessageDraft, MessageError};
pub use self::replay::HttpReplay;
pub use self::secrets::SecretError;
pub use self::start::{MAX_START_INPUT_BYTES, StartDraft, StartError};
pub use self::state::{MAX_KEY_BYTES, MAX_VALUE_BYTES, StateError};
use crate::platform::StateReader;
use crate::redact::Secrets;

/// The result of a capability call: `Err` ends the run (a limit), `Ok(Err(..))` is an
/// error value the caller handles.
pub type CapResult<T, E> = Result<Result<T, E>, LimitHit>;

/// Which run this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    /// The run's id.
    pub run_id: RunId,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// The tenant.
    pub tenant: TenantId,
    /// The action or workflow.
    pub action: ActionName,
    /// For an action run as a workflow's step: the step and its visit (`crm.2`), so its
    /// idempotency key differs from the run's and from the other steps'.
    pub step: Option<String>,
    /// The run's [`fluxo_core::Event::depth`]: how many runs started one another to
    /// lead to it.
    pub depth: u32,
    /// The run's [`fluxo_core::Event::root`].
    pub root: Option<RunId>,
}

impl RunMeta {
    /// The first attempt of a new run of `tenant`'s `action`.
    #[must_use]
    pub fn new(tenant: TenantId, action: ActionName) -> Self {
        Self {
            run_id: RunId::new(),
            attempt: 1,
            tenant,
            action,
            step: None,
            depth: 0,
            root: None,
        }
    }

    /// The key an action hands upstream so a repeated attempt is recognised: the run's
    /// id, with the workflow step and visit when it runs as one (`RUN-ID:crm.1`).
    #[must_use]
    pub fn idempotency_key(&self) -> String {
        match &self.step {
            Some(step) => format!("{}:{step}", self.run_id),
            None => self.run_id.to_string(),
        }
    }
}

/// What every run of a host shares: the egress client and the state reader.
#[derive(Clone)]
pub struct Capabilities {
    /// Outbound HTTP under the egress policy.
    pub egress: Arc<Egress>,
    /// Read access to durable state.
    pub state: Arc<dyn StateReader>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities").finish_non_exhaustive()
    }
}

/// Everything one run may do and everything it did.
pub struct RunContext {
    meta: RunMeta,
    contact: Contact,
    limits: Limits,
    counters: Counters,
    deadline: Instant,
    secrets: Secrets,
    capabilities: Arc<Capabilities>,
    journal: Journal,
    http: Vec<HttpExchange>,
    log: Arc<Mutex<LogBuffer>>,
    retry_after: Option<Duration>,
    /// What the actions run inside this one used (fuel, memory, their wall time).
    children: Usage,
    /// When replaying a recorded run: HTTP is answered from its record, never sent.
    replay: Option<Arc<HttpReplay>>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("meta", &self.meta)
            .field("limits", &self.limits)
            .field("counters", &self.counters)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

/// What a finished context hands back.
#[derive(Debug)]
pub struct ContextParts {
    /// Which run.
    pub meta: RunMeta,
    /// The writes, in order.
    pub journal: Journal,
    /// Every HTTP exchange, as made (not yet redacted).
    pub http: Vec<HttpExchange>,
    /// The log lines, and whether some were dropped.
    pub logs: (Vec<LogLine>, bool),
    /// What was used.
    pub counters: Counters,
    /// The secrets, for redacting the records.
    pub secrets: Secrets,
    /// The last `Retry-After` an upstream sent.
    pub retry_after: Option<Duration>,
}

impl RunContext {
    /// A context for `meta` under `limits`, its deadline counted from now.
    #[must_use]
    pub fn new(meta: RunMeta, limits: Limits, capabilities: Arc<Capabilities>) -> Self {
        let log = Arc::new(Mutex::new(LogBuffer::new(limits.max_log_bytes)));
        let deadline = Instant::now() + Duration::from_millis(limits.deadline_ms);
        Self {
            meta,
            contact: Contact::default(),
            limits,
            counters: Counters::default(),
            deadline,
            secrets: Secrets::default(),
            capabilities,
            journal: Journal::new(),
            http: Vec::new(),
            log,
            retry_after: None,
            children: Usage::default(),
            replay: None,
        }
    }

    /// Replays a recorded run: every HTTP request is answered by `replay` from the
    /// record and none is sent (see [`HttpReplay`]).
    #[must_use]
    pub fn with_replay(mut self, replay: Arc<HttpReplay>) -> Self {
        self.replay = Some(replay);
        self
    }

    /// The run is about `contact` (its state when the run started).
    #[must_use]
    pub fn with_contact(mut self, contact: Contact) -> Self {
        self.contact = contact;
        self
    }

    /// The tenant's secrets.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Counters already used (a workflow resumed after a wait).
    #[must_use]
    pub fn with_counters(mut self, counters: Counters) -> Self {
        self.counters = counters;
        self
    }

    /// A deadline other than `now + limits.deadline_ms` (a workflow's steps share one).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = deadline;
        self
    }

    /// Which run this is.
    #[must_use]
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// The contact as the run sees it now (its snapshot with the run's writes).
    #[must_use]
    pub fn contact(&self) -> Contact {
        self.journal.apply_to(&self.contact)
    }

    /// The contact as it was when the run started.
    #[must_use]
    pub fn contact_snapshot(&self) -> &Contact {
        &self.contact
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the run has used.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The writes so far.
    #[must_use]
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The run's deadline.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The timeout for one host call: the configured one, cut to the time left.
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.host_call_timeout_ms).min(self.remaining())
    }

    /// Hands back what the run produced.
    #[must_use]
    pub fn into_parts(self) -> ContextParts {
        let logs = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish();
        ContextParts {
            meta: self.meta,
            journal: self.journal,
            http: self.http,
            logs,
            counters: self.counters,
            secrets: self.secrets,
            retry_after: self.retry_after,
        }
    }

    /// A context for an action run inside this one as workflow step `step` (its id and
    /// visit, `crm.2`): the same run, limits, deadline, secrets and capabilities; the
    /// counters so far (quotas, e-mail and message ids and HTTP idempotency keys
    /// continue); this run's journal, so its reads see every write so far (fields,
    /// tags, state, and the state cap's projection); a log holding what is left of this
    /// one's budget. [`RunContext::absorb`] takes its results back.
    #[must_use]
    pub fn child(&self, step: &str) -> Self {
        let room = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .room();
        Self {
            meta: RunMeta {
                step: Some(step.to_owned()),
                ..self.meta.clone()
            },
            contact: self.contact.clone(),
            limits: self.limits.clone(),
            counters: self.counters,
            deadline: self.deadline,
            secrets: self.secrets.clone(),
            capabilities: self.capabilities.clone(),
            journal: self.journal.clone(),
            http: Vec::new(),
            log: Arc::new(Mutex::new(LogBuffer::new(room))),
            retry_after: None,
            children: Usage::default(),
            replay: self.replay.clone(),
        }
    }

    /// Takes back what a [`RunContext::child`]'s run produced: its HTTP exchanges, log
    /// lines, counters and usage always; the writes it added to the journal it started
    /// with, only when `succeeded` (a failed run applies nothing, inside a workflow as
    /// alone).
    pub fn absorb(
        &mut self,
        succeeded: bool,
        journal: Journal,
        http: Vec<HttpExchange>,
        logs: Vec<LogLine>,
        counters: Counters,
        usage: Usage,
    ) {
        self.children = self.children.plus(usage);
        if succeeded {
            let inherited = self.journal.effects().len();
            for effect in journal.into_effects().into_iter().skip(inherited) {
                self.journal.record(effect);
            }
        }
        self.http.extend(http);
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        for line in logs {
            log.push(line.level, line.source, line.message);
        }
        self.counters = counters;
    }

    /// What the actions run inside this one used, together (fuel and wall time add up,
    /// the peak memory is the largest).
    #[must_use]
    pub fn children_usage(&self) -> Usage {
        self.children
    }

    /// The tenant's secrets (to redact what a step shows).
    #[must_use]
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Redacts `value` from everything the run records, as a secret is (an OAuth 2.0
    /// access token the run obtained); no call can read it back by name.
    pub fn redact_also(&mut self, value: &str) {
        self.secrets.redact_also(value);
    }

    /// Takes the journal so far (a workflow committing a segment), leaving it empty.
    pub fn take_journal(&mut self) -> Journal {
        std::mem::take(&mut self.journal)
    }

    /// Counts one call of `quota`'s kind.
    fn charge(&mut self, quota: Quota) -> Result<(), LimitHit> {
        self.counters.charge(quota, &self.limits.quotas)
    }

    /// Charges a kept record of `bytes` to the report budget.
    fn charge_record(&mut self, bytes: usize) -> Result<(), LimitHit> {
        self.counters.charge_record(bytes, &self.limits)
    }

    /// The shared log (the guest's stdout and stderr write into it too).
    pub(crate) fn log_buffer(&self) -> Arc<Mutex<LogBuffer>> {
        self.log.clone()
    }

    /// Charges the outcome's bytes to the report budget (at the end of a run).
    ///
    /// # Errors
    /// [`LimitHit::ReportBudget`] past the budget.
    pub fn charge_output(&mut self, bytes: usize) -> Result<(), LimitHit> {
        self.charge_record(bytes)
    }
}

/// Runs a host-side future under a host-call timeout (wasm interruption does not cover
/// time spent in the host); a timeout ends the run.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    call: &'static str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, LimitHit> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| LimitHit::HostCallTimeout {
            call,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
}

/// Checks a name (field, tag, state key, secret): not empty, at most `max` bytes, no
/// control characters.
pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > max {
        return Err(format!("{what} is {} bytes, over {max}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} holds control characters"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
