//! The registry: validates, compiles (only here) and stores tenants' components, with
//! versions and a lifecycle (enable, disable, activate, delete).
//!
//! Upload: name check → size, framing, imports and pool shape, read without compiling
//! (`Sandbox::check`, milliseconds) → compiled out of process into the local artifact
//! cache (one compile per component hash at a time, a bounded number at once with one
//! per tenant) → loaded and linked → the bytes stored in the shared component store →
//! recorded as a new version, which becomes active. A refused upload leaves nothing
//! behind: no blob, no artifact, no version.
//!
//! A **workflow** is an action too: its versions hold a JSON definition instead of a
//! component ([`Registry::upload_workflow`]), validated (every problem listed) instead
//! of compiled, stored in the same blob store by its SHA-256, recorded with
//! [`VersionKind::Workflow`] and the capabilities its blocks use as imports. Names,
//! versions, activation, enable/disable, limits, retry policies,
//! deletion and runs are the action's.
//!
//! Loaded components stay in memory in a cache bounded by the components' bytes and are
//! evicted when their action is deleted; every node compiles what it runs into its own
//! artifact cache on first use, from the shared component store.

mod artifacts;
pub mod compile;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use fluxo_core::{ActionName, TenantId};
use fluxo_sandbox::load::{LoadError, sha256_hex};
use fluxo_sandbox::{ActionComponent, Sandbox};
use fluxo_store::{ActionRecord, NewVersion, Store, StoreError, VersionKind, VersionRecord};
use fluxo_workflow::{Block, Problem, Templates, Workflow};
use tokio::sync::Semaphore;

use self::artifacts::{ArtifactError, Artifacts};
pub use self::compile::{COMPILE_ARTIFACT_COMMAND, CompileError, CompileLimits, Compiler};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The action name is not acceptable.
    #[error("invalid action name {0:?}: {rule}", rule = fluxo_core::ids::NAME_RULE)]
    InvalidName(String),
    /// The component was refused (size, framing, world, shape).
    #[error(transparent)]
    Component(#[from] LoadError),
    /// Compilation failed or ran out of time.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The tenant has no such action.
    #[error("no action named {0:?}")]
    NotFound(String),
    /// The action has no such version.
    #[error("action {0:?} has no version {1}")]
    NoSuchVersion(String, u32),
    /// The action is disabled: it accepts no new runs.
    #[error("action {0:?} is disabled")]
    Disabled(String),
    /// A delete was not confirmed with the action's name.
    #[error("to delete {name:?}, confirm with its name (got {given:?})")]
    ConfirmationMismatch {
        /// The action.
        name: String,
        /// What was given.
        given: String,
    },
    /// The name belongs to an action of the other kind (a component's versions and a
    /// workflow's do not mix).
    #[error("action {name:?} is a {existing}; choose another name for a {uploaded}")]
    KindMismatch {
        /// The action.
        name: String,
        /// What it is: `component` or `workflow`.
        existing: &'static str,
        /// What was uploaded.
        uploaded: &'static str,
    },
    /// The workflow definition has problems (each with its step and field).
    #[error("the workflow has {n} problem(s); the first: {first}", n = .0.len(), first = .0.first().map(ToString::to_string).unwrap_or_default())]
    Workflow(Vec<Problem>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact cache failed.
    #[error("component storage: {0}")]
    Storage(String),
}

impl From<ArtifactError> for RegistryError {
    fn from(error: ArtifactError) -> Self {
        Self::Storage(error.0)
    }
}

/// Settings of a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Tenants whose largest component differs from `max_component_bytes`, in bytes.
    pub tenant_max_component_bytes: std::collections::HashMap<TenantId, usize>,
    /// Compiles at once over every tenant (one per tenant at most).
    pub max_compiles: usize,
    /// Bytes of components kept loaded (compiled code mapped), least recently used
    /// evicted first.
    pub loaded_bytes: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            max_component_bytes: fluxo_sandbox::DEFAULT_MAX_COMPONENT_BYTES,
            tenant_max_component_bytes: std::collections::HashMap::new(),
            max_compiles: 2,
            loaded_bytes: 512 << 20,
        }
    }
}

