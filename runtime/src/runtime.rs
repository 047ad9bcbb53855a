//! [`Runtime`]: the engine, its epoch ticker, the linker and the platform's backends,
//! built once per host with [`RuntimeBuilder`].

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::Action;
use crate::config::{Config, Limits};
use crate::engine::{self, EngineOptions, EpochTicker};
use crate::event::Event;
use crate::executor::Executor;
use crate::executor::report::RunReport;
use crate::host::contact::{ContactStore, MemoryContacts};
use crate::host::email::{Mailer, Outbox};
use crate::host::http::Egress;
use crate::host::http::resolve::{Resolve, SystemResolver};
use crate::host::secrets::{SecretSource, StaticSecrets};
use crate::host::state::{MemoryState, StateStore};
use crate::host::{RunState, Services};
use crate::registry::{self, ActionComponent, DEFAULT_MAX_COMPONENT_BYTES};
use crate::{Error, Result};
use wasmtime::component::Component;

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
    resolver: Option<Arc<dyn Resolve>>,
    secrets: Option<Arc<dyn SecretSource>>,
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
            mailer: Arc::new(Outbox::new()),
            state: Arc::new(MemoryState::new()),
            resolver: None,
            secrets: None,
        }
    }
}

impl RuntimeBuilder {
    /// Limits, egress policy and secrets.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Engine-wide settings (the instance pool's size).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }

    /// The largest component accepted.
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
    /// [`Error::Config`] for a bad configuration, [`Error::Engine`] when the engine
    /// cannot be created on this machine.
    pub fn build(self) -> Result<Runtime> {
        self.config.check()?;
        let engine = engine::build(self.engine)?;
        let mut linker = Linker::<RunState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|error| Error::Engine(format!("linking WASI: {error:#}")))?;
        Action::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|error| Error::Engine(format!("linking fluxo:action: {error:#}")))?;
        let resolver = match self.resolver {
            Some(resolver) => resolver,
            None => Arc::new(SystemResolver::new()?),
        };
        let services = Arc::new(Services {
            egress: Egress::new(&self.config.http, resolver)?,
            state: self.state,
            secrets: self
                .secrets
                .unwrap_or_else(|| Arc::new(StaticSecrets::new(self.config.secrets.clone()))),
        });
        let ticker = if self.engine.metering.epoch {
            Some(EpochTicker::start(engine.clone())?)
        } else {
            None
        };
        Ok(Runtime {
            executor: Executor {
                engine,
                metering: self.engine.metering,
                services,
                contacts: self.contacts,
                mailer: self.mailer,
            },
            linker,
            config: self.config,
            max_component_bytes: self.max_component_bytes,
            engine_options: self.engine,
            _ticker: ticker,
        })
    }
}

/// How one run is made.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id (one the caller already recorded); a fresh one when `None`.
    pub run_id: Option<String>,
    /// Limits instead of the configured ones.
    pub limits: Option<Limits>,
    /// Apply the effects of a successful run (`false`: a dry run).
    pub apply: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            run_id: None,
            limits: None,
            apply: true,
        }
    }
}

/// The Fluxo host: loads components and runs them in fresh sandboxes.
///
/// ```no_run
/// # async fn demo(bytes: &[u8]) -> fluxo_runtime::Result<()> {
/// use fluxo_runtime::{Event, Runtime};
///
/// let runtime = Runtime::builder().build()?;
/// let action = runtime.load(bytes)?;
/// let report = runtime.run(&action, &Event::new("acme", "crm-lead")).await;
/// println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
/// # Ok(())
/// # }
/// ```
pub struct Runtime {
    executor: Executor,
    linker: Linker<RunState>,
    config: Config,
    max_component_bytes: usize,
    engine_options: EngineOptions,
    // Dropped last among the fields that matter: stops the epoch thread (if one runs).
    _ticker: Option<EpochTicker>,
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

    /// The engine settings this runtime was built with.
    #[must_use]
    pub fn engine_options(&self) -> EngineOptions {
        self.engine_options
    }

    /// The engine (for embedders that precompile or inspect).
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.executor.engine
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks, compiles and links a component.
    ///
    /// # Errors
    /// [`Error::ComponentTooLarge`], [`Error::InvalidComponent`] (not a component, no
    /// `run` export, wrong types) or [`Error::ForbiddenImport`] naming the import.
    pub fn load(&self, bytes: &[u8]) -> Result<ActionComponent> {
        registry::load(self.engine(), &self.linker, bytes, self.max_component_bytes)
    }

    /// The largest component accepted.
    #[must_use]
    pub fn max_component_bytes(&self) -> usize {
        self.max_component_bytes
    }

    /// Checks a compiled component against the world and links it.
    pub(crate) fn link(&self, component: &Component, size: usize) -> Result<ActionComponent> {
        registry::link_checked(self.engine(), &self.linker, component, size)
    }

    /// Runs `action` for `event` with the configured limits and applies its effects if
    /// it succeeds.
    pub async fn run(&self, action: &ActionComponent, event: &Event) -> RunReport {
        self.executor
            .run(None, action, event, &self.config.limits, true)
            .await
    }

    /// Runs `action` with `limits` instead of the configured ones.
    pub async fn run_with_limits(
        &self,
        action: &ActionComponent,
        event: &Event,
        limits: &Limits,
    ) -> RunReport {
        self.executor.run(None, action, event, limits, true).await
    }

    /// Runs `action` with explicit [`RunOptions`].
    pub async fn run_with(
        &self,
        action: &ActionComponent,
        event: &Event,
        options: RunOptions,
    ) -> RunReport {
        let limits = options.limits.as_ref().unwrap_or(&self.config.limits);
        self.executor
            .run(options.run_id, action, event, limits, options.apply)
            .await
    }

    /// A fresh run id.
    #[must_use]
    pub fn new_run_id(&self) -> String {
        crate::executor::new_run_id()
    }

    /// Runs `action` like [`Runtime::run`] but applies nothing, whatever the outcome.
    pub async fn dry_run(&self, action: &ActionComponent, event: &Event) -> RunReport {
        self.executor
            .run(None, action, event, &self.config.limits, false)
            .await
    }
}
