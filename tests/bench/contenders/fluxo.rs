//! **R** and its variants: Fluxo's real executor path — a fresh store with fuel, an
//! epoch deadline, the memory limiter, quotas, the journal, the host implementations,
//! effects applied to the default in-memory contact store, and a full run report.
//! **R-epoch**, **R-fuel** and **R-none** build the engine with one interruption
//! mechanism or none ([`Metering`]).

use std::hint::black_box;
use std::sync::Arc;

use anyhow::Context as _;
use fluxo_sandbox::{
    ActionComponent, Config, Contact, Effect, EngineOptions, Event, FieldValue, Metering,
    RunReport, RunStatus, Runtime, Trigger,
};

use super::{BoxFuture, Contender, Raw};

/// A Fluxo runtime with one loaded action and the event to run it on.
pub struct Fluxo {
    label: String,
    runtime: Arc<Runtime>,
    action: ActionComponent,
    event: Event,
}

impl Fluxo {
    /// `label`'s runtime: `metering`, a pool of `slots`, `config`, running `component`
    /// on an event whose input is `input` (JSON).
    ///
    /// # Errors
    /// When the runtime cannot be built, the component does not load, or `input` is not
    /// JSON.
    pub fn new(
        label: &str,
        metering: Metering,
        slots: u32,
        config: Config,
        component: &[u8],
        input: &str,
    ) -> anyhow::Result<Self> {
        let runtime = Runtime::builder()
            .config(config)
            .engine_options(EngineOptions {
                max_concurrent_runs: slots,
                metering,
                ..EngineOptions::default()
            })
            .build()?;
        let action = runtime.load(component)?;
        Self::on(label, Arc::new(runtime), action, input)
    }

    /// `label`: `action` on `runtime`, for an event whose input is `input` (JSON).
    ///
    /// # Errors
    /// When `input` is not JSON.
    pub fn on(
        label: &str,
        runtime: Arc<Runtime>,
        action: ActionComponent,
        input: &str,
    ) -> anyhow::Result<Self> {
        let mut event = Event::new("bench".parse()?, "triage".parse()?);
        event.trigger = Trigger::Conversation;
        event.contact = Contact::with_id("contact-48213".parse()?);
        event.input = serde_json::from_str::<serde_json::Value>(input)
            .context("the event input is not JSON")?
            .into();
        Ok(Self {
            label: label.to_owned(),
            runtime,
            action,
            event,
        })
    }

    /// The same runtime and action on another input.
    ///
    /// # Errors
    /// When `input` is not JSON.
    pub fn with_input(&self, input: &str) -> anyhow::Result<Self> {
        Self::on(
            &self.label,
            self.runtime.clone(),
            self.action.clone(),
            input,
        )
    }

    /// The four metering variants, labelled `R`, `R-epoch`, `R-fuel`, `R-none`.
    #[must_use]
    pub fn variants() -> [(&'static str, Metering); 4] {
        [
            ("R", Metering::default()),
            (
                "R-epoch",
                Metering {
                    fuel: false,
                    epoch: true,
                },
            ),
            (
                "R-fuel",
                Metering {
                    fuel: true,
                    epoch: false,
                },
            ),
            (
                "R-none",
                Metering {
                    fuel: false,
                    epoch: false,
                },
            ),
        ]
    }

    /// One run, failing unless it succeeded.
    ///
    /// # Errors
    /// With the run's error when it did not succeed.
    pub async fn report(&self) -> anyhow::Result<RunReport> {
        let report = self
            .runtime
            .run(&self.action, &self.event, fluxo_sandbox::RunOptions::new())
            .await;
        if report.status != RunStatus::Succeeded {
            anyhow::bail!("{} failed: {:?}", self.label, report.error);
        }
        Ok(report)
    }
}

impl Contender for Fluxo {
    fn label(&self) -> &str {
        &self.label
    }

    fn isolation(&self) -> &'static str {
        match self.runtime.engine_options().metering {
            Metering {
                fuel: true,
                epoch: true,
            } => "wasm instance + fuel, epoch, memory limits",
            Metering {
                fuel: false,
                epoch: true,
            } => "wasm instance + epoch, memory limits",
            Metering {
                fuel: true,
                epoch: false,
            } => "wasm instance + fuel, memory limits",
            Metering {
                fuel: false,
                epoch: false,
            } => "wasm instance + memory limit (no CPU bound)",
        }
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(async move {
            let report = self.report().await?;
            let output = report
                .outcome
                .map(|outcome| outcome.output.to_string())
                .unwrap_or_default();
            Ok((output, report.effects.iter().map(effect_row).collect()))
        })
    }

    // Timed: the run and its report, without converting the effects.
    fn run(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            black_box(self.report().await?);
            Ok(())
        })
    }
}

/// A journal effect in the smoke test's row form.
fn effect_row(effect: &Effect) -> Vec<String> {
    match effect {
        Effect::SetField {
            name,
            value: FieldValue::Text(text),
        } => vec!["set_field".to_owned(), name.clone(), text.clone()],
        Effect::AddTag { tag } => vec!["add_tag".to_owned(), tag.clone()],
        other => vec![format!("{other:?}")],
    }
}

impl std::fmt::Debug for Fluxo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fluxo")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}