/// The largest workflow definition accepted, in bytes (200 steps of a few hundred bytes
/// each fit many times over).
pub const MAX_DEFINITION_BYTES: usize = 256 << 10;

/// What an action runs.
#[derive(Debug, Clone)]
pub enum Implementation {
    /// A component, loaded.
    Component(ActionComponent),
    /// A workflow, parsed and validated.
    Workflow(Arc<Workflow>),
}

/// The registry of a Fluxo host.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
    artifacts: Arc<Artifacts>,
    compiler: Compiler,
    options: RegistryOptions,
    loaded: moka::sync::Cache<String, ActionComponent>,
    workflows: moka::sync::Cache<String, Arc<Workflow>>,
    templates: Templates,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    compiles: Semaphore,
    tenant_compiles: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// A registry compiling into `data_dir/artifacts`, keeping components in `store`.
    /// Component files of the old on-disk layout (`data_dir/components/*.wasm`) are moved
    /// into the store.
    ///
    /// # Errors
    /// When the artifact directory cannot be opened or old files not moved.
    pub async fn open(
        sandbox: Arc<Sandbox>,
        store: Arc<dyn Store>,
        data_dir: &Path,
        compiler: Compiler,
        options: RegistryOptions,
    ) -> Result<Self, RegistryError> {
        import_legacy_components(&*store, &data_dir.join("components")).await?;
        let artifacts = Arc::new(Artifacts::open(&data_dir.join("artifacts"))?);
        let loaded = moka::sync::Cache::builder()
            .weigher(|_, component: &ActionComponent| {
                u32::try_from(component.size()).unwrap_or(u32::MAX).max(1)
            })
            .max_capacity(options.loaded_bytes)
            .build();
        Ok(Self {
            sandbox,
            store,
            artifacts,
            compiler,
            compiles: Semaphore::new(options.max_compiles.max(1)),
            options,
            loaded,
            workflows: moka::sync::Cache::new(10_000),
            templates: Templates::new(),
            flights: Mutex::new(HashMap::new()),
            tenant_compiles: Mutex::new(HashMap::new()),
        })
    }

    /// The store this registry records into.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sandbox components are loaded into.
    #[must_use]
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The largest component `tenant` may upload, in bytes.
    #[must_use]
    pub fn max_component_bytes(&self, tenant: &TenantId) -> usize {
        self.options
            .tenant_max_component_bytes
            .get(tenant)
            .copied()
            .unwrap_or(self.options.max_component_bytes)
    }

    /// Checks, compiles and stores `bytes` as a new version of `tenant`'s action `name`;
    /// the new version becomes active.
    ///
    /// # Errors
    /// [`RegistryError`] naming what was refused; nothing is recorded or kept then.
    pub async fn upload(
        &self,
        tenant: &TenantId,
        name: &str,
        description: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<(ActionRecord, VersionRecord), RegistryError> {
        let name =
            ActionName::parse(name).map_err(|_| RegistryError::InvalidName(name.to_owned()))?;
        self.same_kind(tenant, &name, VersionKind::Component)
            .await?;
        let shape = self
            .sandbox
            .check(&bytes, self.max_component_bytes(tenant))?;
        let hash = sha256_hex(&bytes);
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let component = self.compiled(tenant, &hash, Some(bytes.clone())).await?;
        self.store.put_component(&hash, &bytes).await?;
        let version = self
            .store
            .add_version(NewVersion {
                tenant,
                name: &name,
                description,
                kind: VersionKind::Component,
                hash: &hash,
                size,
                imports: component.imports(),
            })
            .await?;
        drop(shape);
        self.records(tenant, &name, Some(version)).await
    }

    /// Validates `bytes` as a workflow definition (JSON, at most
    /// [`MAX_DEFINITION_BYTES`]) and stores it as a new version of `tenant`'s action
    /// `name`; the new version becomes active, as an uploaded component's does.
    ///
    /// # Errors
    /// [`RegistryError::Workflow`] with every problem; nothing is recorded then.
    pub async fn upload_workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        description: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<(ActionRecord, VersionRecord), RegistryError> {
        let name =
            ActionName::parse(name).map_err(|_| RegistryError::InvalidName(name.to_owned()))?;
        if bytes.len() > MAX_DEFINITION_BYTES {
            return Err(RegistryError::Workflow(vec![Problem::document(
                "",
                format!(
                    "the definition is {} bytes, over the {MAX_DEFINITION_BYTES} allowed",
                    bytes.len()
                ),
            )]));
        }
        let text = std::str::from_utf8(&bytes).map_err(|error| {
            RegistryError::Workflow(vec![Problem::document(
                "",
                format!("the definition is not UTF-8: {error}"),
            )])
        })?;
        let workflow = Workflow::parse(text).map_err(RegistryError::Workflow)?;
        // Every problem at once: the definition's own and its action steps'.
        let mut problems = fluxo_workflow::validate(&workflow, &self.templates);
        problems.extend(self.action_step_problems(tenant, &workflow).await?);
        if !problems.is_empty() {
            return Err(RegistryError::Workflow(problems));
        }
        if workflow.name != name.as_str() {
            return Err(RegistryError::Workflow(vec![Problem::document(
                "name",
                format!(
                    "is `{}`, but the definition is uploaded as `{name}`: they must be the same",
                    workflow.name
                ),
            )]));
        }
        self.same_kind(tenant, &name, VersionKind::Workflow).await?;
        let hash = sha256_hex(&bytes);
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.store.put_component(&hash, &bytes).await?;
        let imports = workflow_imports(&workflow);
        let description =
            description.or(Some(workflow.description.as_str()).filter(|d| !d.is_empty()));
        let version = self
            .store
            .add_version(NewVersion {
                tenant,
                name: &name,
                description,
                kind: VersionKind::Workflow,
                hash: &hash,
                size,
                imports: &imports,
            })
            .await?;
        self.workflows.insert(hash, Arc::new(workflow));
        self.records(tenant, &name, Some(version)).await
    }

    /// The action and what `version` runs (the active one when `None`).
    ///
    /// # Errors
    /// When the action or version does not exist, or its component or definition cannot
    /// be loaded.
    pub async fn resolve_implementation(
        &self,
        tenant: &TenantId,
        name: &ActionName,
        version: Option<u32>,
    ) -> Result<(ActionRecord, VersionRecord, Implementation), RegistryError> {
        let (action, record) = self.records(tenant, name, version).await?;
        let implementation = if record.kind == VersionKind::Workflow {
            Implementation::Workflow(self.workflow(&record.hash).await?)
        } else {
            Implementation::Component(self.compiled(tenant, &record.hash, None).await?)
        };
        Ok((action, record, implementation))
    }

    /// The action and its `version` (the active one when `None`).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoSuchVersion`], or the store's.
    pub async fn records(
        &self,
        tenant: &TenantId,
        name: &ActionName,
        version: Option<u32>,
    ) -> Result<(ActionRecord, VersionRecord), RegistryError> {
        let action = self
            .store
            .action(tenant, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let number = version.unwrap_or(action.active_version);
        let record = self
            .store
            .version(tenant, name, number)
            .await?
            .ok_or_else(|| RegistryError::NoSuchVersion(name.to_string(), number))?;
        Ok((action, record))
    }

    /// The problems of `workflow`'s `action` and `trigger_workflow` steps for `tenant`,
    /// one per step naming an action that does not exist, is disabled, is a workflow, or
    /// is the workflow itself, or starting a workflow that does not exist or is disabled
    /// (what validation without the tenant's catalog cannot see).
    ///
    /// # Errors
    /// The store's.
    pub async fn action_step_problems(
        &self,
        tenant: &TenantId,
        workflow: &Workflow,
    ) -> Result<Vec<Problem>, RegistryError> {
        let mut problems = Vec::new();
        for step in &workflow.steps {
            if let Block::TriggerWorkflow(block) = &step.block {
                problems.extend(
                    self.start_problem(tenant, workflow, &step.id, &block.workflow)
                        .await?,
                );
                continue;
            }
            let Block::Action(block) = &step.block else {
                continue;
            };
            // A malformed name was reported by validation already.
            let Ok(name) = ActionName::parse(&block.action) else {
                continue;
            };
            let mut problem = |why: String| problems.push(Problem::step(&step.id, "action", why));
            if name.as_str() == workflow.name {
                problem(format!("`{name}` is this workflow: a step cannot run it"));
                continue;
            }
            let Some(action) = self.store.action(tenant, &name).await? else {
                problem(format!("no action named `{name}`"));
                continue;
            };
            if !action.enabled {
                problem(format!("action `{name}` is disabled"));
            }
            let active = self
                .store
                .version(tenant, &name, action.active_version)
                .await?;
            if active.is_some_and(|version| version.kind == VersionKind::Workflow) {
                problem(format!(
                    "`{name}` is a workflow: an action step runs component actions"
                ));
            }
        }
        Ok(problems)
    }

    /// The problem of a `trigger_workflow` step starting `target`: one that does not
    /// exist or is disabled (the workflow itself may be started: the run depth bounds
    /// it).
    async fn start_problem(
        &self,
        tenant: &TenantId,
        workflow: &Workflow,
        step: &str,
        target: &str,
    ) -> Result<Option<Problem>, RegistryError> {
        let Ok(name) = ActionName::parse(target) else {
            return Ok(None);
        };
        if name.as_str() == workflow.name {
            return Ok(None);
        }
        let why = match self.store.action(tenant, &name).await? {
            None => format!("no workflow or action named `{name}`"),
            Some(action) if !action.enabled => format!("`{name}` is disabled"),
            Some(_) => return Ok(None),
        };
        Ok(Some(Problem::step(step, "workflow", why)))
    }

    /// Refuses a version of the other kind than the action's active one.
    async fn same_kind(
        &self,
        tenant: &TenantId,
        name: &ActionName,
        uploaded: VersionKind,
    ) -> Result<(), RegistryError> {
        let Some(action) = self.store.action(tenant, name).await? else {
            return Ok(());
        };
        let Some(active) = self
            .store
            .version(tenant, name, action.active_version)
            .await?
        else {
            return Ok(());
        };
        if active.kind == uploaded {
            return Ok(());
        }
        Err(RegistryError::KindMismatch {
            name: name.to_string(),
            existing: active.kind.as_str(),
            uploaded: uploaded.as_str(),
        })
    }

    /// The stored definition `hash`, parsed (kept in memory once read).
    async fn workflow(&self, hash: &str) -> Result<Arc<Workflow>, RegistryError> {
        if let Some(workflow) = self.workflows.get(hash) {
            return Ok(workflow);
        }
        let bytes = self.store.component(hash).await?.ok_or_else(|| {
            RegistryError::Storage(format!("the workflow definition {hash} is not stored"))
        })?;
        if sha256_hex(&bytes) != hash {
            return Err(RegistryError::Storage(format!(
                "the workflow definition {hash} does not match its hash"
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let workflow = Arc::new(
            fluxo_workflow::check(&text, &self.templates).map_err(RegistryError::Workflow)?,
        );
        self.workflows.insert(hash.to_owned(), workflow.clone());
        Ok(workflow)
    }

    /// The action and the component of `version` (the active one when `None`).
    ///
    /// # Errors
    /// When the action or version does not exist, is a workflow, or the component cannot
    /// be loaded.
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        name: &ActionName,
        version: Option<u32>,
    ) -> Result<(ActionRecord, VersionRecord, ActionComponent), RegistryError> {
        match self.resolve_implementation(tenant, name, version).await? {
            (action, record, Implementation::Component(component)) => {
                Ok((action, record, component))
            }
            (_, record, Implementation::Workflow(_)) => Err(RegistryError::Storage(format!(
                "{name} version {} is a workflow, not a component",
                record.version
            ))),
        }
    }

    /// Deletes an action when `confirm` repeats its name: its versions go, and with them
    /// the component bytes, artifacts and loaded code no other version uses. Runs in
    /// flight keep their loaded component and finish.
    ///
    /// # Errors
    /// On a mismatched confirmation or a missing action.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        name: &str,
        confirm: &str,
    ) -> Result<(), RegistryError> {
        if confirm != name {
            return Err(RegistryError::ConfirmationMismatch {
                name: name.to_owned(),
                given: confirm.to_owned(),
            });
        }
        let parsed =
            ActionName::parse(name).map_err(|_| RegistryError::NotFound(name.to_owned()))?;
        let Some(orphaned) = self.store.delete_action(tenant, &parsed).await? else {
            return Err(RegistryError::NotFound(name.to_owned()));
        };
        for hash in orphaned {
            self.loaded.invalidate(&hash);
            self.workflows.invalidate(&hash);
            self.store.delete_component(&hash).await?;
            self.artifacts.remove_component(&hash);
        }
        Ok(())
    }

    /// How many components are loaded.
    #[must_use]
    pub fn loaded_count(&self) -> u64 {
        self.loaded.run_pending_tasks();
        self.loaded.entry_count()
    }

    /// The names in the artifact directory.
    #[must_use]
    pub fn artifact_files(&self) -> Vec<String> {
        self.artifacts.list()
    }

    /// The loaded component for `hash`: from memory, else from its artifact, else
    /// compiled from `bytes` (or the stored bytes). One load per hash at a time.
    async fn compiled(
        &self,
        tenant: &TenantId,
        hash: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<ActionComponent, RegistryError> {
        if let Some(component) = self.loaded.get(hash) {
            return Ok(component);
        }
        let flight = lock(&self.flights)
            .entry(hash.to_owned())
            .or_default()
            .clone();
        let _turn = flight.lock().await;
        let result = self.load_or_compile(tenant, hash, bytes).await;
        {
            let mut flights = lock(&self.flights);
            if Arc::strong_count(&flight) <= 2 {
                flights.remove(hash);
            }
        }
        result
    }

    async fn load_or_compile(
        &self,
        tenant: &TenantId,
        hash: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<ActionComponent, RegistryError> {
        if let Some(component) = self.loaded.get(hash) {
            return Ok(component);
        }
        let name = Artifacts::name(hash, self.sandbox.fingerprint());
        let size_hint = bytes.as_ref().map(Vec::len);
        if let Some(component) = self.load_artifact(&name, size_hint).await? {
            self.loaded.insert(hash.to_owned(), component.clone());
            return Ok(component);
        }
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => self.store.component(hash).await?.ok_or_else(|| {
                RegistryError::Storage(format!("the bytes of component {hash} are not stored"))
            })?,
        };
        let size = bytes.len();
        self.compile(tenant, &name, bytes).await?;
        let component = match self.load_artifact(&name, Some(size)).await {
            Ok(Some(component)) => component,
            Ok(None) => {
                return Err(RegistryError::Storage(
                    "the compiled artifact vanished".to_owned(),
                ));
            }
            Err(error) => {
                // Compiled but refused (it does not link): keep nothing of it.
                self.artifacts.remove(&name);
                return Err(error);
            }
        };
        self.loaded.insert(hash.to_owned(), component.clone());
        Ok(component)
    }

    /// Loads `name` from the artifact cache; a corrupt artifact is removed (`None`: it
    /// will be recompiled, never deserialized).
    async fn load_artifact(
        &self,
        name: &str,
        size: Option<usize>,
    ) -> Result<Option<ActionComponent>, RegistryError> {
        // File reads and deserialization are blocking work: off the async threads.
        let sandbox = self.sandbox.clone();
        let artifacts = self.artifacts.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let Some((artifact, checksum)) = artifacts.read(&owned)? else {
                return Ok(None);
            };
            let size = size.unwrap_or(artifact.len());
            match sandbox.load_artifact(&artifact, &checksum, size) {
                Ok(component) => Ok(Some(component)),
                Err(LoadError::CorruptArtifact) => {
                    artifacts.remove(&owned);
                    Ok(None)
                }
                Err(error) => Err(RegistryError::from(error)),
            }
        })
        .await
        .map_err(|error| RegistryError::Storage(format!("loading task: {error}")))?
    }

    /// Compiles `bytes` into the artifact `name`, within the compile bounds.
    async fn compile(
        &self,
        tenant: &TenantId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let tenant_slots = lock(&self.tenant_compiles)
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone();
        let _tenant_turn = tenant_slots
            .acquire()
            .await
            .map_err(|_| RegistryError::Storage("compile queue closed".to_owned()))?;
        let _turn = self
            .compiles
            .acquire()
            .await
            .map_err(|_| RegistryError::Storage("compile queue closed".to_owned()))?;
        let (temp, path) = self.artifacts.reserve(name)?;
        let metering = self.sandbox.options().metering;
        let compiled = self.compiler.compile(metering, bytes, &path).await;
        if let Err(error) = compiled {
            self.artifacts.discard(&temp);
            return Err(error.into());
        }
        let artifacts = self.artifacts.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || match artifacts.finish(&temp, &name) {
            Ok(_) => Ok(()),
            Err(error) => {
                artifacts.discard(&temp);
                Err(error.into())
            }
        })
        .await
        .map_err(|error| RegistryError::Storage(format!("storing task: {error}")))?
    }
}

/// Moves `dir/*.wasm` (the old layout kept uploads on disk) into the store, then removes
/// the directory.
async fn import_legacy_components(store: &dyn Store, dir: &Path) -> Result<(), RegistryError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(hash) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".wasm"))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|error| {
            RegistryError::Storage(format!("reading {}: {error}", path.display()))
        })?;
        if sha256_hex(&bytes) != hash {
            // Not what its name says: kept for an operator to look at, never imported.
            tracing::warn!(path = %path.display(), "a stored component does not match its hash; left in place");
            continue;
        }
        store.put_component(hash, &bytes).await?;
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "could not remove an imported component file");
        }
    }
    // Removed only when empty: anything left in it is worth a look.
    if let Err(error) = std::fs::remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), %error, "the old components directory was not removed");
    }
    Ok(())
}

