//! [`Runtime`]: the convenience for embedders — a [`Sandbox`], the egress client, and the
//! platform's backends, built once with [`RuntimeBuilder`]. [`Runtime::run`] executes a
//! run and then applies its effects through the platform traits ([`ContactStore`], then
//! [`StateStore`], then [`Mailer`] per e-mail).
//!
//! **Not atomic across the platform's stores**: each trait applies its part in its own
//! transaction, so a failure after the contact changes leaves them applied and the run
//! reported `apply_failed`. A host that needs one transaction commits an
//! [`crate::Execution`] through its own ledger instead (the Fluxo server does).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fluxo_core::{
    Blame, ContactId, Effect, ErrorKind, Event, Limits, RunError, RunId, RunReport, TenantId,
};
use fluxo_egress::{Egress, HttpPolicy, Resolve, SystemResolver};
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::context::{Capabilities, HttpReplay, RunContext, RunMeta};
use crate::engine::{EngineOptions, MAX_MEMORY_BYTES};
use crate::execute::{Execution, Sandbox};
use crate::load::{ActionComponent, DEFAULT_MAX_COMPONENT_BYTES, LoadError};
use crate::platform::{
    BackendError, ContactStore, Mailer, MemoryContacts, MemoryMailer, MemoryState, SecretSource,
    StateReader, StateStore, StaticSecrets, state_changes,
};

/// What a runtime enforces: limits, the egress policy, and (for local runs) secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Limits for every run.
    pub limits: Limits,
    /// Outbound HTTP policy.
    pub http: HttpPolicy,
    /// Secrets by tenant, then by name (for runs without a secrets store).
    #[serde(skip_serializing)]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    /// Checks limits and policy.
    ///
    /// # Errors
    /// [`SandboxError::Config`] naming the first bad value.
    pub fn check(&self) -> Result<(), SandboxError> {
        check_limits(&self.limits)?;
        self.http
            .check()
            .map_err(|error| SandboxError::Config(error.to_string()))
    }
}

/// Checks limits, and the memory limit against the engine's ceiling.
fn check_limits(limits: &Limits) -> Result<(), SandboxError> {
    limits
        .check()
        .map_err(|error| SandboxError::Config(error.to_string()))?;
    if limits.max_memory_bytes > MAX_MEMORY_BYTES {
        return Err(SandboxError::Config(format!(
            "limits.max_memory_bytes is {} but the engine's ceiling is {MAX_MEMORY_BYTES}",
            limits.max_memory_bytes
        )));
    }
    Ok(())
}

/// Configures a [`Runtime`]: limits and policy, pool size, and the platform's backends.
/// Every backend has a real in-memory default.
#[must_use]
pub struct RuntimeBuilder {
    config: Config,
    engine: EngineOptions,
    max_component_bytes: usize,
    contacts: Arc<dyn ContactStore>,
    mailer: Arc<dyn Mailer>,
    state: Arc<dyn StateStore>,
    reader: Option<Arc<dyn StateReader>>,
    resolver: Option<Arc<dyn Resolve>>,
    secrets: Option<Arc<dyn SecretSource>>,
    sandbox: Option<Arc<Sandbox>>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("engine", &self.engine)
            .field("max_component_bytes", &self.max_component_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            engine: EngineOptions::default(),
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            contacts: Arc::new(MemoryContacts::new()),
            mailer: Arc::new(MemoryMailer::new()),
            state: Arc::new(MemoryState::new()),
            reader: None,
            resolver: None,
            secrets: None,
            sandbox: None,
        }
    }
}

impl RuntimeBuilder {
    /// Limits, egress policy and secrets.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Engine-wide settings (the instance pool's size and shape, metering).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }

    /// The largest component accepted, in bytes.
    pub fn max_component_bytes(mut self, bytes: usize) -> Self {
        self.max_component_bytes = bytes;
        self
    }

    /// Where contact changes of successful runs go.
    pub fn contacts(mut self, contacts: Arc<dyn ContactStore>) -> Self {
        self.contacts = contacts;
        self
    }

