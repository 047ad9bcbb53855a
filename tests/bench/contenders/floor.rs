//! **W0**: bare wasmtime 48 — the floor. The same component, a pooling allocator and one
//! `InstancePre`, a fresh `Store` per run, no fuel, no epochs, no limiter, no journal,
//! no report: host functions that only record the two effects.

use fluxo_sandbox::EngineOptions;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{BoxFuture, Contender, Raw};

/// The generated bindings of the world (the floor's own, as an embedder would have).
#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "action",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use self::bindings::fluxo::action::{contact, email, http, log, secrets, state, types};
use self::bindings::{Action, ActionPre};

/// The floor contender.
pub struct Floor {
    label: &'static str,
    engine: Engine,
    pre: ActionPre<FloorState>,
    event: types::Event,
}

impl Floor {
    /// `label`: loads `component` (bytes) into an engine pooled for `slots` instances.
    ///
    /// # Errors
    /// When the engine cannot be built or the component does not load and link.
    pub fn new(
        label: &'static str,
        component: &[u8],
        input: &str,
        slots: u32,
    ) -> anyhow::Result<Self> {
        // Fluxo's own pool, so that the floor measures only what Fluxo adds per run.
        let pool = EngineOptions {
            max_concurrent_runs: slots,
            ..EngineOptions::default()
        }
        .pooling_config();
        let mut config = wasmtime::Config::new();
        config
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let component = Component::new(&engine, component)
            .map_err(|error| anyhow::anyhow!("loading the component: {error:#}"))?;
        let mut linker = Linker::<FloorState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Action::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let pre = ActionPre::new(linker.instantiate_pre(&component)?)?;
        let event = types::Event {
            tenant: "bench".to_owned(),
            action: "triage".to_owned(),
            run_id: "01890a5d-ac96-774b-bcce-b302099a8057".to_owned(),
            attempt: 1,
            idempotency_key: "01890a5d-ac96-774b-bcce-b302099a8057".to_owned(),
            trigger: types::Trigger::Conversation,
            contact: types::ContactSnapshot {
                id: "contact-48213".to_owned(),
                fields: Vec::new(),
                tags: Vec::new(),
            },
            message: None,
            input: input.to_owned(),
        };
        Ok(Self {
            label,
            engine,
            pre,
            event,
        })
    }

    async fn call(&self) -> anyhow::Result<Raw> {
        let mut store = Store::new(&self.engine, FloorState::default());
        let action = self.pre.instantiate_async(&mut store).await?;
        let outcome = action
            .call_run(&mut store, &self.event)
            .await?
            .map_err(|error| anyhow::anyhow!("the action failed: {}", error.message))?;
        Ok((outcome.output, store.into_data().effects))
    }
}

impl Contender for Floor {
    fn label(&self) -> &str {
        self.label
    }

    fn isolation(&self) -> &'static str {
        "wasm instance (no CPU bounds)"
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(self.call())
    }
}

/// A run's store data: an empty WASI context and the recorded effects.
pub struct FloorState {
    effects: Vec<Vec<String>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl Default for FloorState {
    fn default() -> Self {
        Self {
            effects: Vec::new(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for FloorState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for FloorState {}

impl contact::Host for FloorState {
    async fn get_field(&mut self, _name: String) -> wasmtime::Result<Option<types::FieldValue>> {
        Ok(None)
    }

    async fn set_field(
        &mut self,
        name: String,
        value: types::FieldValue,
    ) -> wasmtime::Result<Result<(), contact::ContactError>> {
        let value = match value {
            types::FieldValue::Text(text) => text,
            other => format!("{other:?}"),
        };
        self.effects.push(vec!["set_field".to_owned(), name, value]);
        Ok(Ok(()))
    }

    async fn add_tag(
        &mut self,
        tag: String,
    ) -> wasmtime::Result<Result<(), contact::ContactError>> {
        self.effects.push(vec!["add_tag".to_owned(), tag]);
        Ok(Ok(()))
    }

    async fn remove_tag(
        &mut self,
        tag: String,
    ) -> wasmtime::Result<Result<(), contact::ContactError>> {
        self.effects.push(vec!["remove_tag".to_owned(), tag]);
        Ok(Ok(()))
    }

    async fn has_tag(&mut self, _tag: String) -> wasmtime::Result<bool> {
        Ok(false)
    }

    async fn tags(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

impl http::Host for FloorState {
    async fn request(
        &mut self,
        _request: http::HttpRequest,
    ) -> wasmtime::Result<Result<http::HttpResponse, http::HttpError>> {
        Ok(Err(http::HttpError::Denied(
            "the floor has no egress".to_owned(),
        )))
    }
}

impl email::Host for FloorState {
    async fn send(
        &mut self,
        _message: email::EmailMessage,
    ) -> wasmtime::Result<Result<String, email::EmailError>> {
        Ok(Err(email::EmailError::Invalid(
            "the floor sends no mail".to_owned(),
        )))
    }
}

impl log::Host for FloorState {
    async fn write(&mut self, _level: log::Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl state::Host for FloorState {
    async fn get(
        &mut self,
        _scope: state::Scope,
        _key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, state::StateError>> {
        Ok(Ok(None))
    }

    async fn set(
        &mut self,
        _scope: state::Scope,
        _key: String,
        _value: Vec<u8>,
        _ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), state::StateError>> {
        Ok(Ok(()))
    }

    async fn delete(
        &mut self,
        _scope: state::Scope,
        _key: String,
    ) -> wasmtime::Result<Result<bool, state::StateError>> {
        Ok(Ok(false))
    }
}

impl secrets::Host for FloorState {
    async fn get(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<String, secrets::SecretError>> {
        Ok(Err(secrets::SecretError::NotFound))
    }
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for FloorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorState")
            .field("effects", &self.effects)
            .finish_non_exhaustive()
    }
}
