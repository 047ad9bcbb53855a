//! What an action is told about its run (WIT `types.event`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, FieldValue, Result};

/// What started the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A message in a live conversation.
    Conversation,
    /// A background automation rule.
    Automation,
    /// A step of a workflow.
    Workflow,
    /// A test started by a person (the platform's Test button).
    #[default]
    Test,
}

/// The contact as it was when the run started. Use [`crate::contact`] for current
/// values, which include the run's own writes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Contact {
    /// The platform's id of the contact.
    pub id: String,
    /// Fields by name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldValue>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The message that triggered the run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The message's text.
    pub text: String,
    /// The channel it arrived on, if known.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Everything an action is told about its run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The run's id: the same for every attempt of the run.
    pub run_id: String,
    /// Which attempt this is, 1 for the first (a run is attempted again after a
    /// retryable failure, or when its host stopped mid-run).
    pub attempt: u32,
    /// A key to hand to an upstream so a repeated attempt is recognized as the same
    /// operation; HTTP requests other than GET and HEAD carry one already.
    pub idempotency_key: String,
    /// The tenant that owns the action.
    pub tenant: String,
    /// The action's name.
    pub action: String,
    /// What started the run.
    pub trigger: Trigger,
    /// The contact the run is about.
    pub contact: Contact,
    /// The triggering message, if any.
    pub message: Option<Message>,
    /// The step's input as JSON (`{}` when there is none).
    pub input: serde_json::Value,
}

impl Event {
    /// The step's input deserialized into `T`.
    ///
    /// # Errors
    /// An input error when the JSON does not fit `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.input).map_err(|error| Error::input(format!("input: {error}")))
    }

    /// The text of the triggering message, if there is one.
    #[must_use]
    pub fn message_text(&self) -> Option<&str> {
        self.message.as_ref().map(|message| message.text.as_str())
    }
}