    /// Who delivers the e-mails of successful runs.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    /// Where action state lives.
    pub fn state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = state;
        self
    }

    /// Where runs read state from, when not from [`RuntimeBuilder::state`] (a host that
    /// applies effects through its own ledger reads through this).
    pub fn state_reader(mut self, reader: Arc<dyn StateReader>) -> Self {
        self.reader = Some(reader);
        self
    }

    /// Runs in an existing sandbox (shared with a registry that loads components into
    /// it) instead of a new one; the engine options are then the sandbox's.
    pub fn sandbox(mut self, sandbox: Arc<Sandbox>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// How egress resolves host names (default: the system's configuration through
    /// hickory). Every address it returns is still checked against the policy.
    pub fn resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Where tenants' secrets come from (default: the configuration's `[secrets]`).
    pub fn secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Builds the runtime: checks the configuration, creates the engine and starts its
    /// epoch thread.
    ///
    /// # Errors
    /// [`SandboxError::Config`] for a bad configuration, [`SandboxError::Engine`] when
    /// the engine cannot be created on this machine.
    pub fn build(self) -> Result<Runtime, SandboxError> {
        self.config.check()?;
        let sandbox = match self.sandbox {
            Some(sandbox) => sandbox,
            None => Arc::new(Sandbox::new(self.engine)?),
        };
        let resolver = match self.resolver {
            Some(resolver) => resolver,
            None => Arc::new(
                SystemResolver::new().map_err(|error| SandboxError::Config(error.to_string()))?,
            ),
        };
        let egress = Egress::new(&self.config.http, resolver)
            .map_err(|error| SandboxError::Config(error.to_string()))?;
        let reader: Arc<dyn StateReader> = match self.reader {
            Some(reader) => reader,
            None => self.state.clone(),
        };
        let capabilities = Arc::new(Capabilities {
            egress: Arc::new(egress),
            state: reader,
        });
        let secrets = self
            .secrets
            .unwrap_or_else(|| Arc::new(StaticSecrets::new(&self.config.secrets)));
        Ok(Runtime {
            sandbox,
            capabilities,
            config: self.config,
            max_component_bytes: self.max_component_bytes,
            contacts: self.contacts,
            mailer: self.mailer,
            state: self.state,
            secrets,
        })
    }
}

/// How one run is made: one builder instead of a family of entry points.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RunOptions {
    limits: Option<Limits>,
    run_id: Option<RunId>,
    attempt: Option<u32>,
    replay: Option<Arc<HttpReplay>>,
}

impl RunOptions {
    /// The defaults: the runtime's limits, a fresh run id, first attempt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits instead of the configured ones (checked like the configuration's).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The run's id (one the caller already recorded).
    pub fn run_id(mut self, run_id: RunId) -> Self {
        self.run_id = Some(run_id);
        self
    }

    /// Which attempt this is.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// Replays a recorded run: its HTTP requests are answered by `replay` from the
    /// record, nothing is sent (give the original's run id and attempt too, so the
    /// event and the idempotency keys the guest sees are the original's).
    pub fn replay(mut self, replay: Arc<HttpReplay>) -> Self {
        self.replay = Some(replay);
        self
    }
}

/// The Fluxo host for embedders: loads components and runs them in fresh sandboxes.
///
/// ```no_run
/// # async fn demo(bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// use fluxo_sandbox::{Event, RunOptions, Runtime};
///
/// let runtime = Runtime::builder().build()?;
/// let action = runtime.load(bytes)?;
/// let event = Event::new("acme".parse()?, "crm-lead".parse()?);
/// let report = runtime.run(&action, &event, RunOptions::new()).await;
/// println!("{}", serde_json::to_string_pretty(&report)?);
/// # Ok(())
/// # }
/// ```
pub struct Runtime {
    sandbox: Arc<Sandbox>,
    capabilities: Arc<Capabilities>,
    config: Config,
    max_component_bytes: usize,
    contacts: Arc<dyn ContactStore>,
    mailer: Arc<dyn Mailer>,
    state: Arc<dyn StateStore>,
    secrets: Arc<dyn SecretSource>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with safe defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The sandbox (engine, loading, execution).
    #[must_use]
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The engine settings this runtime was built with.
    #[must_use]
    pub fn engine_options(&self) -> EngineOptions {
        self.sandbox.options()
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The largest component accepted, in bytes.
    #[must_use]
    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// What capabilities runs get (egress, state reads).
    #[must_use]
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.capabilities
    }