/// The permission of a workflow that takes part in the conversation: sends messages to
/// the platform (replies, notifications, handoffs) or waits for the contact's reply;
/// components have no such interface yet.
pub const CONVERSATION_CAPABILITY: &str = "fluxo:workflow/conversation";

/// The permission of a workflow that runs the tenant's component actions as steps (each
/// under its own imports).
pub const ACTION_CAPABILITY: &str = "fluxo:workflow/action";

/// The permission of a workflow that starts other runs (`trigger_workflow`).
pub const START_CAPABILITY: &str = "fluxo:workflow/start";

/// A workflow version's imports: the `fluxo:action` interfaces its blocks use (its
/// permissions, as a component's imports are), and [`CONVERSATION_CAPABILITY`] when it
/// sends platform messages.
fn workflow_imports(workflow: &Workflow) -> Vec<String> {
    let mut used = std::collections::BTreeSet::new();
    for step in &workflow.steps {
        match &step.block {
            Block::Http(_) => {
                used.insert("fluxo:action/http");
            }
            Block::SetField(_) | Block::Tag(_) | Block::Untag(_) => {
                used.insert("fluxo:action/contact");
            }
            Block::SendEmail(_) => {
                used.insert("fluxo:action/email");
            }
            Block::Reply(_) | Block::Notify(_) | Block::Handoff(_) | Block::WaitForReply(_) => {
                used.insert(CONVERSATION_CAPABILITY);
            }
            Block::Action(_) => {
                used.insert(ACTION_CAPABILITY);
            }
            Block::TriggerWorkflow(_) => {
                used.insert(START_CAPABILITY);
            }
            Block::SetVariable(_) | Block::Condition(_) | Block::Split(_) => {}
        }
    }
    used.into_iter().map(str::to_owned).collect()
}
