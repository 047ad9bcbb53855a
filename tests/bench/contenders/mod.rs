//! The contenders: one action (triage a chat event, set a field, add a tag, return an
//! output) behind each way a chat platform could run tenant code.

pub mod extism;
pub mod floor;
pub mod fluxo;
pub mod native;
pub mod native_http;
pub mod process;
pub mod quickjs;

use std::future::Future;
use std::pin::Pin;

/// A boxed future (contenders are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one run produced, in a form every contender can give (for the smoke test).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The output, parsed.
    pub output: serde_json::Value,
    /// The effects in order: `["set_field", name, value]`, `["add_tag", tag]`.
    pub effects: Vec<Vec<String>>,
}

impl Observed {
    /// What every contender must observe for `event`: the shared logic run natively.
    ///
    /// # Errors
    /// When `event` is not a chat event.
    pub fn expected(event: &str) -> anyhow::Result<Self> {
        let decision = fluxo_triage::triage(event)?;
        Ok(Self {
            output: serde_json::from_str(&decision.output())?,
            effects: vec![
                vec![
                    "set_field".to_owned(),
                    fluxo_triage::PRIORITY_FIELD.to_owned(),
                    decision.priority.to_owned(),
                ],
                vec!["add_tag".to_owned(), fluxo_triage::SUPPORT_TAG.to_owned()],
            ],
        })
    }
}

impl Observed {
    /// From an output (JSON text) and effect rows.
    ///
    /// # Errors
    /// When the output is not JSON.
    pub fn parse(output: &str, effects: Vec<Vec<String>>) -> anyhow::Result<Self> {
        Ok(Self {
            output: serde_json::from_str(output)?,
            effects,
        })
    }

    /// From a child process's report, `{"output": "<json text>", "effects": [[…]]}`.
    ///
    /// # Errors
    /// When the report does not have that shape.
    pub fn from_report(report: &serde_json::Value) -> anyhow::Result<Self> {
        let output = report
            .get("output")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("the report has no output: {report}"))?;
        let effects = serde_json::from_value(report.get("effects").cloned().unwrap_or_default())?;
        Self::parse(output, effects)
    }
}

/// What one action returned, before parsing: output text and effect rows.
pub type Raw = (String, Vec<Vec<String>>);

/// A contender that runs in this process (or spawns per action), one action per call.
pub trait Contender: Send + Sync {
    /// The row label (`R`, `W0`, …).
    fn label(&self) -> &str;
    /// What keeps one run from another.
    fn isolation(&self) -> &'static str;
    /// One action, from a fresh sandbox to recorded effects.
    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>>;
    /// The timed path: one action, its result kept from the optimizer.
    fn run(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            std::hint::black_box(self.once().await?);
            Ok(())
        })
    }
    /// One action, reporting what it produced (not timed).
    fn observe(&self) -> BoxFuture<'_, anyhow::Result<Observed>> {
        Box::pin(async move {
            let (output, effects) = self.once().await?;
            Observed::parse(&output, effects)
        })
    }
}