    /// Checks, compiles and links a component (CPU-bound).
    ///
    /// # Errors
    /// [`LoadError`]: too large, not a component, outside the world, no `run` export.
    pub fn load(&self, bytes: &[u8]) -> Result<ActionComponent, LoadError> {
        self.sandbox.load(bytes, self.max_component_bytes)
    }

    /// Executes `action` for `event` under `options`, committing nothing.
    pub async fn execute(
        &self,
        action: &ActionComponent,
        event: &Event,
        options: &RunOptions,
    ) -> Execution {
        let meta = RunMeta {
            run_id: options.run_id.unwrap_or_default(),
            attempt: options.attempt.unwrap_or(1),
            tenant: event.tenant.clone(),
            action: event.action.clone(),
            step: None,
            depth: event.depth,
            root: event.root,
        };
        let limits = match &options.limits {
            Some(limits) => match check_limits(limits) {
                Ok(()) => limits.clone(),
                Err(error) => {
                    let error = RunError::new(ErrorKind::InvalidLimits, error.to_string())
                        .blamed_on(Blame::Platform);
                    return Execution::not_started(meta, error);
                }
            },
            None => self.config.limits.clone(),
        };
        let timeout = Duration::from_millis(limits.host_call_timeout_ms);
        let lookup = self.secrets.secrets(&event.tenant);
        let secrets =
            match crate::bounded::ready_or_until(lookup, || tokio::time::Instant::now() + timeout)
                .await
            {
                Ok(Ok(secrets)) => secrets,
                Ok(Err(error)) => {
                    return Execution::not_started(meta, unavailable(&format!("secrets: {error}")));
                }
                Err(_) => return Execution::not_started(meta, unavailable("secrets: timed out")),
            };
        let mut ctx = RunContext::new(meta, limits, self.capabilities.clone())
            .with_contact(event.contact.clone())
            .with_secrets(secrets);
        if let Some(replay) = &options.replay {
            ctx = ctx.with_replay(replay.clone());
        }
        self.sandbox.execute(action, ctx, event).await
    }

    /// The embedder's one convenience: runs `action` for `event` under `options`
    /// ([`RunOptions::new`] for the defaults), then applies a success's effects through
    /// the platform traits — contacts, state, e-mails, each its own call, **not one
    /// transaction** across the platform's stores (the server commits through its store's
    /// `Ledger` instead). To apply nothing (a Test button), call [`Runtime::execute`]
    /// and turn its [`Execution`] into a report with `into_report(false)`.
    pub async fn run(
        &self,
        action: &ActionComponent,
        event: &Event,
        options: RunOptions,
    ) -> RunReport {
        let mut execution = self.execute(action, event, &options).await;
        if !execution.succeeded() {
            return execution.into_report(false);
        }
        match self
            .apply(
                &event.tenant,
                event.contact.id.as_ref(),
                execution.journal.effects(),
            )
            .await
        {
            Ok(()) => execution.into_report(true),
            Err(error) => {
                execution.end = Err(error);
                execution.into_report(false)
            }
        }
    }

    /// Applies a successful run's effects: contact changes, state changes, then e-mails,
    /// each through its platform trait (not one transaction).
    ///
    /// # Errors
    /// [`ErrorKind::ApplyFailed`], blamed on the platform when its error is transient.
    pub async fn apply(
        &self,
        tenant: &TenantId,
        contact: Option<&ContactId>,
        effects: &[Effect],
    ) -> Result<(), RunError> {
        let failed = |what: &str, error: BackendError| {
            let blame = if error.is_transient() {
                Blame::Platform
            } else {
                Blame::Guest
            };
            RunError::new(
                ErrorKind::ApplyFailed,
                format!("applying {what} failed: {error}"),
            )
            .blamed_on(blame)
        };
        if let Some(contact) = contact
            && effects.iter().any(Effect::touches_contact)
        {
            self.contacts
                .apply(tenant, contact, effects)
                .await
                .map_err(|e| failed("contact changes", e))?;
        }
        let changes = state_changes(tenant, contact, effects);
        if !changes.is_empty() {
            self.state
                .apply(&changes)
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

fn unavailable(message: &str) -> RunError {
    RunError::new(ErrorKind::BackendUnavailable, message).blamed_on(Blame::Platform)
}
