//! What a successful action hands back (WIT `types.outcome`).

use serde::Serialize;

use crate::Result;

/// The result of a successful run: output variables, replies and an optional branch.
///
/// ```
/// use fluxo_sdk::prelude::*;
///
/// let outcome = Outcome::new()
///     .output("data", json!({ "url": "https://billing.example/slip/1" }))
///     .reply("Here is your slip")
///     .branch("found");
/// assert_eq!(outcome.output_json()["data"]["url"], "https://billing.example/slip/1");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    output: serde_json::Map<String, serde_json::Value>,
    replies: Vec<String>,
    branch: Option<String>,
}

impl Outcome {
    /// An empty outcome.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the output variable `key`, later usable as `{{output.key}}`.
    #[must_use]
    pub fn output(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.output.insert(key.into(), value.into());
        self
    }

    /// Sets every field of `value` (a struct or map) as an output variable.
    ///
    /// # Errors
    /// When `value` does not serialize to a JSON object.
    pub fn outputs(mut self, value: &impl Serialize) -> Result<Self> {
        match serde_json::to_value(value)? {
            serde_json::Value::Object(map) => {
                self.output.extend(map);
                Ok(self)
            }
            other => Err(crate::Error::new(format!(
                "outputs must be a JSON object, got {other}"
            ))),
        }
    }

    /// Adds a message to send back into the conversation.
    #[must_use]
    pub fn reply(mut self, text: impl Into<String>) -> Self {
        self.replies.push(text.into());
        self
    }

    /// Chooses the workflow branch to take next.
    #[must_use]
    pub fn branch(mut self, label: impl Into<String>) -> Self {
        self.branch = Some(label.into());
        self
    }

    /// The output variables as one JSON object.
    #[must_use]
    pub fn output_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.output.clone())
    }

    /// The replies, in order.
    #[must_use]
    pub fn replies(&self) -> &[String] {
        &self.replies
    }

    /// The chosen branch.
    #[must_use]
    pub fn branch_label(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn into_parts(self) -> (serde_json::Value, Vec<String>, Option<String>) {
        (
            serde_json::Value::Object(self.output),
            self.replies,
            self.branch,
        )
    }
}

/// Anything an action may return on success: an [`Outcome`], or `()` for no output.
pub trait IntoOutcome {
    /// Converts into an [`Outcome`].
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::new()
    }
}
