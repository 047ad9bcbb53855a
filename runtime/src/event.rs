//! What a run is about: the event handed to the action, as the platform supplies it.
//!
//! In JSON (the `fluxo run --event` file, the REST API later):
//! `{"tenant":…,"action":…,"trigger":"test","contact":{"id":…,"fields":{…},"tags":[…]},
//! "message":{"text":…},"input":{…}}` — everything but `tenant` and `action` may be left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A typed contact field value. JSON: `"text"`, `1.5`, `true`, `null`, or
/// `{"date_time": "2026-11-25T10:00:00Z"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// Free text.
    Text(String),
    /// A number.
    Number(f64),
    /// A yes/no flag.
    Bool(bool),
    /// A timestamp, RFC 3339.
    DateTime {
        /// The timestamp text.
        date_time: String,
    },
    /// No value; setting it clears the field.
    Null,
}

impl FieldValue {
    /// The text, when this is a text value.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// An approximation of the value's size in bytes, for limits.
    pub(crate) fn size(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::DateTime { date_time } => date_time.len(),
            Self::Number(_) => 8,
            Self::Bool(_) | Self::Null => 1,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A message in a live conversation.
    Conversation,
    /// A background automation rule.
    Automation,
    /// A workflow step.
    Workflow,
    /// A test run.
    #[default]
    Test,
}

/// A contact as the platform knows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The platform's id.
    #[serde(default)]
    pub id: String,
    /// Fields by name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldValue>,
    /// Tags, in order of addition.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The triggering message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Its text.
    pub text: String,
    /// The channel it came in on.
    #[serde(default)]
    pub channel: Option<String>,
}

/// Everything a run is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The tenant that owns the action.
    pub tenant: String,
    /// The action's name.
    pub action: String,
    /// What started the run.
    #[serde(default)]
    pub trigger: Trigger,
    /// The contact the run is about.
    #[serde(default)]
    pub contact: Contact,
    /// The triggering message.
    #[serde(default)]
    pub message: Option<Message>,
    /// The step's input.
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Event {
    /// An event for `tenant`'s `action` with an empty contact and input.
    pub fn new(tenant: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            action: action.into(),
            trigger: Trigger::default(),
            contact: Contact::default(),
            message: None,
            input: empty_object(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_event_file_parses() {
        let event: Event = serde_json::from_str(
            r#"{"tenant":"acme","action":"crm-lead","contact":{"id":"c1","fields":{"name":"Ana","age":31,"vip":true,"since":{"date_time":"2026-01-01T00:00:00Z"},"gone":null}}}"#,
        )
        .unwrap();
        assert_eq!(event.trigger, Trigger::Test);
        assert_eq!(event.contact.fields.len(), 5);
        assert_eq!(
            event.contact.fields["since"],
            FieldValue::DateTime {
                date_time: "2026-01-01T00:00:00Z".into()
            }
        );
        assert_eq!(event.input, serde_json::json!({}));
        assert!(serde_json::from_str::<Event>(r#"{"tenant":"a","action":"b","extra":1}"#).is_err());
    }
}
